"""Fit an MLP with NumPy only: :func:`fit_mlp`, :class:`FittedMLP`, and the core they share
with the estimators.

:func:`_fit_core` trains on data that is already validated and encoded (2-D
network targets). ``fit_mlp`` validates and encodes with NumPy and calls it;
``MLPClassifier`` / ``MLPRegressor`` validate and encode with scikit-learn and
call it too, so the two cannot drift apart: same arguments, same model, bit
for bit. Nothing here imports scikit-learn, SciPy or pandas, which is what lets
a sweep's worker train and score a model with NumPy alone.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ._checks import (
    TASKS,
    check_hyperparameters,
    check_X,
    encode_labels,
    hidden_sizes,
    regression_targets,
)
from ._checkpoint import restore_state
from ._engine import Network, forward
from ._kernels import measure_timer_overhead, measure_wrapper_overhead
from ._metrics import accuracy, output_score, r2_score
from ._optim import make_optimizer
from ._split import validation_split
from ._train import History, train

__all__ = ["FittedMLP", "fit_mlp"]


def make_rng(random_state):
    """A Generator from None (fresh OS entropy), an int seed, or a Generator (used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def class_targets(codes, n_classes, dtype):
    """Network targets from class indices, as LabelBinarizer encodes the classes:
    one column for ``classes[1]`` (binary), one-hot rows (three or more), a
    column of zeros (a single class)."""
    if n_classes <= 2:
        return np.ascontiguousarray((codes == 1).reshape(-1, 1), dtype=dtype)
    # Built directly: ~10x faster than LabelBinarizer.transform, which goes
    # through a sparse matrix.
    Y = np.zeros((codes.shape[0], n_classes), dtype=dtype)
    Y[np.arange(codes.shape[0]), codes] = 1
    return Y


@dataclass(eq=False)
class FittedMLP:
    """A trained MLP, as :func:`fit_mlp` returns it: weights, training record, predict and score.

    Attributes
    ----------
    task : {"classification", "regression"}
    activation : str
        Activation of the hidden layers.
    out_activation : {"softmax", "logistic", "identity"}
        Activation of the output layer.
    coefs, intercepts : list of ndarray
        Weight matrix and bias vector of each layer (views into one flat buffer).
    classes : ndarray or None
        Sorted class labels (classification); None for regression.
    n_iter : int
        Epochs run.
    loss : float
        Training loss of the last epoch.
    loss_curve : list of float
        Training loss of every epoch.
    best_loss : float or None
        Lowest training loss; None with early stopping.
    validation_scores : list of float or None
        Validation score of every epoch with early stopping, else None.
    best_validation_score : float or None
        Best validation score with early stopping, else None.
    stop_reason : {"max_iter", "converged", "early_stopping", "max_time", "diverged"}
        Why training stopped.
    t : int
        Training samples seen.
    fit_stats : dict or None
        Kernel timings with ``instrument=True`` (see ``MLPClassifier.fit_stats_``).
    """

    task: str
    activation: str
    out_activation: str
    coefs: list = field(repr=False)
    intercepts: list = field(repr=False)
    n_iter: int
    loss: float
    loss_curve: list = field(repr=False)
    best_loss: float | None
    validation_scores: list | None = field(repr=False)
    best_validation_score: float | None
    stop_reason: str
    t: int
    fit_stats: dict | None = field(default=None, repr=False)
    classes: np.ndarray | None = field(default=None, repr=False)
    # What a continued fit needs (the estimators' warm_start and partial_fit).
    _optimizer: object = field(default=None, repr=False)
    _history: History | None = field(default=None, repr=False)
    _rng: np.random.Generator | None = field(default=None, repr=False)  # for checkpoints

    @property
    def n_layers(self):
        """Number of layers, input and output included."""
        return len(self.coefs) + 1

    @property
    def n_outputs(self):
        """Number of output units."""
        return self.coefs[-1].shape[1]

    @property
    def n_params(self):
        """Number of weights and biases."""
        return sum(w.size for w in self.coefs) + sum(b.size for b in self.intercepts)

    def _outputs(self, X):
        X = check_X(X, self.coefs[0].dtype, n_features=self.coefs[0].shape[0])
        return forward(X, self.coefs, self.intercepts, self.activation, self.out_activation)

    def predict(self, X):
        """Class labels (classification) or targets (regression) for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        P = self._outputs(X)
        if self.task == "regression":
            return P.ravel() if P.shape[1] == 1 else P
        if self.out_activation == "softmax":
            return self.classes[P.argmax(axis=1)]
        if len(self.classes) == 1:
            return np.repeat(self.classes[0], P.shape[0])
        return self.classes[(P.ravel() > 0.5).astype(np.intp)]

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes``, in the model's dtype.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        if self.task != "classification":
            raise AttributeError("predict_proba is only available for task='classification'")
        P = self._outputs(X)
        return np.hstack([1 - P, P]) if P.shape[1] == 1 else P

    def score(self, X, y):
        """Accuracy (classification) or R^2 averaged over outputs (regression).

        The values scikit-learn's ``accuracy_score`` and ``r2_score`` give. R^2
        is NaN when the predictions are not finite (a diverged fit).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels or targets.

        Returns
        -------
        score : float
        """
        pred = self.predict(X)
        if self.task == "classification":
            y = np.asarray(y)
            return accuracy(y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y, pred)
        if not np.isfinite(pred).all():
            return float("nan")
        return r2_score(y, pred)


def fit_mlp(X, y, *, task, hidden_layer_sizes=(100,), activation="relu", solver="adam",
            alpha=1e-4, batch_size="auto", learning_rate_init=1e-3, max_iter=200, shuffle=True,
            random_state=None, tol=1e-4, momentum=0.9, nesterovs_momentum=True,
            early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
            epsilon=1e-8, n_iter_no_change=10, dtype="float32", max_time=None,
            instrument=False, warn_max_iter=True, verbose=False, init=None):
    """Train an MLP classifier or regressor with NumPy only.

    Gives the model ``MLPClassifier`` / ``MLPRegressor`` train with the same
    arguments, bit for bit (they run the same core), without importing
    scikit-learn, SciPy or pandas. The hyperparameters mean what they mean for
    the estimators; see :class:`mlpar.nn.MLPClassifier`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training data; converted to ``dtype``.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class labels (classification: 1-D, any sortable labels) or float
        targets (regression: 1-D or 2-D).
    task : {"classification", "regression"}
        Classification encodes the labels as scikit-learn's LabelBinarizer
        does (sorted classes; binary: one logistic output for ``classes[1]``;
        three or more: softmax) and scores accuracy; regression fits the
        squared error and scores R^2.
    hidden_layer_sizes : sequence of int, default=(100,)
    activation : {"identity", "logistic", "relu", "tanh"}, default="relu"
    solver : {"adam", "sgd"}, default="adam"
    alpha : float, default=1e-4
    batch_size : int or "auto", default="auto"
    learning_rate_init : float, default=1e-3
    max_iter : int, default=200
    shuffle : bool, default=True
    random_state : int, numpy.random.Generator or None, default=None
    tol : float, default=1e-4
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for binary
        classification, the split scikit-learn's ``train_test_split`` makes)
        and stop on its score.
    validation_fraction : float, default=0.1
    beta_1, beta_2 : float, default=0.9, 0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int or np.inf, default=10
    dtype : {"float32", "float64"}, default="float32"
    max_time : float or None, default=None
        Seconds from the call after which training stops (``stop_reason``
        "max_time"), checked after every minibatch.
    instrument : bool, default=False
        Record kernel timings in ``fit_stats``.
    warn_max_iter : bool, default=True
        Warn when ``max_iter`` epochs run out before convergence. A sweep that
        trains for a fixed budget on purpose passes False and reads
        ``stop_reason`` instead.
    verbose : bool, default=False
        Print the loss after each epoch.
    init : (coefs, intercepts[, state]) or None, default=None
        Continue from these weights for ``max_iter`` more epochs; None
        initializes (Glorot uniform). With a checkpoint's ``state``
        (``mlpar.nn._checkpoint``: ``load_checkpoint(path).init``) the
        optimizer's buffers, the random stream and the stopping record go on
        too; without it the optimizer starts fresh.

    Returns
    -------
    FittedMLP

    Raises
    ------
    ValueError, TypeError
        For bad data or a bad hyperparameter; the message names it.

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` runs out (and ``warn_max_iter``): scikit-learn's
        class if scikit-learn is loaded, else ``mlpar.nn._train.ConvergenceWarning``
        (both UserWarnings).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpar.nn import fit_mlp
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 4))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> model = fit_mlp(X, y, task="classification", hidden_layer_sizes=(16,),
    ...                 learning_rate_init=0.01, max_iter=100, random_state=0,
    ...                 warn_max_iter=False)
    >>> model.score(X, y) > 0.9
    True
    """
    t_start = time.perf_counter()
    # Every keyword but the data and the task, under the estimators' names: the
    # core reads the same attributes from an estimator.
    hp = SimpleNamespace(**{k: v for k, v in locals().items()
                            if k not in ("X", "y", "task", "t_start", "init")})
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    hidden = hidden_sizes(hidden_layer_sizes)
    check_hyperparameters(hp)
    hp.dtype = np.dtype(dtype).name
    dt = np.dtype(dtype)
    X = check_X(X, dt)
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"X and y have different numbers of samples: {X.shape[0]} and "
                         f"{y.shape[0] if y.ndim else 'a scalar'}; pass one target per row of X")
    if task == "classification":
        classes, codes = encode_labels(y)
        Y = class_targets(codes, len(classes), dt)
        out_activation, n_classes = ("softmax" if len(classes) > 2 else "logistic"), len(classes)
    else:
        Y, out_activation, n_classes, classes = regression_targets(y, dt), "identity", None, None
    fitted = _fit_core(X, Y, hp, hidden=hidden, out_activation=out_activation,
                       n_classes=n_classes, t_start=t_start, warn_max_iter=warn_max_iter,
                       init=init)
    fitted.classes = classes
    return fitted


def _fit_core(X, Y, hp, *, hidden, out_activation, n_classes, t_start, init=None,
              optimizer=None, history=None, incremental=False, warn_max_iter=True):
    """Train on validated, encoded data; what fit_mlp and the estimators share.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        C-contiguous, in ``hp.dtype``.
    Y : ndarray of shape (n_samples, n_outputs)
        Network targets (one-hot, 0/1 columns or floats), C-contiguous, ``hp.dtype``.
    hp : object
        The hyperparameters as attributes named like the estimators' parameters
        (an estimator itself, or the namespace fit_mlp builds).
    hidden : list of int
        Hidden layer sizes, already checked.
    out_activation : {"softmax", "logistic", "identity"}
    n_classes : int or None
        Number of classes; None for regression. Picks the early-stopping score
        (accuracy or R^2) and stratification (single-output classification).
    t_start : float
        ``time.perf_counter()`` at the start of the fit: ``max_time`` and
        ``fit_time`` count from it.
    init : (coefs, intercepts) or None
        Continue from these weights; None initializes (Glorot uniform).
    optimizer, history : or None
        A previous fit's, to continue it: the history is kept (if
        ``early_stopping`` did not change); the optimizer state only when
        ``incremental`` (as scikit-learn: fit restarts it, partial_fit keeps it).
    incremental : bool
        One epoch (partial_fit).

    Returns
    -------
    FittedMLP
        With ``classes`` unset (None): the caller knows its labels.
    """
    dtype = np.dtype(hp.dtype)
    rng = make_rng(hp.random_state)
    net = Network([X.shape[1], *hidden, Y.shape[1]], activation=hp.activation,
                  out_activation=out_activation, dtype=dtype)
    state = init[2] if init is not None and len(init) > 2 else None
    if init is None or state is not None:
        # With a checkpoint's state, drawn and overwritten: the random stream (and
        # with it an early-stopping hold-out) is then the one of the fit it continues.
        net.init_glorot(rng)
    if init is not None:
        shapes = [tuple(w.shape) for w in init[0]]
        if shapes != net.shapes:
            raise ValueError(
                f"cannot continue training: the fitted layers have shapes {shapes}, but "
                f"hidden_layer_sizes={hp.hidden_layer_sizes!r} and the data give "
                f"{net.shapes}; fit from scratch (warm_start=False)"
            )
        net.load(*init[:2])
    opt = optimizer
    if not incremental or opt is None or (opt.solver, opt.dtype) != (hp.solver, dtype):
        opt = make_optimizer(
            hp.solver, net.n_params, dtype, learning_rate_init=hp.learning_rate_init,
            beta_1=hp.beta_1, beta_2=hp.beta_2, epsilon=hp.epsilon, momentum=hp.momentum,
            nesterovs_momentum=hp.nesterovs_momentum,
        )
    if history is None or history.early_stopping != hp.early_stopping:
        history = History(early_stopping=hp.early_stopping)
    scorer = None
    if hp.early_stopping:
        X, Y, scorer = _hold_out(X, Y, net, rng, hp.validation_fraction, n_classes)
    if state is not None:
        restore_state(state, optimizer=opt, history=history, rng=rng)
    batch_size = _clip_batch_size(hp.batch_size, X.shape[0])
    outcome = train(
        net, opt, X, Y, history=history, rng=rng, batch_size=batch_size, alpha=hp.alpha,
        shuffle=hp.shuffle, max_iter=1 if incremental else hp.max_iter, tol=hp.tol,
        n_iter_no_change=hp.n_iter_no_change, incremental=incremental, scorer=scorer,
        deadline=None if hp.max_time is None else t_start + hp.max_time,
        instrument=hp.instrument, verbose=hp.verbose, warn_max_iter=warn_max_iter,
    )
    fit_time = time.perf_counter() - t_start
    es = hp.early_stopping
    fitted = FittedMLP(
        task="regression" if n_classes is None else "classification",
        activation=hp.activation, out_activation=out_activation, coefs=net.coefs,
        intercepts=net.intercepts, n_iter=outcome.n_iter, loss=outcome.loss,
        loss_curve=history.loss_curve, best_loss=None if es else history.best_loss,
        validation_scores=history.validation_scores if es else None,
        best_validation_score=history.best_validation_score if es else None,
        stop_reason=outcome.stop_reason, t=history.t, _optimizer=opt, _history=history,
        _rng=rng,
    )
    if hp.instrument:
        fitted.fit_stats = outcome.stats
        fitted.fit_stats.update(
            fit_time=fit_time, n_samples_seen=outcome.n_samples_seen,
            n_epochs=outcome.n_iter, batch_size=batch_size,
            # Measured after fit_time was taken, so they do not inflate it.
            timer_overhead=measure_timer_overhead(),
            wrapper_overhead=measure_wrapper_overhead(),
        )
    return fitted


def _hold_out(X, Y, net, rng, fraction, n_classes):
    """Hold out ``fraction`` of the data; return the rest and a scorer of the held-out part."""
    # Stratified for single-output classification only, as scikit-learn's MLP
    # does; the 0/1 column gives the classes in the order scikit-learn's
    # string encoding of the rows would ("0.0" < "1.0").
    labels = Y[:, 0] if (n_classes is not None and Y.shape[1] == 1) else None
    train_idx, val_idx = validation_split(X.shape[0], fraction, int(rng.integers(2 ** 32)),
                                          labels)
    X_val, Y_val = X[val_idx], Y[val_idx]
    if X_val.shape[0] < 2:
        raise ValueError(
            f"the validation set has {X_val.shape[0]} sample(s), too few for early "
            "stopping; increase validation_fraction or the size of your dataset"
        )

    def scorer():
        P = forward(X_val, net.coefs, net.intercepts, net.activation, net.out_activation)
        return output_score(P, Y_val, out_activation=net.out_activation, n_classes=n_classes)

    return X[train_idx], Y[train_idx], scorer


def _clip_batch_size(batch_size, n_samples):
    if batch_size == "auto":
        return min(200, n_samples)
    if batch_size > n_samples:
        warnings.warn(f"batch_size={batch_size} is larger than the {n_samples} training "
                      "samples; it is clipped to that", UserWarning, stacklevel=3)
    return min(batch_size, n_samples)
