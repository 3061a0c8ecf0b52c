"""The peer libraries' metric code, importable beside the CPU torch.

torch-fidelity, torchmetrics' image metrics and clean-fid import torchvision at module level (for their image
encoders and datasets) and torchvision cannot be installed beside the CPU torch wheel. The metric functions the
benchmark compares — computed on feature arrays — never touch it, so ``import_peers()`` puts an import-only
stand-in ``torchvision`` in ``sys.modules`` (every attribute a placeholder class) before importing them. Nothing
here runs an encoder.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types


class _PlaceholderType(type):
    def __getattr__(cls, attr: str):  # torchvision.models.inception.InceptionA: a base class for a subclass
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder


class _Placeholder(metaclass=_PlaceholderType):
    """What any attribute of the stand-in torchvision is: never called by the metric code."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("torchvision is a stand-in here: the benchmark uses feature-level metric code only")


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__version__ = "0.0.0+stand-in"

    def attribute(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        full = f"{name}.{attr}"
        return sys.modules.get(full) or _Placeholder

    module.__getattr__ = attribute
    return module


class _StandInFinder:
    """Resolves ``torchvision`` and every ``torchvision.*`` submodule to a stand-in."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, cls, is_package=True)
        return None

    @staticmethod
    def create_module(spec):
        return _stand_in(spec.name)

    @staticmethod
    def exec_module(module):
        return None


def import_peers() -> dict[str, object]:
    """The peers' modules that are installed: ``{"torch_fidelity": ..., "torchmetrics_kid": ..., ...}``."""
    try:
        import torchvision  # noqa: F401  - a real one, if it ever installs
    except Exception:
        sys.modules.pop("torchvision", None)
        sys.meta_path.insert(0, _StandInFinder)
    peers: dict[str, object] = {}
    for key, name in (("torch_fidelity_kid", "torch_fidelity.metric_kid"),
                      ("torch_fidelity_fid", "torch_fidelity.metric_fid"),
                      ("torch_fidelity_prc", "torch_fidelity.metric_prc"),
                      ("torchmetrics_kid", "torchmetrics.image.kid"),
                      ("torchmetrics_fid", "torchmetrics.image.fid"),
                      ("cleanfid", "cleanfid.fid"),
                      ("vendi", "vendi_score.vendi"),
                      ("faiss", "faiss"),
                      ("prdc", "prdc")):
        try:
            peers[key] = importlib.import_module(name)
        except Exception as exc:  # not installed, or needs more than the stand-in: left out of the table
            peers[key] = exc
    return peers
