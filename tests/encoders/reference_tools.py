"""Import torch-fidelity's TF-compatible Inception and resize without its package __init__.

torch-fidelity's ``__init__`` imports its CLIP and VGG extractors, which need torchvision; torchvision cannot
be installed beside the CPU torch wheel. The modules we compare against import only torch and
torch-fidelity's own helpers, so they are loaded through a bare package object.
"""

import importlib
import importlib.util
import sys
import types

import pytest


def torch_fidelity_module(name: str):
    package = sys.modules.get("torch_fidelity")
    if package is None:
        spec = importlib.util.find_spec("torch_fidelity")
        if spec is None:
            pytest.skip("torch-fidelity is not installed (make test installs it)")
        package = types.ModuleType("torch_fidelity")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_fidelity"] = package
    return importlib.import_module(f"torch_fidelity.{name}")
