"""The machinery shared by MLPClassifier and MLPRegressor: parameters, fit, predict."""

import time
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._checks import DTYPES, hidden_sizes
from ._engine import ACTIVATIONS, forward
from ._fit import _fit_core
from ._optim import SOLVERS

__all__ = ["DTYPES", "BaseMLP"]

# Attributes a fit sets, from the FittedMLP the shared core returns.
_FITTED = (
    "coefs",
    "intercepts",
    "n_iter",
    "t",
    "loss",
    "loss_curve",
    "stop_reason",
    "best_loss",
    "validation_scores",
    "best_validation_score",
    "fit_stats",
    "n_outputs",
    "n_layers",
    "out_activation",
)


class BaseMLP(BaseEstimator):
    """Shared fit/partial_fit/predict machinery; use MLPClassifier or MLPRegressor.

    Subclasses provide ``_validate_input(X, y, *, incremental, reset, dtype) ->
    (X, Y)`` (Y: 2-D network targets), ``_out_activation()`` and
    ``_n_classes()`` (None for a regressor). Training itself is
    :func:`._fit._fit_core`, the NumPy-only core :func:`mlpar.nn.fit_mlp` runs.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": [None, Interval(Integral, 0, None, closed="left"), np.random.Generator],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "dtype": [StrOptions(set(DTYPES))],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "instrument": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        dtype="float32",
        max_time=None,
        instrument=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.max_time = max_time
        self.instrument = instrument

    # -- fitting -------------------------------------------------------------

    def _fit(self, X, y, *, incremental):
        t_start = time.perf_counter()
        dtype = np.dtype(self.dtype)
        hidden = hidden_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError(
                "partial_fit does not support early_stopping=True; "
                "use fit, or set early_stopping=False"
            )
        X, Y = self._validate_input(X, y, incremental=incremental, reset=first_pass, dtype=dtype)
        # A continued fit (warm start, partial_fit) starts from coefs_ as they are
        # now (the user may have assigned them) and the previous fit's history
        # and optimizer; the core decides what of those it keeps.
        previous = (
            {}
            if first_pass
            else dict(
                init=(self.coefs_, self.intercepts_),
                optimizer=getattr(self, "_optimizer", None),
                history=getattr(self, "_history", None),
            )
        )
        fitted = _fit_core(
            X,
            Y,
            self,
            hidden=hidden,
            out_activation=self._out_activation(),
            n_classes=self._n_classes(),
            t_start=t_start,
            incremental=incremental,
            # A sweep trains for a fixed budget on purpose and reads stop_reason_
            # instead: mlpar.trial sets this private flag (a warnings filter
            # would be process-global, and racy under the threads backend).
            warn_max_iter=getattr(self, "_warn_max_iter", True),
            **previous,
        )
        self._optimizer = fitted._optimizer
        self._history = fitted._history
        for name in _FITTED:
            setattr(self, name + "_", getattr(fitted, name))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (a label indicator matrix for multilabel) or targets.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, incremental=False)

    # -- prediction ----------------------------------------------------------

    def _forward(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.coefs_[0].dtype, order="C")
        return forward(X, self.coefs_, self.intercepts_, self.activation, self.out_activation_)
