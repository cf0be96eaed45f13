"""Stacked training: K MLPs of one architecture trained together, each as if alone.

A small MLP's training step is mostly the fixed cost of its ~60 NumPy calls, not
their arithmetic (a step of a 64-8-8-10 network on 32 samples takes ~30-40 us, of
which the BLAS work is a few). :func:`train_stacked` trains K
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
loss curves and stopping epochs are bit-identical.

A model that diverges (non-finite minibatch loss), converges, or runs out of
time stops, as it would alone; its parameters are copied out and the stack is
compacted, so the others go on and it costs nothing more.

Stacks are sized to the cache: with ``max_stack="auto"`` the members are split
into stacks whose buffers fit about a fifth of the last-level cache, trained
one after another (a wide model gets a stack of its own, which is the single
engine itself): past that, every step streams the stack from memory and loses
to training the models one at a time.
"""

import time
from dataclasses import fields
from numbers import Integral
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
from ._engine import OUT_ACTIVATIONS
from ._fit import FittedMLP, _clip_batch_size, class_targets
from ._stacked_loop import Stack, split, stack_limit, train_alone
from ._stacked_step import KERNELS, StackedLayout
from ._stacked_types import StackedResult, StackMember

__all__ = ["StackMember", "StackedResult", "fit_mlp_stack", "train_stacked"]


