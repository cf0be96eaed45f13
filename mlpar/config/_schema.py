"""The config schema: one dataclass per section, every default, and the checks.

Each field's default is defined here once, with a comment saying why; its
``metadata["check"]`` is the check that config files, ``--set`` overrides and
trial parameters all go through. ``mlpar.config`` builds on these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ._checks import (
    INVALID,
    Bool,
    Float,
    Hidden,
    Int,
    ListOf,
    OneOf,
    Problem,
    StackSize,
    Text,
    plain,
    show,
)
from ._sampler import SamplerConfig, SamplerSpec, sampler_problems
from ._sweepspec import (
    HalvingConfig,
    HalvingSpec,
    SweepParams,
    has_distribution,
    n_configurations,
)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "SweepConfig",
    "ExecutionConfig",
    "CompareConfig",
    "OutputConfig",
    "TRIAL_PARAM_NAMES",
]


# The names a setting may take come from the modules that own them, imported
# when checking (not at import time) so that no import cycle can form.
def _datasets():
    from ..data import DATASETS

    return tuple(DATASETS)


def _activations():
    from ..nn import ACTIVATIONS

    return tuple(ACTIVATIONS)


def _solvers():
    from ..nn import SOLVERS

    return tuple(SOLVERS)


def _backends():
    from ..backends import available_backends

    return tuple(available_backends())


def _setting(default, check):
    """A dataclass field with its default and its check."""
    return field(default=default, metadata={"check": check})


def settings(cls):
    """The checked fields of a section dataclass."""
    return [f for f in fields(cls) if "check" in f.metadata]


class _Section:
    """Checks shared by the section dataclasses: every field, then their consistency."""

    _what = "settings"  # completes "<section> must be a mapping of ..."

    def __post_init__(self):
        problems = []
        name = type(self).__name__
        values = {
            f.name: f.metadata["check"].collect(getattr(self, f.name), f"{name}.{f.name}", problems)
            for f in settings(type(self))
        }
        self._consistency(values, values, name, problems)
        if problems:
            raise problems[0].kind(problems[0].message)
        for key, value in values.items():
            # Store the normalized value (a tuple for a list, a float for an int).
            object.__setattr__(self, key, value)

    @classmethod
    def _consistency(cls, values, raw, path, problems):
        """Append problems between fields; ``values`` holds INVALID for failed fields."""


@dataclass(frozen=True)
class DataConfig(_Section):
    """The ``data`` section: which dataset, and how to split it."""

    _what = "data settings"
    # digits: bundled with scikit-learn, 1797 samples, 10 classes: trains in a second.
    dataset: str = _setting("digits", OneOf(_datasets))
    # Generators only; None takes the generator's default. 10 million samples is
    # gigabytes of features, past what one small-MLP trial should hold.
    n_samples: int | None = _setting(None, Int(1, 10_000_000, nullable=True))
    # classification and regression generators only; None: the generator's default.
    n_features: int | None = _setting(None, Int(1, 100_000, nullable=True))
    # classification generator only; None: the generator's default (2).
    n_classes: int | None = _setting(None, Int(2, 1000, nullable=True))
    # Generators only (for classification, the fraction of flipped labels).
    noise: float | None = _setting(None, Float(0, nullable=True))
    # One validation split, as in sklearn's train_test_split: 20% of the samples.
    val_fraction: float = _setting(0.2, Float(0, 1, low_open=True, high_open=True))
    # Held out for the final score; val_fraction + test_fraction must be < 1.
    test_fraction: float = _setting(0.2, Float(0, 1, low_open=True, high_open=True))


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The ``model`` section: the MLP's shape and regularization."""

    _what = "model settings"
    # One hidden layer of 64: fast, and accurate enough on the bundled datasets.
    hidden: tuple = _setting((64,), Hidden())
    # relu: scikit-learn's MLP default.
    activation: str = _setting("relu", OneOf(_activations))
    # L2 penalty; 1e-4 is scikit-learn's MLP default.
    alpha: float = _setting(1e-4, Float(0))
    # float32 halves memory traffic and doubles BLAS throughput against float64.
    dtype: str = _setting("float32", OneOf(lambda: ("float32", "float64")))


@dataclass(frozen=True)
class TrainConfig(_Section):
    """The ``train`` section: optimizer and stopping (scikit-learn MLP names in comments)."""

    _what = "training settings"
    # max_iter; an epoch budget past 100000 is a typo, not an experiment.
    epochs: int = _setting(30, Int(1, 100_000))
    # 64: small enough for many updates per epoch on the bundled datasets.
    batch_size: int = _setting(64, Int(1, 1 << 20))
    # solver; adam converges without tuning the learning rate much.
    optimizer: str = _setting("adam", OneOf(_solvers))
    # learning_rate_init; 1e-3 is scikit-learn's (and Adam's usual) default.
    lr: float = _setting(1e-3, Float(0, low_open=True))
    # sgd only; scikit-learn's default.
    momentum: float = _setting(0.9, Float(0, 1))
    # nesterovs_momentum, sgd only; scikit-learn's default.
    nesterov: bool = _setting(True, Bool())
    # beta_1, adam only; the Adam paper's value.
    beta1: float = _setting(0.9, Float(0, 1, high_open=True))
    # beta_2, adam only; the Adam paper's value.
    beta2: float = _setting(0.999, Float(0, 1, high_open=True))
    # adam only; the Adam paper's value.
    epsilon: float = _setting(1e-8, Float(0, low_open=True))
    # Off: every trial then runs the same number of epochs, which keeps
    # backend timings comparable.
    early_stopping: bool = _setting(False, Bool())
    # n_iter_no_change; scikit-learn's default.
    patience: int = _setting(10, Int(1, 100_000))
    # scikit-learn's default.
    tol: float = _setting(1e-4, Float(0))


