"""What each built-in encoder costs: seconds to embed 100 images, measured by ``benchmarks/encoders.py --write``
(which rewrites this file), so ``evolens encoders`` and the README can say what to pick on a CPU.

Inputs as the encoders meet them in evolens's own runs: 1×28×28 digits for ``digits-cnn`` and ``pixels``,
3×64×64 images for the others (each resizes to its own input size, so the figure hardly depends on it).
"""

MEASURED_ON = "not measured yet"
COSTS: dict[str, dict[str, float]] = {}
