"""What a stack is given and gives back: :class:`StackMember` and :class:`StackedResult`."""

from dataclasses import dataclass, field

import numpy as np

from ._checks import check_X
from ._engine import forward
from ._metrics import output_score

__all__ = ["StackMember", "StackedResult"]


@dataclass(frozen=True)
class StackMember:
    """What one model of a stack may set for itself; defaults are the estimators'.

    ``tol`` and ``n_iter_no_change`` left at None take the stack's values.
    ``random_state`` seeds the Glorot initialization and the per-epoch
    shuffles, as the estimators' ``random_state`` does: an int, None (fresh
    entropy) or a ``numpy.random.Generator`` (used as is, not copied).
    """

    random_state: object = None
    learning_rate_init: float = 1e-3
    alpha: float = 1e-4
    momentum: float = 0.9  # sgd only
    nesterovs_momentum: bool = True  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999  # adam only
    epsilon: float = 1e-8  # adam only
    tol: float = None
    n_iter_no_change: int = None


@dataclass(eq=False)
class StackedResult:
    """One model of a stack, trained: the estimators' fitted attributes, without ``_``.

    ``params`` is the flat parameter vector in the engine's layout;
    ``coefs`` and ``intercepts`` are views into it.
    """

    index: int  # position in the ``members`` passed to train_stacked
    member: StackMember
    params: np.ndarray = field(repr=False)
    coefs: list = field(repr=False)
    intercepts: list = field(repr=False)
    n_iter: int
    loss: float
    loss_curve: list = field(repr=False)
    best_loss: float
    stop_reason: str
    n_steps: int
    t: int  # samples seen (scikit-learn's t_)
    activation: str
    out_activation: str
    stack_size: int = 1  # models trained together with this one (1: by the single engine)
    kernels: dict = field(repr=False, default_factory=dict)  # GEMM site -> kernel used

    def predict(self, X):
        """Network outputs for ``X``: probabilities (classifiers) or predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), in the model's dtype
        """
        X = check_X(X, self.params.dtype, n_features=self.coefs[0].shape[0])
        return forward(X, self.coefs, self.intercepts, self.activation, self.out_activation)

    def score(self, X, Y):
        """Accuracy (softmax or logistic outputs) or R^2 (identity outputs) on encoded ``Y``.

        ``Y`` is encoded as for training: one-hot rows, one 0/1 column
        (binary) or an indicator matrix (multilabel, scored as subset
        accuracy), or the regression targets. NaN when the outputs are not
        finite (a diverged model).
        """
        P = self.predict(X)
        Y = np.asarray(Y).reshape(P.shape[0], -1)
        n_classes = None if self.out_activation == "identity" else max(2, P.shape[1])
        return output_score(P, Y, out_activation=self.out_activation, n_classes=n_classes)
