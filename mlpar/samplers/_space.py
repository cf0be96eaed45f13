"""A sweep's ``params`` space as Optuna distributions, and back.

``loguniform(a, b)`` becomes ``FloatDistribution(a, b, log=True)``,
``uniform`` a ``FloatDistribution``, ``randint(a, b + 1)`` an
``IntDistribution(a, b)`` (both ends included), and a list (a grid or a
``choice``) a ``CategoricalDistribution``: of its values when they are all
scalars, of their positions otherwise (Optuna's categories must be scalars;
``widths: [[64], [64, 64]]`` is sampled as 0 or 1 and the trial gets the list).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from ..space import canonical_json

__all__ = ["SearchSpace", "import_optuna"]

_SCALARS = (type(None), bool, int, float, str)


def import_optuna():
    """Optuna, or a one-line ImportError naming the extra."""
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "a sampler needs Optuna, which is not installed: pip install 'mlpar[optuna]'"
        ) from None
    return optuna


class SearchSpace:
    """The Optuna distributions of a space, with the trial's params for each sample."""

    def __init__(self, space, *, model_based=True):
        optuna = import_optuna()
        dists = optuna.distributions
        if not isinstance(space, Mapping):
            raise ValueError(
                "a sampler searches one space: pass a dict of parameter lists or "
                f"distributions, not {type(space).__name__}"
            )
        self.distributions, self._lists, self.description = {}, {}, {}
        for name, values in space.items():
            if hasattr(values, "rvs"):
                self.distributions[name] = _numeric(name, values, dists)
                self.description[name] = repr(self.distributions[name])
                continue
            values = list(values)
            if not values:
                raise ValueError(f"space[{name!r}] is an empty list")
            scalar = all(isinstance(v, _SCALARS) for v in values)
            self._lists[name] = None if scalar else values
            choices = values if scalar else list(range(len(values)))
            self.distributions[name] = dists.CategoricalDistribution(choices)
            self.description[name] = canonical_json(values)
        if not self.distributions:
            raise ValueError("a sampler needs at least one parameter in the space")
        if model_based and not any(hasattr(v, "rvs") for v in space.values()):
            raise ValueError(
                "the space is a grid only (lists, no distributions): a model-based sampler "
                "has nothing to model; use loguniform/uniform/randint/choice, or a plain sweep"
            )

    def fingerprint(self, sampler_name):
        text = canonical_json({"space": self.description, "sampler": sampler_name})
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]

    def params(self, optuna_params):
        """The trial's params from Optuna's (positions turned back into values)."""
        out = {}
        for name, value in optuna_params.items():
            values = self._lists.get(name)
            out[name] = values[value] if values is not None else value
        return out

    def optuna_params(self, params):
        """Optuna's params for a journal row's params (values turned into positions)."""
        out = {}
        for name in self.distributions:
            value = params[name]
            values = self._lists.get(name)
            if values is not None:
                value = [canonical_json(v) for v in values].index(canonical_json(value))
            out[name] = value
        return out


def _numeric(name, dist, dists):
    kind = getattr(getattr(dist, "dist", None), "name", None)
    low, high = (float(x) for x in dist.support())
    if kind in ("loguniform", "reciprocal"):
        return dists.FloatDistribution(low, high, log=True)
    if kind == "uniform":
        return dists.FloatDistribution(low, high)
    if kind == "randint":
        return dists.IntDistribution(int(low), int(high))
    if math.isfinite(low) and math.isfinite(high):
        raise ValueError(
            f"space[{name!r}]: a sampler knows loguniform, uniform and randint, "
            f"got scipy.stats.{kind}"
        )
    raise ValueError(f"space[{name!r}]: scipy.stats.{kind} is unbounded; a sampler needs bounds")
