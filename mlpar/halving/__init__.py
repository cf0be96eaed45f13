"""Stop bad trials early: successive halving (sync) and ASHA (async).

``mlpar.sweep(fn, space, halving={...})`` and :func:`successive_halving` run
many configurations with a small resource (``epochs`` by default) and the
best ``1/factor`` of each rung with ``factor`` times more, on any backend,
with one journal that resumes mid-rung.
"""

from ._result import HalvingResult, Rung
from ._run import checkpoint_dir, run_halving, successive_halving
from ._rungs import METRIC_MODES, rung_resources
from ._spec import HALVING_KEYS, Halving, as_halving

__all__ = [
    "successive_halving",
    "run_halving",
    "HalvingResult",
    "Rung",
    "Halving",
    "as_halving",
    "HALVING_KEYS",
    "rung_resources",
    "checkpoint_dir",
    "METRIC_MODES",
]
