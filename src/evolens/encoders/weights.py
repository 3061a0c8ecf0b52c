"""Where encoder weights come from, offline: an explicit path, then ``$EVOLENS_WEIGHTS``, then a package.

No weights are ever downloaded. When none of the places has the file, ``WeightsNotFoundError`` names the
file that was expected, every place that was looked in, and how to get the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EvolensError

ENV_WEIGHTS = "EVOLENS_WEIGHTS"


class WeightsNotFoundError(EvolensError, FileNotFoundError):
    """The weights an encoder needs are in none of the places evolens looks."""


def resolve_weights(
    filenames: str | Sequence[str],
    *,
    path: str | os.PathLike | None = None,
    package: Callable[[], str | os.PathLike | None] | None = None,
    how_to_get: str,
    directory: bool = False,
) -> Path:
    """Find a weights file (or, with ``directory=True``, a model directory) and return its path.

    Args:
        filenames: accepted file (or directory) names, first preferred.
        path: explicit location: the file itself, or a directory that contains one of ``filenames``.
        package: callable returning the path of weights shipped by an installed package (or None).
        how_to_get: one sentence telling the user where the file comes from.
        directory: look for a directory (e.g. a Hugging Face model folder) instead of a file.

    Raises WeightsNotFoundError naming the expected file and every place tried.
    """
    names = [filenames] if isinstance(filenames, str) else list(filenames)
    tried: list[str] = []

    def accept(candidate: Path) -> bool:
        return candidate.is_dir() if directory else candidate.is_file()

    def look_in(folder: Path) -> Path | None:
        for name in names:
            candidate = folder / name
            tried.append(str(candidate))
            if accept(candidate):
                return candidate
        return None

    if path is not None:
        explicit = Path(path).expanduser()
        if accept(explicit) and (directory or explicit.is_file()):
            return explicit
        tried.append(str(explicit))
        if explicit.is_dir() and (found := look_in(explicit)):
            return found
        raise WeightsNotFoundError(
            f"path: expected {'a directory' if directory else 'the weights file'} {names[0]!r} at {str(explicit)!r} "
            f"(or inside it), found nothing there. {how_to_get}"
        )
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        if found := look_in(Path(env).expanduser()):
            return found
    else:
        tried.append(f"${ENV_WEIGHTS} (not set)")
    if package is not None:
        try:
            shipped = package()
        except ImportError as exc:
            tried.append(f"package ({exc.name or exc} not installed)")
        else:
            if shipped is not None and accept(Path(shipped)):
                return Path(shipped)
            tried.append(f"package ({shipped})")
    raise WeightsNotFoundError(
        f"weights: expected {'directory' if directory else 'file'} {names[0]!r}"
        + (f" (or {', '.join(map(repr, names[1:]))})" if len(names) > 1 else "")
        + f"; looked in: {'; '.join(tried)}. {how_to_get} Then pass path=... or put it in ${ENV_WEIGHTS}."
    )


def weights_hash(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a weights file, or of every file in a weights directory (sorted by relative path)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()
