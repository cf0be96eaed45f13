"""fit_mlp's own checks of its data and hyperparameters, in NumPy.

The estimators validate with scikit-learn (its messages, its parameter
constraints) and never reach these; :func:`mlpar.nn.fit_mlp` must not import
scikit-learn, so it checks here, accepting the same values.
"""

import math
from numbers import Integral, Real

import numpy as np

from ._engine import ACTIVATIONS
from ._optim import SOLVERS

__all__ = [
    "DTYPES",
    "TASKS",
    "check_X",
    "check_hyperparameters",
    "encode_labels",
    "hidden_sizes",
    "regression_targets",
]

DTYPES = ("float32", "float64")
TASKS = ("classification", "regression")


def hidden_sizes(hidden_layer_sizes):
    """``hidden_layer_sizes`` as a list of positive ints (one int means one layer)."""
    sizes = hidden_layer_sizes
    sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(
            f"hidden_layer_sizes must be positive integers, got {hidden_layer_sizes!r}; "
            "pass e.g. (100,) or (64, 64)"
        )
    return [int(s) for s in sizes]


def _is_int(v):
    return isinstance(v, Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, Real) and not isinstance(v, (bool, np.bool_))


def _dtype_name(v):
    try:
        return np.dtype(v).name
    except TypeError:
        return None


_BOOL = (lambda v: isinstance(v, (bool, np.bool_)), "True or False")
_CHECKS = {
    "activation": (
        lambda v: isinstance(v, str) and v in ACTIVATIONS,
        f"one of {', '.join(map(repr, ACTIVATIONS))}",
    ),
    "solver": (
        lambda v: isinstance(v, str) and v in SOLVERS,
        f"one of {', '.join(map(repr, SOLVERS))}",
    ),
    "dtype": (lambda v: _dtype_name(v) in DTYPES, f"one of {', '.join(map(repr, DTYPES))}"),
    "alpha": (lambda v: _is_real(v) and v >= 0, "a float >= 0"),
    "batch_size": (
        lambda v: v == "auto" if isinstance(v, str) else _is_int(v) and v >= 1,
        "'auto' or an int >= 1",
    ),
    "learning_rate_init": (lambda v: _is_real(v) and v > 0, "a float > 0"),
    "max_iter": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "tol": (lambda v: _is_real(v) and v >= 0, "a float >= 0"),
    "momentum": (lambda v: _is_real(v) and 0 <= v <= 1, "a float in [0, 1]"),
    "validation_fraction": (lambda v: _is_real(v) and 0 < v < 1, "a float in (0, 1)"),
    "beta_1": (lambda v: _is_real(v) and 0 <= v < 1, "a float in [0, 1)"),
    "beta_2": (lambda v: _is_real(v) and 0 <= v < 1, "a float in [0, 1)"),
    "epsilon": (lambda v: _is_real(v) and v > 0, "a float > 0"),
    "n_iter_no_change": (
        lambda v: (_is_int(v) and v >= 1) or (_is_real(v) and v == math.inf),
        "an int >= 1 or np.inf",
    ),
    "max_time": (lambda v: v is None or (_is_real(v) and v > 0), "None or a float > 0 (seconds)"),
    "random_state": (
        lambda v: v is None or (_is_int(v) and v >= 0) or isinstance(v, np.random.Generator),
        "None, an int >= 0 or a numpy.random.Generator",
    ),
    **dict.fromkeys(
        (
            "shuffle",
            "nesterovs_momentum",
            "early_stopping",
            "instrument",
            "warn_max_iter",
            "verbose",
        ),
        _BOOL,
    ),
}


def check_hyperparameters(hp):
    """Raise ValueError naming the first hyperparameter of ``hp`` out of its range."""
    for name, (ok, expected) in _CHECKS.items():
        value = getattr(hp, name)
        if not ok(value):
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_X(X, dtype, *, n_features=None):
    """``X`` as a C-contiguous 2-D array of ``dtype``, finite."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features), got shape "
            f"{X.shape}; reshape a single feature with X.reshape(-1, 1)"
        )
    if X.dtype.kind not in "biufO":
        raise TypeError(f"X must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X has shape {X.shape}; it needs at least one sample and one feature")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model was fitted on {n_features}")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"X contains NaN or infinity (in {dtype}); remove or impute them")
    return X


def encode_labels(y):
    """Sorted classes and each label's index into them."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"task='classification' takes 1-D class labels, got shape {y.shape}; "
            "for multilabel targets use MLPClassifier"
        )
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(
            "class labels must be integers, strings or other discrete values, "
            "got floats that are not whole numbers (continuous targets); "
            "use task='regression'"
        )
    return np.unique(y, return_inverse=True)


def regression_targets(y, dtype):
    """Float targets as a C-contiguous (n_samples, n_outputs) array of ``dtype``."""
    if y.dtype.kind == "O":
        y = y.astype(np.float64)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"regression targets must be numeric, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise ValueError(f"regression targets must be 1-D or 2-D, got shape {y.shape}")
    Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"y contains NaN or infinity (in {dtype}); remove those samples")
    return Y
