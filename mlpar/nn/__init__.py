"""The NumPy MLP engine and its scikit-learn compatible estimators.

:class:`MLPClassifier` and :class:`MLPRegressor` follow scikit-learn's MLP
(parameters, losses, stopping rules) on a faster engine: float32 end to end,
parameters, gradients and optimizer state in flat buffers, and a training step
that allocates nothing. ``instrument=True`` records where a fit's time goes
(GIL-free BLAS and large ufuncs versus GIL-held Python), which the rest of
mlpar uses to explain and predict backend speedups.
"""

from ._engine import ACTIVATIONS
from ._estimators import MLPClassifier, MLPRegressor
from ._optim import SOLVERS
from ._train import STOP_REASONS

__all__ = ["ACTIVATIONS", "SOLVERS", "STOP_REASONS", "MLPClassifier", "MLPRegressor"]
