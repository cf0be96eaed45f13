"""The NumPy MLP engine and its scikit-learn compatible estimators.

:class:`MLPClassifier` and :class:`MLPRegressor` follow scikit-learn's MLP
(parameters, losses, stopping rules) on a faster engine: float32 end to end,
parameters, gradients and optimizer state in flat buffers, and a training step
that allocates nothing. ``instrument=True`` records where a fit's time goes
(GIL-free BLAS and large ufuncs versus GIL-held Python), which the rest of
mlpar uses to explain and predict backend speedups.

:func:`fit_mlp` trains the same models with NumPy alone, and
:func:`fit_mlp_stack` trains many of them as one batched computation. Importing this package
loads NumPy and the engine only; the estimators (and with them scikit-learn,
~2 s and ~100 MB per process) load on first use of their names.
"""

from ._engine import ACTIVATIONS
from ._fit import FittedMLP, fit_mlp
from ._optim import SOLVERS
from ._train import STOP_REASONS

__all__ = [
    "ACTIVATIONS",
    "SOLVERS",
    "STOP_REASONS",
    "FittedMLP",
    "MLPClassifier",
    "MLPRegressor",
    "StackMember",
    "StackedResult",
    "fit_mlp",
    "fit_mlp_stack",
    "train_stacked",
]

_ESTIMATORS = ("MLPClassifier", "MLPRegressor")
# The stacked engine loads on first use too: a worker that trains one model at
# a time (and the fork server that starts workers) need not import it.
_STACKED = ("StackedResult", "StackMember", "fit_mlp_stack", "train_stacked")


def __getattr__(name):
    # PEP 562: `from mlpar.nn import MLPClassifier` lands here the first time.
    if name in _ESTIMATORS or name in _STACKED:
        import importlib

        module = "._estimators" if name in _ESTIMATORS else "._stacked"
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