def train_stacked(
    X,
    Y,
    members,
    *,
    hidden_layer_sizes=(100,),
    activation="relu",
    out_activation,
    solver="adam",
    batch_size="auto",
    max_iter=200,
    shuffle=True,
    tol=1e-4,
    n_iter_no_change=10,
    dtype="float32",
    max_time=None,
    kernel="auto",
    max_stack="auto",
):
    """Train one MLP per member, as one batched computation (or a few, see ``max_stack``).

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
        Seconds after which every model of a stack that is still training
        stops (``stop_reason="max_time"``), counted from the start of its stack
        and checked after each minibatch, as the estimators' ``max_time`` is.
        The models of a stack train concurrently, so each trains for at most
        ``max_time`` seconds of wall time, as it would alone.
    kernel : {"auto", "batched", "loop"}, default="auto"
        How each GEMM of a step runs: one ``np.matmul`` over the stack, or a
        loop of 2-D ``np.dot`` over the models. ``"auto"`` times both for
        every layer and product at the start (see ``choose_kernels``).
    max_stack : int, "auto" or None, default="auto"
        The most models trained as one computation; more members are split
        into evened-out stacks trained one after another. ``"auto"`` lets a
        stack hold as many models as fit about a fifth of the CPU's last-level
        cache (parameters, gradients, optimizer state and activations), beyond
        which every step would stream them from memory and lose to training
        one model at a time. A stack of one is trained by the single engine
        itself. None: all members in one stack.

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
    shared = dict(
        hidden_layer_sizes=hidden_layer_sizes,
        activation=activation,
        solver=solver,
        batch_size=batch_size,
        max_iter=max_iter,
        shuffle=shuffle,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        dtype=dtype,
        max_time=max_time,
    )
    hidden = hidden_sizes(hidden_layer_sizes)
    members = _check_options(members, shared, out_activation, kernel)
    _check_max_stack(max_stack)
    dtype = np.dtype(dtype)
    X = check_X(X, dtype)
    Y = _check_targets(Y, X, dtype)
    batch_size = _clip_batch_size(batch_size, X.shape[0])
    units = [X.shape[1], *hidden, Y.shape[1]]
    limit = stack_limit(max_stack, units, solver, batch_size, dtype)
    results = [None] * len(members)
    for group in split(len(members), limit):
        if len(group) == 1:
            records = [
                train_alone(
                    X,
                    Y,
                    members[group[0]],
                    hidden=hidden,
                    activation=activation,
                    out_activation=out_activation,
                    solver=solver,
                    batch_size=batch_size,
                    max_iter=max_iter,
                    shuffle=bool(shuffle),
                    max_time=max_time,
                    dtype=dtype,
                )
            ]
            kernels = {}
        else:
            deadline = None if max_time is None else time.perf_counter() + float(max_time)
            stack = Stack(
                X,
                Y,
                [members[i] for i in group],
                hidden=hidden,
                activation=activation,
                out_activation=out_activation,
                solver=solver,
                batch_size=batch_size,
                dtype=dtype,
                kernel=kernel,
            )
            records = stack.train(max_iter=max_iter, shuffle=bool(shuffle), deadline=deadline)
            kernel = kernels = stack.kernels  # the next stacks have the same shapes
        for i, record in zip(group, records):
            params = record.pop("params")
            coefs, intercepts = _model_views(units, params)
            results[i] = StackedResult(
                index=i,
                member=members[i],
                params=params,
                coefs=coefs,
                intercepts=intercepts,
                activation=activation,
                out_activation=out_activation,
                stack_size=len(group),
                kernels=kernels,
                **record,
            )
    return results


def fit_mlp_stack(
    X,
    y,
    members,
    *,
    task,
    hidden_layer_sizes=(100,),
    activation="relu",
    solver="adam",
    batch_size="auto",
    max_iter=200,
    shuffle=True,
    tol=1e-4,
    n_iter_no_change=10,
    dtype="float32",
    max_time=None,
    kernel="auto",
    max_stack="auto",
):
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
n_iter_no_change, dtype, max_time, kernel, max_stack
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
        raise ValueError(
            f"X and y have different numbers of samples: {X.shape[0]} and "
            f"{y.shape[0] if y.ndim else 'a scalar'}; pass one target per row of X"
        )
    classes = None
    if task == "classification":
        classes, codes = encode_labels(y)
        Y = class_targets(codes, len(classes), dt)
        out_activation = "softmax" if len(classes) > 2 else "logistic"
    else:
        Y, out_activation = regression_targets(y, dt), "identity"
    results = train_stacked(
        X,
        Y,
        members,
        hidden_layer_sizes=hidden_layer_sizes,
        activation=activation,
        out_activation=out_activation,
        solver=solver,
        batch_size=batch_size,
        max_iter=max_iter,
        shuffle=shuffle,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        dtype=dtype,
        max_time=max_time,
        kernel=kernel,
        max_stack=max_stack,
    )
    return [
        FittedMLP(
            task=task,
            activation=activation,
            out_activation=out_activation,
            coefs=r.coefs,
            intercepts=r.intercepts,
            n_iter=r.n_iter,
            loss=r.loss,
            loss_curve=r.loss_curve,
            best_loss=r.best_loss,
            validation_scores=None,
            best_validation_score=None,
            stop_reason=r.stop_reason,
            t=r.t,
            classes=classes,
        )
        for r in results
    ]


def _model_views(layer_units, params):
    """Per-layer coefs and intercepts: views into one model's flat parameters."""
    return StackedLayout(
        layer_units,
        activation="identity",
        out_activation="identity",
        dtype=params.dtype,
        n_models=0,
    ).model_views(params)


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
            raise ValueError(
                f"members[{i}] has unknown field(s) {', '.join(map(repr, unknown))};"
                f" valid: {', '.join(names)}"
            )
        values = {**{f.name: f.default for f in fields(StackMember)}, **member}
    else:
        raise TypeError(
            f"members[{i}] must be a StackMember or a mapping, got {type(member).__name__}"
        )
    for name in ("tol", "n_iter_no_change"):
        if values[name] is None:
            values[name] = shared[name]
    hp = SimpleNamespace(
        **{**shared, **values},
        validation_fraction=0.1,
        early_stopping=False,
        instrument=False,
        warn_max_iter=False,
        verbose=False,
    )
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
    for name, value, valid in [
        ("out_activation", out_activation, OUT_ACTIVATIONS),
        ("kernel", kernel, KERNELS),
    ]:
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; available: {', '.join(valid)}")
    if (
        isinstance(members, (str, bytes))
        or hasattr(members, "keys")
        or not hasattr(members, "__iter__")
    ):
        raise TypeError(
            f"members must be a sequence of StackMember or mappings, got {type(members).__name__}"
        )
    members = [_check_member(m, i, shared) for i, m in enumerate(members)]
    if not members:
        raise ValueError("members is empty; pass at least one StackMember (or mapping)")
    generators = [
        id(m.random_state) for m in members if isinstance(m.random_state, np.random.Generator)
    ]
    if len(generators) != len(set(generators)):
        raise ValueError(
            "two members share one numpy.random.Generator, so their draws would "
            "interleave; give each member its own Generator or an int seed"
        )
    return members


def _check_max_stack(max_stack):
    ok = (
        max_stack is None
        or max_stack == "auto"
        or (isinstance(max_stack, Integral) and not isinstance(max_stack, bool) and max_stack >= 1)
    )
    if not ok:
        raise ValueError(f"max_stack must be a positive integer, 'auto' or None, got {max_stack!r}")


def _check_targets(Y, X, dtype):
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"Y must be the encoded targets, of shape (n_samples, n_outputs) = "
            f"({X.shape[0]}, ...), got shape {Y.shape}; reshape a 1-D target "
            "with y.reshape(-1, 1), or use fit_mlp_stack with labels"
        )
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"Y contains NaN or infinity (in {dtype}); remove those samples")
    return Y
