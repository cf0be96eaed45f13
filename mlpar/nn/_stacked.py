"""Stacked training: K MLPs of one architecture trained together, each as if alone.

A small MLP's training step is mostly Python overhead (~40 us of GIL-held calls
against ~9 us of numerics at width 8, batch 32). :func:`train_stacked` trains K
models that share the architecture, the data, the batch size, the epoch budget,
the dtype and the solver in one batched computation: every NumPy call of a step
does the work of all K, so the overhead is paid once per step instead of K
times. Models may differ in everything else a trial varies: seed (weight
initialization and minibatch order), learning rate, L2 strength, momentum,
Adam's betas and epsilon, and the convergence rule (``tol``,
``n_iter_no_change``).

Each model's result is the result of training it alone with
:class:`~mlpar.nn.MLPClassifier` / :class:`~mlpar.nn.MLPRegressor` (same
``random_state`` and hyperparameters, ``early_stopping=False``): the same
initial weights and minibatches, drawn from ``np.random.default_rng(seed)`` in
the same order, and the same arithmetic (see :mod:`._stacked_step`), so weights,
loss curves and stopping epochs are bit-identical. The one known exception is
the logistic function: this module is NumPy-only and computes it as
``1 / (1 + exp(-z))``; wherever the single engine uses another implementation,
logistic models agree to rounding, not bit for bit.

A model that diverges (non-finite minibatch loss), converges, or runs out of
time stops, as it would alone; its parameters are copied out and the stack is
compacted, so the others go on and it costs nothing more.
"""

import time
from dataclasses import dataclass, field, fields
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
from ._engine import OUT_ACTIVATIONS, forward
from ._fit import FittedMLP, _clip_batch_size, class_targets
from ._metrics import output_score
from ._stacked_loop import Stack
from ._stacked_step import KERNELS

__all__ = ["StackMember", "StackedResult", "fit_mlp_stack", "train_stacked"]


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


@dataclass
class StackedResult:
    """One model of a stack, trained: the estimators' fitted attributes, without ``_``.

    ``params`` is the flat parameter vector in the engine's layout;
    ``coefs`` and ``intercepts`` are views into it.
    """

    index: int  # position in the ``members`` passed to train_stacked
    member: StackMember
    params: np.ndarray
    coefs: list
    intercepts: list
    n_iter: int
    loss: float
    loss_curve: list
    best_loss: float
    stop_reason: str
    n_steps: int
    t: int  # samples seen (scikit-learn's t_)
    activation: str
    out_activation: str
    kernels: dict = field(repr=False, default_factory=dict)  # GEMM site -> kernel

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


def train_stacked(X, Y, members, *, hidden_layer_sizes=(100,), activation="relu",
                  out_activation, solver="adam", batch_size="auto", max_iter=200, shuffle=True,
                  tol=1e-4, n_iter_no_change=10, dtype="float32", max_time=None, kernel="auto"):
    """Train one MLP per member, all in one batched computation.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training data, shared by all models.
    Y : array-like of shape (n_samples, n_outputs)
        Encoded targets, as the estimators train on them: one-hot rows
        (multiclass, ``out_activation="softmax"``), one 0/1 column or an
        indicator matrix (binary or multilabel, ``"logistic"``), or the
        regression targets (``"identity"``).
    members : sequence of StackMember or mapping
        One per model; a mapping gives :class:`StackMember` fields by name.
    hidden_layer_sizes, activation, solver, batch_size, max_iter, shuffle, dtype
        As the estimators' parameters of the same names, shared by all models.
    out_activation : {"softmax", "logistic", "identity"}
        The output layer, which fixes the loss (cross-entropy, binary
        cross-entropy, half squared error).
    tol : float, default=1e-4
    n_iter_no_change : int, default=10
        The convergence rule on the training loss, for members that do not
        set their own.
    max_time : float or None, default=None
        Seconds from the call after which every model still training stops
        (``stop_reason="max_time"``), checked after each minibatch as the
        estimators' ``max_time`` is. The models train concurrently, so each
        has had at most ``max_time`` seconds of wall time.
    kernel : {"auto", "batched", "loop"}, default="auto"
        How each GEMM of a step runs: one ``np.matmul`` over the stack, or a
        loop of 2-D ``np.dot`` over the models. ``"auto"`` measures both for
        every layer and product at the start and keeps the faster.

    Returns
    -------
    list of StackedResult
        In the order of ``members``.

    Raises
    ------
    ValueError, TypeError
        For a bad argument or member field (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 4)).astype(np.float32)
    >>> Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]
    >>> results = train_stacked(X, Y, [{"random_state": s} for s in range(4)],
    ...                         hidden_layer_sizes=(8,), out_activation="softmax",
    ...                         batch_size=16, max_iter=5)
    >>> [r.n_iter for r in results]
    [5, 5, 5, 5]
    """
    start = time.perf_counter()
    shared = dict(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
                  batch_size=batch_size, max_iter=max_iter, shuffle=shuffle, tol=tol,
                  n_iter_no_change=n_iter_no_change, dtype=dtype, max_time=max_time)
    hidden = hidden_sizes(hidden_layer_sizes)
    members = _check_options(members, shared, out_activation, kernel)
    dtype = np.dtype(dtype)
    X = check_X(X, dtype)
    Y = _check_targets(Y, X, dtype)
    batch_size = _clip_batch_size(batch_size, X.shape[0])
    deadline = None if max_time is None else start + float(max_time)
    stack = Stack(X, Y, members, hidden=hidden, activation=activation,
                  out_activation=out_activation, solver=solver, batch_size=batch_size,
                  dtype=dtype, kernel=kernel)
    records = stack.train(max_iter=max_iter, shuffle=bool(shuffle), deadline=deadline)
    results = []
    for i, (member, record) in enumerate(zip(members, records)):
        coefs, intercepts = stack.layout.model_views(record["params"])
        results.append(StackedResult(index=i, member=member, coefs=coefs, intercepts=intercepts,
                                     activation=activation, out_activation=out_activation,
                                     kernels=stack.kernels, **record))
    return results


