"""Named datasets, deterministic splits and scaling.

Every dataset is either bundled with scikit-learn (``digits``, ``iris``,
``wine``, ``breast_cancer``, ``diabetes``) or generated from a seed
(``classification``, ``moons``, ``regression``). Nothing is ever downloaded.

Importing this module imports NumPy only: scikit-learn (and SciPy with it)
costs ~2 s and ~140 MB per interpreter, so it is imported inside the functions
that build data. :func:`prepare_splits` (the sweep's parent) writes split,
scaled data once to an on-disk cache of ``.npy`` files; :func:`load_splits`
(every worker) memory-maps them read-only, so a worker neither imports
scikit-learn nor holds its own copy of the data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["DATASETS", "Dataset", "Splits", "load_dataset", "make_splits"]


@dataclass(frozen=True)
class Dataset:
    """A named dataset: features, targets and the kind of task."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str  # "classification" or "regression"

    @property
    def n_classes(self) -> int | None:
        return int(np.unique(self.y).size) if self.task == "classification" else None


@dataclass(frozen=True)
class Splits:
    """Train / validation / test parts, standardized on the training part only.

    For regression the targets are standardized too (on the training part),
    so one learning rate suits every dataset; scores (R^2) do not depend on it.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str


def _readonly(*arrays):
    # Bundled datasets are cached and shared by every trial of a threads sweep:
    # make accidental in-place edits fail loudly instead of corrupting others.
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.cache
def _bundled(name: str):
    # Imported here, not at the top: see the module docstring.
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "diabetes": skd.load_diabetes,
    }[name]
    X, y = loader(return_X_y=True)
    return _readonly(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y))


def _classification(*, n_samples, n_features, n_classes, noise, random_state):
    from sklearn.datasets import make_classification

    n_samples = 1000 if n_samples is None else n_samples
    n_features = 20 if n_features is None else n_features
    n_classes = 2 if n_classes is None else n_classes
    # make_classification needs n_classes * n_clusters_per_class <= 2**n_informative.
    n_informative = max(2, int(np.ceil(np.log2(n_classes))) + 1, n_features // 2)
    if n_informative > n_features:
        raise ValueError(
            f"dataset 'classification' with n_classes={n_classes} needs "
            f"n_features >= {n_informative}, got {n_features}"
        )
    flip_y = 0.01 if noise is None else float(noise)
    if not 0.0 <= flip_y <= 1.0:
        raise ValueError(
            f"dataset 'classification': noise is the fraction of flipped labels and "
            f"must be in [0, 1], got {noise!r}"
        )
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        flip_y=flip_y,
        random_state=random_state,
    )
    return X, y


def _moons(*, n_samples, noise, random_state, **_):
    from sklearn.datasets import make_moons

    n_samples = 1000 if n_samples is None else n_samples
    noise = 0.2 if noise is None else noise
    return make_moons(n_samples=n_samples, noise=noise, random_state=random_state)


def _regression(*, n_samples, n_features, noise, random_state, **_):
    from sklearn.datasets import make_regression

    n_samples = 1000 if n_samples is None else n_samples
    n_features = 20 if n_features is None else n_features
    noise = 10.0 if noise is None else noise
    return make_regression(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=max(1, n_features // 2),
        noise=noise,
        random_state=random_state,
    )


# name -> (task, generator or None, parameters it accepts)
DATASETS = {
    "digits": ("classification", None, ()),
    "iris": ("classification", None, ()),
    "wine": ("classification", None, ()),
    "breast_cancer": ("classification", None, ()),
    "diabetes": ("regression", None, ()),
    "classification": (
        "classification",
        _classification,
        ("n_samples", "n_features", "n_classes", "noise"),
    ),
    "moons": ("classification", _moons, ("n_samples", "noise")),
    "regression": ("regression", _regression, ("n_samples", "n_features", "noise")),
}


def load_dataset(
    name, *, n_samples=None, n_features=None, n_classes=None, noise=None, random_state=0
) -> Dataset:
    """Load a bundled dataset or generate one from a seed.

    Parameters
    ----------
    name : str
        One of ``DATASETS``.
    n_samples, n_features, n_classes, noise : int, int, int, float, default=None
        Size parameters of the generators; ``None`` takes the generator's default.
        Passing one to a dataset that does not accept it is an error.
    random_state : int, default=0
        Seed of the generators (bundled datasets ignore it).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        For an unknown name (the message lists the available ones) or a size
        parameter the dataset does not accept.
    """
    _check_dataset(
        name, n_samples=n_samples, n_features=n_features, n_classes=n_classes, noise=noise
    )
    task, generator, _ = DATASETS[name]
    if generator is None:
        X, y = _bundled(name)
    else:
        X, y = _generated(name, int(random_state), n_samples, n_features, n_classes, noise)
    return Dataset(name=name, X=X, y=y, task=task)


def _check_dataset(name, **given):
    # Shared by load_dataset and load_splits, so both fail alike and the cache
    # is never touched for a request that could not be built.
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    accepted = DATASETS[name][2]
    extra = sorted(k for k, v in given.items() if v is not None and k not in accepted)
    if extra:
        accepts = ", ".join(accepted) if accepted else "no size parameters"
        raise ValueError(f"dataset {name!r} does not take {', '.join(extra)}; it accepts {accepts}")


def _check_fractions(val_fraction, test_fraction):
    for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < float(f) < 1.0:
            raise ValueError(f"{label} must be in (0, 1), got {f!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction!r}"
        )


@functools.lru_cache(maxsize=8)
def _generated(name, random_state, n_samples, n_features, n_classes, noise):
    # Every trial of a sweep asks for the same data: generate it once per process.
    _, generator, _ = DATASETS[name]
    X, y = generator(
        random_state=random_state,
        n_samples=n_samples,
        n_features=n_features,
        n_classes=n_classes,
        noise=noise,
    )
    return _readonly(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y))


def make_splits(
    dataset: Dataset, *, val_fraction=0.2, test_fraction=0.2, random_state=0, dtype="float32"
) -> Splits:
    """Split deterministically into train / validation / test and standardize.

    Classification splits are stratified. The scaler is fitted on the training
    part only, so no information leaks from validation or test data.

    Parameters
    ----------
    dataset : Dataset
    val_fraction, test_fraction : float, default=0.2
        Fractions of all samples; each in (0, 1) and together below 1.
    random_state : int, default=0
        Seed of the split.
    dtype : {"float32", "float64"}, default="float32"
        dtype of the features (and of regression targets).

    Returns
    -------
    Splits
    """
    _check_fractions(val_fraction, test_fraction)
    from sklearn.model_selection import train_test_split

    dtype = np.dtype(dtype)
    X, y = dataset.X, dataset.y
    classify = dataset.task == "classification"
    rng = np.random.default_rng(random_state)
    seeds = rng.integers(0, 2**31 - 1, size=2)
    X_rest, X_test, y_rest, y_test = train_test_split(
        X,
        y,
        test_size=test_fraction,
        random_state=int(seeds[0]),
        stratify=y if classify else None,
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=int(seeds[1]),
        stratify=y_rest if classify else None,
    )
    mean = X_train.mean(axis=0)
    scale = X_train.std(axis=0)
    scale[scale == 0.0] = 1.0  # constant features (digits' blank pixels) stay 0

    def fx(a):
        return np.ascontiguousarray((a - mean) / scale, dtype=dtype)

    if classify:
        fy = np.asarray
    else:
        y_mean, y_scale = y_train.mean(), (y_train.std() or 1.0)

        def fy(a):
            return np.ascontiguousarray((a - y_mean) / y_scale, dtype=dtype)

    return Splits(
        fx(X_train), fy(y_train), fx(X_val), fy(y_val), fx(X_test), fy(y_test), task=dataset.task
    )