# A journal of more trials than this is a typo in a grid, not a sweep.
MAX_TRIALS = 1_000_000


@dataclass(frozen=True)
class SweepConfig(_Section):
    """The ``sweep`` section: the search space and its seeds.

    ``params`` is stored checked: a tuple of grids, each a tuple of
    ``(name, values)`` pairs, ``values`` a tuple or a :class:`Distribution`.
    Use :meth:`ExperimentConfig.search_space` for the form sweeps take.
    """

    _what = "sweep settings"
    # Empty: no sweep, one configuration (the fixed settings), `seeds` times.
    params: tuple = _setting((), SweepParams(lambda: TRIAL_CHECKS))
    # Random search only (then required); grid search runs every configuration.
    n_iter: int | None = _setting(None, Int(1, MAX_TRIALS, nullable=True))
    # One run per configuration; more measure the spread between seeds.
    seeds: int = _setting(1, Int(1, 10_000))
    # Trial seeds derive from it; < 2**32 as scikit-learn's random_state needs.
    random_state: int = _setting(0, Int(0, 2**32 - 1))
    # None: every configuration gets the full budget. A HalvingConfig: successive
    # halving over the configurations (see mlpar.halving).
    halving: object = _setting(None, HalvingSpec(lambda: TRIAL_CHECKS))
    # None: grid or random search. A SamplerConfig: adaptive search with an
    # Optuna sampler (see mlpar.config._sampler and mlpar.samplers).
    sampler: object = _setting(None, SamplerSpec())

    @property
    def is_random_search(self) -> bool:
        """Whether any swept parameter is a distribution."""
        return has_distribution(self.params)

    @classmethod
    def _consistency(cls, values, raw, path, problems):
        random = has_distribution(raw.get("params"))
        if raw.get("sampler") is not None:
            problems.extend(sampler_problems(values, random, path))
            return
        n_iter = values["n_iter"]
        if random and n_iter is None:
            problems.append(
                Problem(
                    f"{path}.n_iter",
                    (
                        f"{path}.n_iter must be a positive integer for a random search ({path}.params "
                        f"has distributions), got None (NoneType)"
                    ),
                )
            )
        elif not random and n_iter not in (None, INVALID):
            problems.append(
                Problem(
                    f"{path}.n_iter",
                    (
                        f"{path}.n_iter must be null for a grid search ({path}.params has no "
                        f"distributions), got {show(n_iter)}"
                    ),
                )
            )
        cls._halving_consistency(values, path, problems)
        if INVALID in (values["params"], n_iter, values["seeds"]) or (random and n_iter is None):
            return
        configs = n_iter if random else n_configurations(values["params"])
        if configs * values["seeds"] > MAX_TRIALS:
            problems.append(
                Problem(
                    f"{path}.params",
                    (
                        f"{path}.params must expand to at most {MAX_TRIALS} trials, got {configs} "
                        f"configurations x {values['seeds']} seeds"
                    ),
                )
            )

    @staticmethod
    def _halving_consistency(values, path, problems):
        halving, n_iter, grids = values.get("halving"), values["n_iter"], values["params"]
        if halving in (None, INVALID):
            return
        if n_iter not in (None, INVALID) and n_iter < halving.factor:
            problems.append(
                Problem(
                    f"{path}.n_iter",
                    (
                        f"{path}.n_iter must be at least {path}.halving.factor ({halving.factor}) "
                        f"for successive halving, got {show(n_iter)}"
                    ),
                )
            )
        for i, grid in enumerate(grids if grids is not INVALID else ()):
            if halving.resource in dict(grid):
                where = f"{path}.params" if len(grids) == 1 else f"{path}.params[{i}]"
                problems.append(
                    Problem(
                        f"{where}.{halving.resource}",
                        (
                            f"{where}.{halving.resource} must not be swept together with "
                            f"{path}.halving (it sets {halving.resource} for every rung), "
                            f"got {show(plain(dict(grid)[halving.resource]))}"
                        ),
                    )
                )


