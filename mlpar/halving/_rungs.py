"""The arithmetic of successive halving: rung resources, and who is promoted.

Pure functions of their arguments (no I/O, no clock): the same rows give the
same survivors on every backend and in every process.
"""

from __future__ import annotations

import math
import numbers

from ..space import canonical_json, trial_key

__all__ = [
    "rung_resources",
    "n_promoted",
    "rank_configurations",
    "config_key",
    "mean_metric",
    "rank_order",
    "METRIC_MODES",
]

#: The direction of the metrics ``train_mlp`` reports, for ``mode=None``.
METRIC_MODES = {"val_score": "max", "test_score": "max", "loss": "min", "best_loss": "min"}


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def rung_resources(min_resource, max_resource, factor):
    """The resource of every rung: ``min_resource * factor**i`` up to ``max_resource``.

    As scikit-learn's halving searches, the last rung is the largest power that
    fits; integers stay integers.

    Examples
    --------
    >>> rung_resources(2, 18, 3)
    [2, 6, 18]
    >>> rung_resources(1, 10, 3)
    [1, 3, 9]
    """
    out, r = [], min_resource
    # Integer arithmetic where possible: 2 * 3**k is exact, floats may not be.
    while r <= max_resource:
        out.append(r)
        r = r * factor
    return out


def n_promoted(n_configs, factor):
    """How many of ``n_configs`` go on to the next rung: the best ``1/factor``, at least one."""
    return max(1, n_configs // factor)


def config_key(params, resource):
    """The key of a configuration across rungs: its trial key without the resource."""
    return trial_key({k: v for k, v in params.items() if k != resource})


def mean_metric(rows, metric, error_score=math.nan):
    """A configuration's value: the mean ``metric`` over its repeats' rows.

    A repeat that did not end ``ok`` (or lacks the metric) counts as
    ``error_score``: with the default NaN, a configuration that fails for one
    seed has a NaN mean and ranks last. A crashing trial is demoted, never fatal.
    """
    values = []
    for row in rows:
        value = row.metrics.get(metric) if row.status == "ok" else error_score
        values.append(float(value) if _is_number(value) else error_score)
    return math.fsum(values) / len(values)


def rank_order(mean, key, mode):
    """The sort key of a configuration: NaN last, best ``mean`` first, ties by ``key``."""
    nan = math.isnan(mean)
    return (nan, 0.0 if nan else (-mean if mode == "max" else mean), key)


def rank_configurations(rows, *, resource, metric, mode, error_score=math.nan):
    """Rank the configurations of one rung, best first, by :func:`mean_metric`.

    Ties are broken by :func:`config_key`.

    Returns
    -------
    list of (config_key, params without the resource, mean)
    """
    groups = {}
    for row in rows:
        base = {k: v for k, v in row.params.items() if k != resource}
        groups.setdefault(canonical_json(base), (base, []))[1].append(row)
    ranked = [
        (config_key(base, resource), base, mean_metric(group, metric, error_score))
        for base, group in groups.values()
    ]
    return sorted(ranked, key=lambda item: rank_order(item[2], item[0], mode))
