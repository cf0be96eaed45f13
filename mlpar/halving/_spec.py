"""The options of a halving search, checked once: :class:`Halving`.

``sweep(halving={...})``, :func:`~mlpar.halving.successive_halving` and the
YAML ``sweep.halving`` section take the same keys; each malformed one is a
TypeError or ValueError that names it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ..config import HalvingConfig
from ._rungs import METRIC_MODES, _is_number, rung_resources

__all__ = ["Halving", "HALVING_KEYS", "MODES", "as_halving"]

#: ``sync``: rung after rung, deterministic. ``async``: ASHA, no worker waits.
MODES = ("sync", "async")


@dataclass(frozen=True)
class Halving(HalvingConfig):
    """A checked halving setup (the keys of YAML's ``sweep.halving``); build it with :func:`as_halving`.

    Attributes
    ----------
    mode : {'sync', 'async'}
        Synchronous successive halving, or ASHA.
    resource : str
        The numeric trial parameter that is the budget (``epochs``, ``n_samples``...).
    min_resource, max_resource : int or float
        The resource of rung 0, and the most any rung gets.
    factor : int
        Keep the best ``1/factor`` of a rung; multiply the resource by ``factor``.
    metric : str
        What ranks configurations (mean over seeds).
    metric_mode : {'max', 'min'}
        The metric's direction (resolved: ``min`` for losses, ``max`` for scores).
    """

    @property
    def resources(self):
        """The resource of every rung."""
        return rung_resources(self.min_resource, self.max_resource, self.factor)

    def to_dict(self):
        """Every key, as the journal header records it."""
        return self.to_yaml()


HALVING_KEYS = tuple(Halving.__dataclass_fields__)


def as_halving(options):
    """``options`` (a dict of :class:`Halving`'s keys, or a Halving) checked into a Halving.

    Raises
    ------
    TypeError, ValueError
        Naming the key: an unknown key, a missing bound, ``factor`` below 2,
        ``min_resource`` above ``max_resource``, an unknown mode...
    """
    if isinstance(options, Halving):
        return options
    if not isinstance(options, dict):
        raise TypeError(
            f"halving must be a dict with keys {', '.join(HALVING_KEYS)}, got {options!r}"
        )
    unknown = [k for k in options if k not in HALVING_KEYS]
    if unknown:
        raise ValueError(
            f"halving has no key {unknown[0]!r}; the keys are {', '.join(HALVING_KEYS)}"
        )
    o = {**Halving().to_dict(), **options}
    if o["mode"] not in MODES:
        raise ValueError(f"halving mode must be 'sync' or 'async' (ASHA), got {o['mode']!r}")
    if not isinstance(o["resource"], str) or not o["resource"]:
        raise TypeError(
            "halving resource must be the name of a numeric trial parameter (a str), "
            f"got {o['resource']!r}"
        )
    for name in ("min_resource", "max_resource"):
        value = o[name]
        if value is None:
            raise ValueError(f"halving needs {name}: the resource of the first and last rung")
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"halving {name} must be a positive number, got {value!r}")
    if o["min_resource"] > o["max_resource"]:
        raise ValueError(
            f"halving min_resource must be at most max_resource ({o['max_resource']!r}), "
            f"got {o['min_resource']!r}"
        )
    factor = o["factor"]
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 2:
        raise ValueError(
            "halving factor must be an integer >= 2 (keep the best 1/factor of each rung), "
            f"got {factor!r}"
        )
    if not isinstance(o["metric"], str) or not o["metric"]:
        raise TypeError(
            f"halving metric must be the name of a metric the trials report, got {o['metric']!r}"
        )
    mode = o["metric_mode"]
    if mode is None:
        mode = METRIC_MODES.get(o["metric"], "max")
    if mode not in ("max", "min"):
        raise ValueError(f"halving metric_mode must be 'max' or 'min', got {mode!r}")
    return Halving(**{**o, "factor": int(factor), "metric_mode": mode})