def fit_mlp_stack(X, y, members, *, task, hidden_layer_sizes=(100,), activation="relu",
                  solver="adam", batch_size="auto", max_iter=200, shuffle=True, tol=1e-4,
                  n_iter_no_change=10, dtype="float32", max_time=None, kernel="auto"):
    """:func:`mlpar.nn.fit_mlp` for many members at once: labels in, FittedMLP out.

    Encodes ``y`` exactly as ``fit_mlp`` does (sorted classes; a logistic
    output for two classes, softmax for more; float targets for regression),
    trains with :func:`train_stacked`, and returns one
    :class:`~mlpar.nn.FittedMLP` per member: each equal to
    ``fit_mlp(X, y, task=task, random_state=..., ...)`` with that member's
    hyperparameters and ``early_stopping=False``, and scored by the same
    ``predict`` / ``score``. Early stopping does not stack: each model would
    hold out its own validation split, so the models would not share data.
    ``max_iter`` running out is reported in ``stop_reason``, never warned.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class labels (classification) or float targets (regression).
    members : sequence of StackMember or mapping
    task : {"classification", "regression"}
    hidden_layer_sizes, activation, solver, batch_size, max_iter, shuffle, tol, \
n_iter_no_change, dtype, max_time, kernel
        As for :func:`train_stacked`.

    Returns
    -------
    list of FittedMLP
        In the order of ``members``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64"):
        raise ValueError(f"dtype must be one of 'float32', 'float64', got {dtype!r}")
    X = check_X(X, dt)
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"X and y have different numbers of samples: {X.shape[0]} and "
                         f"{y.shape[0] if y.ndim else 'a scalar'}; pass one target per row of X")
    classes = None
    if task == "classification":
        classes, codes = encode_labels(y)
        Y = class_targets(codes, len(classes), dt)
        out_activation = "softmax" if len(classes) > 2 else "logistic"
    else:
        Y, out_activation = regression_targets(y, dt), "identity"
    results = train_stacked(
        X, Y, members, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
        out_activation=out_activation, solver=solver, batch_size=batch_size, max_iter=max_iter,
        shuffle=shuffle, tol=tol, n_iter_no_change=n_iter_no_change, dtype=dtype,
        max_time=max_time, kernel=kernel)
    return [FittedMLP(task=task, activation=activation, out_activation=out_activation,
                      coefs=r.coefs, intercepts=r.intercepts, n_iter=r.n_iter, loss=r.loss,
                      loss_curve=r.loss_curve, best_loss=r.best_loss, validation_scores=None,
                      best_validation_score=None, stop_reason=r.stop_reason, t=r.t,
                      classes=classes)
            for r in results]


# -- argument checks ------------------------------------------------------------------


def _check_member(member, i, shared):
    """A StackMember with the stack's tol / n_iter_no_change filled in, checked by the
    single engine's rules (``_checks.check_hyperparameters``) with the shared options."""
    names = [f.name for f in fields(StackMember)]
    if isinstance(member, StackMember):
        values = {name: getattr(member, name) for name in names}
    elif hasattr(member, "keys"):
        unknown = sorted(set(member) - set(names))
        if unknown:
            raise ValueError(f"members[{i}] has unknown field(s) {', '.join(map(repr, unknown))};"
                             f" valid: {', '.join(names)}")
        values = {**{f.name: f.default for f in fields(StackMember)}, **member}
    else:
        raise TypeError(f"members[{i}] must be a StackMember or a mapping, got "
                        f"{type(member).__name__}")
    for name in ("tol", "n_iter_no_change"):
        if values[name] is None:
            values[name] = shared[name]
    hp = SimpleNamespace(**{**shared, **values}, validation_fraction=0.1, early_stopping=False,
                         instrument=False, warn_max_iter=False, verbose=False)
    try:
        check_hyperparameters(hp)
    except ValueError as e:
        name = str(e).split(" ", 1)[0]
        if name in values:
            raise ValueError(f"members[{i}].{e}") from None
        raise
    return StackMember(**values)


def _check_options(members, shared, out_activation, kernel):
    """Validated members; the shared options and ``out_activation`` / ``kernel`` checked."""
    for name, value, valid in [("out_activation", out_activation, OUT_ACTIVATIONS),
                               ("kernel", kernel, KERNELS)]:
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; available: {', '.join(valid)}")
    if (isinstance(members, (str, bytes)) or hasattr(members, "keys")
            or not hasattr(members, "__iter__")):
        raise TypeError(f"members must be a sequence of StackMember or mappings, got "
                        f"{type(members).__name__}")
    members = [_check_member(m, i, shared) for i, m in enumerate(members)]
    if not members:
        raise ValueError("members is empty; pass at least one StackMember (or mapping)")
    generators = [id(m.random_state) for m in members
                  if isinstance(m.random_state, np.random.Generator)]
    if len(generators) != len(set(generators)):
        raise ValueError("two members share one numpy.random.Generator, so their draws would "
                         "interleave; give each member its own Generator or an int seed")
    return members


def _check_targets(Y, X, dtype):
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be the encoded targets, of shape (n_samples, n_outputs) = "
                         f"({X.shape[0]}, ...), got shape {Y.shape}; reshape a 1-D target "
                         "with y.reshape(-1, 1), or use fit_mlp_stack with labels")
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"Y contains NaN or infinity (in {dtype}); remove those samples")
    return Y
