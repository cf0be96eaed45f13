"""SamplerSource: parallel ask-and-tell against an in-memory Optuna study.

Statuses told to the study: ``ok`` with a finite metric is COMPLETE with that
value; ``failed``, ``crashed``, ``timeout`` (even with metrics: the run did
not finish in its budget) and ``diverged`` are FAIL. Diverged is FAIL rather
than PRUNED because a pruned trial carries intermediate values that TPE
ranks, and a diverged run has none worth ranking: FAIL keeps it out of the
model without inventing a score. The journal is the source of truth: on
resume the study is rebuilt from its rows (``study.add_trial``) and the
search goes on to ``n_trials``; trial numbers, keys and seeds continue, so
nothing runs twice.
"""

from __future__ import annotations

import math
import numbers

from ..search import Source
from ..space import Trial, trial_key, trial_seed
from ._space import SearchSpace, import_optuna

__all__ = ["SamplerSource", "make_sampler", "SAMPLERS"]

#: Sampler names of ``sweep.sampler.name``; ``auto`` is resolved by make_sampler.
SAMPLERS = ("tpe", "gp", "cmaes", "random", "auto")
_MODEL_FREE = ("RandomSampler", "GridSampler", "QMCSampler", "BruteForceSampler")


def make_sampler(name, *, seed=0, n_jobs=1, categorical=False):
    """An Optuna sampler by name, seeded; pending trials handled for ``n_jobs > 1``.

    ``tpe`` uses ``constant_liar=True`` when ``n_jobs > 1`` (running trials
    count as bad, so parallel asks spread out). ``auto``: OptunaHub's
    AutoSampler is not part of Optuna and needs a download, so mlpar applies
    its rule of thumb offline: GPSampler for a purely numeric space searched
    one trial at a time, TPE (with constant_liar when parallel) otherwise.
    """
    optuna = import_optuna()
    samplers = optuna.samplers
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    if name == "auto":
        name = "gp" if not categorical and n_jobs <= 1 else "tpe"
    if name == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=n_jobs > 1)
    if name == "gp":
        return samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    return samplers.RandomSampler(seed=seed)


class SamplerSource(Source):
    """Trials asked from an Optuna sampler, ``n_trials`` in all.

    Parameters
    ----------
    space : dict
        Parameter names mapped to ``scipy.stats`` distributions (loguniform,
        uniform, randint) or lists (choices); see :class:`SearchSpace`.
    sampler : optuna.samplers.BaseSampler
        Any Optuna sampler.
    n_trials : int
        Trials in the study, failures included.
    metric : str
        The metric of a row that the study optimizes.
    mode : {'max', 'min'}
    random_state : int
        Seeds every trial's seed (with its key).
    """

    def __init__(
        self, space, sampler, *, n_trials, metric, mode, random_state, lists_are_choices=False
    ):
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral):
            raise ValueError(f"a sampler needs n_trials, an integer >= 1, got {n_trials!r}")
        if n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {n_trials}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        name = type(sampler).__name__
        # A YAML space's ``choice`` arrives as a list, checked by the config already.
        model_based = name not in _MODEL_FREE and not lists_are_choices
        self.space = SearchSpace(space, model_based=model_based)
        self._optuna = optuna
        self.study = optuna.create_study(
            sampler=sampler, direction="maximize" if mode == "max" else "minimize"
        )
        self.n_trials, self.metric, self.random_state = int(n_trials), metric, int(random_state)
        self.header = {
            "trials": self.space.fingerprint(name),
            "n_trials": self.n_trials,
            "sampler": name,
            "metric": metric,
            "mode": mode,
        }
        self.total = self.n_trials
        self._running = {}

    def resume(self, rows):
        create = self._optuna.trial.create_trial
        state = self._optuna.trial.TrialState
        for row in sorted(rows, key=lambda r: (r.sampler_trial is None, r.sampler_trial)):
            value = self._value(row)
            self.study.add_trial(
                create(
                    params=self.space.optuna_params(row.params),
                    distributions=self.space.distributions,
                    value=value,
                    state=state.COMPLETE if value is not None else state.FAIL,
                    user_attrs={"key": row.key},
                )
            )

    def ask(self, free):
        out = []
        while len(out) < free and len(self.study.trials) < self.n_trials:
            trial = self.study.ask(self.space.distributions)
            params = self.space.params(trial.params)
            key = trial_key(params, trial.number)
            trial.set_user_attr("key", key)
            self._running[key] = trial
            out.append((trial.number, Trial(key, params, 0, trial_seed(self.random_state, key))))
        return out

    def tell(self, row):
        trial = self._running.pop(row.key, None)
        if trial is None:
            return
        value = self._value(row)
        if value is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)

    def row_fields(self, trial):
        running = self._running.get(trial.key)
        return {"sampler_trial": running.number if running is not None else None}

    def _value(self, row):
        """The value told for a row, None for FAIL (see the module's notes)."""
        if row.status != "ok":
            return None
        value = row.metrics.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        value = float(value)
        return value if math.isfinite(value) else None
