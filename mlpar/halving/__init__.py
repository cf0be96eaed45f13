"""Stop bad trials early: successive halving over ordinary sweeps.

:func:`successive_halving` runs rung after rung of :func:`mlpar.sweep`,
each with the resource (``epochs`` by default) as a trial parameter, keeping
the best ``1/factor`` of each rung for the next.
"""

from ._rungs import METRIC_MODES, rung_resources
from ._sync import HalvingResult, Rung, rung_journal, successive_halving

__all__ = [
    "successive_halving",
    "HalvingResult",
    "Rung",
    "rung_resources",
    "rung_journal",
    "METRIC_MODES",
]
