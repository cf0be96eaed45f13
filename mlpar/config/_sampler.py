"""The ``sweep.sampler`` section: adaptive search with an Optuna sampler.

``sweep.sampler: {name: tpe, n_trials: 40, seed: 0}`` (names: tpe, gp, cmaes,
random, auto; see :mod:`mlpar.samplers`). Optuna itself is needed only when
the sweep runs (``pip install 'mlpar[optuna]'``); the section is checked
without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._checks import INVALID, Check, Int, OneOf, Problem, show, unknown_key

__all__ = ["SamplerConfig", "SamplerSpec", "SAMPLER_NAMES", "sampler_problems"]

#: The names of ``sweep.sampler.name`` (mlpar.samplers.SAMPLERS, without importing it).
SAMPLER_NAMES = ("tpe", "gp", "cmaes", "random", "auto")
_METRICS = ("val_score", "test_score", "loss", "best_loss")


@dataclass(frozen=True)
class SamplerConfig:
    """The checked ``sweep.sampler`` section; ``mode`` None: the metric's direction."""

    name: str = "tpe"
    n_trials: object = None
    seed: int = 0
    metric: str = "val_score"
    mode: str | None = None

    @property
    def direction(self):
        return self.mode or ("min" if "loss" in self.metric else "max")

    def to_yaml(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SamplerSpec(Check):
    """Checks ``sweep.sampler``: null, or a mapping of :class:`SamplerConfig`'s keys."""

    nullable = True
    _KEYS = tuple(SamplerConfig.__dataclass_fields__)

    def __call__(self, value):  # pragma: no cover - sections use collect()
        raise NotImplementedError("SamplerSpec reports through collect()")

    def collect(self, value, path, problems):
        if value is None or isinstance(value, SamplerConfig):
            return value
        if not isinstance(value, Mapping):
            problems.append(
                Problem(
                    path,
                    f"{path} must be a mapping with keys {', '.join(self._KEYS)}, got {show(value)}",
                    TypeError,
                )
            )
            return INVALID
        n_before = len(problems)
        problems.extend(unknown_key(path, k, self._KEYS) for k in value if k not in self._KEYS)
        raw = {**SamplerConfig().to_yaml(), **{k: v for k, v in value.items() if k in self._KEYS}}
        out = {}
        out["name"] = OneOf(lambda: SAMPLER_NAMES).collect(raw["name"], f"{path}.name", problems)
        if raw["n_trials"] is None:
            problems.append(
                Problem(
                    f"{path}.n_trials",
                    f"{path}.n_trials is missing; it must be the number of trials (an integer >= 1)",
                )
            )
            out["n_trials"] = INVALID
        else:
            out["n_trials"] = Int(1, 100_000).collect(raw["n_trials"], f"{path}.n_trials", problems)
        out["seed"] = Int(0, 2**32 - 1).collect(raw["seed"], f"{path}.seed", problems)
        out["metric"] = OneOf(lambda: _METRICS).collect(raw["metric"], f"{path}.metric", problems)
        out["mode"] = OneOf(lambda: ("max", "min"), nullable=True).collect(
            raw["mode"], f"{path}.mode", problems
        )
        return INVALID if len(problems) > n_before else SamplerConfig(**out)


def sampler_problems(values, random, path):
    """Problems of a sweep with a sampler: halving, no distributions, n_iter other than n_trials."""
    sampler = values.get("sampler")
    if sampler in (None, INVALID):
        return []
    if values.get("halving") not in (None, INVALID):
        return [
            Problem(
                f"{path}.sampler",
                f"{path}.sampler and {path}.halving do not combine yet; use one of them",
            )
        ]
    out = []
    if not random and (sampler.name != "random" or not values.get("params")):
        out.append(
            Problem(
                f"{path}.params",
                f"{path}.params must hold distributions (loguniform, uniform, randint, choice) "
                f"for {path}.sampler {sampler.name}, got a grid only",
            )
        )
    n_iter = values.get("n_iter")
    if n_iter not in (None, INVALID) and n_iter != sampler.n_trials:
        out.append(
            Problem(
                f"{path}.n_iter",
                f"{path}.n_iter must be null or {path}.sampler.n_trials ({sampler.n_trials}) "
                f"with {path}.sampler, got {show(n_iter)}",
            )
        )
    return out
