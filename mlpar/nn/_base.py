"""The machinery shared by MLPClassifier and MLPRegressor: parameters, fit, predict."""

import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._engine import ACTIVATIONS, Network, forward
from ._kernels import measure_timer_overhead, measure_wrapper_overhead
from ._optim import SOLVERS, make_optimizer
from ._train import History, train

__all__ = ["DTYPES", "BaseMLP"]

DTYPES = ("float32", "float64")


def _make_rng(random_state):
    """A Generator from None (fresh OS entropy), an int seed, or a Generator (used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


class BaseMLP(BaseEstimator):
    """Shared fit/partial_fit/predict machinery; use MLPClassifier or MLPRegressor.

    Subclasses provide ``_validate_input(X, y, *, incremental, reset, dtype) ->
    (X, Y)`` (Y: 2-D network targets), ``_out_activation()``,
    ``_is_classifier()`` and ``_score_output(P, Y)`` (the early-stopping score
    of network outputs P against targets Y).
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

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate_init=1e-3, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype="float32", max_time=None, instrument=False):
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

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}; "
                "pass e.g. (100,) or (64, 64)"
            )
        return [int(s) for s in sizes]

    def _fit(self, X, y, *, incremental):
        t_start = time.perf_counter()
        dtype = np.dtype(self.dtype)
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True; "
                             "use fit, or set early_stopping=False")
        X, Y = self._validate_input(X, y, incremental=incremental, reset=first_pass, dtype=dtype)
        layer_units = [X.shape[1], *hidden, Y.shape[1]]
        deadline = None if self.max_time is None else t_start + self.max_time
        rng = _make_rng(self.random_state)
        out_activation = self._out_activation()
        net = Network(layer_units, activation=self.activation, out_activation=out_activation,
                      dtype=dtype)

        if first_pass:
            net.init_glorot(rng)
            self._history = None
            self._optimizer = None
        else:
            shapes = [tuple(w.shape) for w in self.coefs_]
            if shapes != net.shapes:
                raise ValueError(
                    f"cannot continue training: the fitted layers have shapes {shapes}, but "
                    f"hidden_layer_sizes={self.hidden_layer_sizes!r} and the data give "
                    f"{net.shapes}; fit from scratch (warm_start=False)"
                )
            net.load(self.coefs_, self.intercepts_)
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = net.n_layers
        self.out_activation_ = out_activation

        opt = getattr(self, "_optimizer", None)
        if not incremental or opt is None or (opt.solver, opt.dtype) != (self.solver, dtype):
            # As in scikit-learn: fit (also with warm_start) restarts the
            # optimizer's state; partial_fit keeps it (unless solver or dtype
            # changed in between).
            opt = make_optimizer(
                self.solver, net.n_params, dtype, learning_rate_init=self.learning_rate_init,
                beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                momentum=self.momentum, nesterovs_momentum=self.nesterovs_momentum,
            )
        history = getattr(self, "_history", None)
        if history is None or history.early_stopping != self.early_stopping:
            history = History(early_stopping=self.early_stopping)

        scorer = None
        if self.early_stopping:
            X, Y, scorer = self._validation_split(X, Y, net, rng)
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(f"batch_size={self.batch_size} is larger than the {n_samples} "
                              "training samples; it is clipped to that", UserWarning)
            batch_size = min(self.batch_size, n_samples)

        outcome = train(
            net, opt, X, Y, history=history, rng=rng, batch_size=batch_size,
            alpha=self.alpha, shuffle=self.shuffle, max_iter=1 if incremental else self.max_iter,
            tol=self.tol, n_iter_no_change=self.n_iter_no_change, incremental=incremental,
            scorer=scorer, deadline=deadline, instrument=self.instrument,
            verbose=self.verbose,
            # A sweep trains for a fixed budget on purpose and reads stop_reason_
            # instead: mlpar.trial sets this private flag (a warnings filter
            # would be process-global, and racy under the threads backend).
            warn_max_iter=getattr(self, "_warn_max_iter", True),
        )
        fit_time = time.perf_counter() - t_start

        self._optimizer = opt
        self._history = history
        self.coefs_ = net.coefs
        self.intercepts_ = net.intercepts
        self.n_iter_ = outcome.n_iter
        self.t_ = history.t
        self.loss_ = outcome.loss
        self.loss_curve_ = history.loss_curve
        self.stop_reason_ = outcome.stop_reason
        if self.early_stopping:
            self.best_loss_ = None
            self.validation_scores_ = history.validation_scores
            self.best_validation_score_ = history.best_validation_score
        else:
            self.best_loss_ = history.best_loss
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.fit_stats_ = None
        if self.instrument:
            stats = outcome.stats
            stats.update(
                fit_time=fit_time, n_samples_seen=outcome.n_samples_seen,
                n_epochs=outcome.n_iter, batch_size=batch_size,
                # Measured after fit_time was taken, so they do not inflate it.
                timer_overhead=measure_timer_overhead(),
                wrapper_overhead=measure_wrapper_overhead(),
            )
            self.fit_stats_ = stats
        return self

    def _validation_split(self, X, Y, net, rng):
        """Hold out ``validation_fraction`` of the data; return it as a scorer."""
        # scikit-learn stratifies only single-output classification (binary).
        stratify = Y if (self._is_classifier() and Y.shape[1] == 1) else None
        X_train, X_val, Y_train, Y_val = train_test_split(
            X, Y, test_size=self.validation_fraction, stratify=stratify,
            random_state=int(rng.integers(2 ** 32)),
        )
        if X_val.shape[0] < 2:
            raise ValueError(
                f"the validation set has {X_val.shape[0]} sample(s), too few for early "
                "stopping; increase validation_fraction or the size of your dataset"
            )
        X_train, Y_train = np.ascontiguousarray(X_train), np.ascontiguousarray(Y_train)

        def scorer():
            return self._score_output(forward(X_val, net.coefs, net.intercepts,
                                              self.activation, net.out_activation), Y_val)

        return X_train, Y_train, scorer

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