@dataclass(frozen=True)
class ExecutionConfig(_Section):
    """The ``execution`` section: where and how in parallel the trials run."""

    _what = "execution settings"
    # serial: runs anywhere, and is the baseline every other backend is compared to.
    backend: str = _setting("serial", OneOf(_backends))
    # None: the backend's default. 4096 workers is past any single scheduler's reach.
    n_jobs: int | None = _setting(None, Int(1, 4096, nullable=True, minus_one=True))
    # None: cores // n_jobs, so that workers x BLAS threads fill the cores once.
    blas_threads: int | None = _setting(None, Int(1, 1024, nullable=True))
    # None: no per-trial time limit (seconds).
    timeout: float | None = _setting(None, Float(0, low_open=True, nullable=True))
    # Train up to this many compatible trials as one batched computation
    # (sweep(stack=)). null, not auto: auto measures stacked vs one by one
    # before the sweep, which costs more than it saves on wide layers.
    stack: int | str | None = _setting(None, StackSize())
    # 0: a failed trial is recorded as failed, not run again. 100 is past any flake.
    retries: int = _setting(0, Int(0, 100))
    # None: start a local Dask cluster. Dask only.
    address: str | None = _setting(
        None,
        Text(
            r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}",
            "a Dask scheduler address such as tcp://127.0.0.1:8786",
            nullable=True,
        ),
    )
    # Dask with an address only: seconds to reach the scheduler before giving up.
    # 10 s: a scheduler on the same network answers in milliseconds, and a wrong
    # address should fail before the user wonders (Dask's own default is 30 s).
    connect_timeout: float = _setting(10.0, Float(0, 600, low_open=True))

    @classmethod
    def _consistency(cls, values, raw, path, problems):
        address, backend, n_jobs = values["address"], values["backend"], values["n_jobs"]
        if backend == "serial" and n_jobs not in (None, 1, INVALID):
            problems.append(
                Problem(
                    f"{path}.n_jobs",
                    (
                        f"{path}.n_jobs must be 1 or null for backend serial, which runs one trial "
                        f"at a time, got {show(n_jobs)}; choose backend threads or processes to run "
                        f"trials in parallel"
                    ),
                )
            )
        if address not in (None, INVALID) and backend not in ("dask", INVALID):
            problems.append(
                Problem(
                    f"{path}.address",
                    (
                        f"{path}.address must be null unless {path}.backend is dask, "
                        f"got {show(address)}"
                    ),
                )
            )


@dataclass(frozen=True)
class CompareConfig(_Section):
    """The ``compare`` section: what ``mlpar compare`` runs, unless the command line says."""

    _what = "compare settings"
    # The three joblib backends: the comparison the essay's lessons are about.
    backends: tuple = _setting(
        ("serial", "threads", "processes"), ListOf(OneOf(_backends), "backend names")
    )
    # 2 workers: the smallest parallel run, and every laptop has 2 cores.
    n_jobs: tuple = _setting(
        (2,), ListOf(Int(1, 4096, minus_one=True), "worker counts (positive integers or -1)")
    )
    # 3 interleaved repeats: a median that one slow run cannot move.
    repeats: int = _setting(3, Int(1, 1000))
    # No grouping: the whole sweep is one workload. Naming swept parameters
    # (e.g. [units, batch_size]) compares each of their values separately, so
    # a width scan shows where threads start to pay.
    group_by: tuple = _setting(
        (), ListOf(OneOf(lambda: TRIAL_PARAM_NAMES), "swept trial parameter names", empty=True)
    )
    # Stack sizes to compare (sweep(stack=)): 1 is unstacked; [1, 16] runs every
    # backend setting also with up to 16 compatible trials trained as one.
    stack: tuple = _setting((1,), ListOf(Int(1, 4096), "stack sizes (positive integers)"))


@dataclass(frozen=True)
class OutputConfig(_Section):
    """The ``output`` section: where run folders go."""

    _what = "output settings"
    # Relative to the working directory: runs/<name>/<timestamp>/.
    folder: str = _setting("runs", Text(r"[^\x00]+", "a non-empty folder path"))


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "sweep": SweepConfig,
    "execution": ExecutionConfig,
    "compare": CompareConfig,
    "output": OutputConfig,
}
TOP_KEYS = ("name", *SECTIONS)
NAME = Text(
    r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
    "a name made of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
    max_length=128,
)
TRIAL_CHECKS = {
    **{
        f.name: f.metadata["check"]
        for cls in (DataConfig, ModelConfig, TrainConfig)
        for f in settings(cls)
    },
    # units x layers: a uniform stack, hidden = [units] * layers.
    "units": Int(1, Hidden.MAX_WIDTH),
    "layers": Int(1, Hidden.MAX_LAYERS),
}
#: Every flat trial parameter name: data, model and train fields, units, layers.
TRIAL_PARAM_NAMES = tuple(TRIAL_CHECKS)
SCHEMA = {
    "name": None,
    **{key: tuple(f.name for f in settings(cls)) for key, cls in SECTIONS.items()},
}
#: Mapping fields that ``--set`` may set one key at a time (``sweep.halving.factor=2``).
NESTED = {
    ("sweep", "halving"): tuple(HalvingConfig.__dataclass_fields__),
    ("sweep", "sampler"): tuple(SamplerConfig.__dataclass_fields__),
}
