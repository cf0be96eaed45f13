"""The epoch loop: minibatches, convergence, early stopping, time limit, divergence.

Stopping follows scikit-learn's MLP: after each epoch the training loss (or,
with early stopping, the validation score) must improve by ``tol`` or a counter
grows; training stops when the counter exceeds ``n_iter_no_change``, and a
``ConvergenceWarning`` is emitted when ``max_iter`` epochs run out first. Two
cooperative limits are added: ``max_time`` (checked after every minibatch) and
divergence (a non-finite minibatch loss stops training at once; recorded in
``stop_reason``, not raised).
"""

import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._engine import Workspace, build_step
from ._kernels import PLAIN_KERNELS, KernelTimer

__all__ = ["STOP_REASONS", "ConvergenceWarning", "History", "train"]

STOP_REASONS = ("max_iter", "converged", "early_stopping", "max_time", "diverged")


class ConvergenceWarning(UserWarning):
    """max_iter ran out before convergence, in a process without scikit-learn.

    Where scikit-learn is loaded, :func:`train` warns with scikit-learn's own
    ``ConvergenceWarning`` instead (also a UserWarning), so that the filters
    users set on it keep working.
    """


def _convergence_warning_category():
    """scikit-learn's ConvergenceWarning if scikit-learn is loaded, else ours."""
    # Looked up, never imported: the engine must not pull in scikit-learn (~2 s,
    # ~100 MB per worker). A filter on scikit-learn's category can only exist
    # once sklearn.exceptions has been imported (warnings.filterwarnings needs
    # the class; -W and pytest's filterwarnings import it), so the lookup finds
    # it whenever such a filter could apply; the estimators always find it.
    module = sys.modules.get("sklearn.exceptions")
    return getattr(module, "ConvergenceWarning", ConvergenceWarning)


@dataclass
class History:
    """What survives between ``fit`` calls (warm start) and ``partial_fit`` calls."""

    early_stopping: bool
    loss_curve: list = field(default_factory=list)
    best_loss: float = math.inf
    validation_scores: list = field(default_factory=list)
    best_validation_score: float = -math.inf
    no_improvement_count: int = 0
    t: int = 0  # samples seen, all calls together (scikit-learn's t_)


@dataclass
class Outcome:
    """What one call of :func:`train` did."""

    n_iter: int
    loss: float
    stop_reason: str
    n_steps: int
    n_samples_seen: int
    stats: dict = None


def train(
    net,
    optimizer,
    X,
    Y,
    *,
    history,
    rng,
    batch_size,
    alpha,
    shuffle,
    max_iter,
    tol,
    n_iter_no_change,
    incremental=False,
    scorer=None,
    deadline=None,
    instrument=False,
    verbose=False,
    warn_max_iter=True,
):
    """Train ``net`` in place on ``(X, Y)`` for up to ``max_iter`` epochs.

    Parameters
    ----------
    net : Network
    optimizer : Adam or SGD
    X : ndarray of shape (n_samples, n_features)
        C-contiguous, in the network's dtype.
    Y : ndarray of shape (n_samples, n_outputs)
        Targets (one-hot or indicator for classifiers), C-contiguous, network dtype.
    history : History
        Updated in place.
    rng : numpy.random.Generator
        Drives the per-epoch shuffles.
    batch_size : int
        Already clipped to ``[1, n_samples]``.
    scorer : callable or None
        Early stopping: ``scorer() -> float``, the validation score of the
        current parameters. None: stop on the training loss.
    deadline : float or None
        ``time.perf_counter()`` value after which training stops (the
        estimator's ``max_time`` counted from the start of its fit).
    instrument : bool
        Time the numeric kernels (see :mod:`._kernels`).

    Returns
    -------
    Outcome
    """
    # ~90 lines on purpose: the epoch loop reads better whole, with every
    # stopping rule (divergence, time, convergence, early stopping) in one place.
    clock = time.perf_counter
    start = clock()
    n = Y.shape[0]
    timer = KernelTimer() if instrument else None
    kernels = timer.kernels if instrument else PLAIN_KERNELS

    steps = _build_steps(net, optimizer, n, batch_size, alpha=alpha, kernels=kernels, timer=timer)
    # Shuffling permutes a copy of the data once per epoch (one np.take each
    # for X and Y), so that every minibatch is a contiguous slice: the step
    # then gathers nothing. It costs one copy of the training set.
    if shuffle:
        Xs, Ys = np.empty_like(X), np.empty_like(Y)
        perm = np.arange(n)
    else:
        Xs, Ys = X, Y
    batches = _batches(Xs, Ys, steps, batch_size)

    early_stopping = scorer is not None
    best_params = net.params.copy() if early_stopping else None
    shuffle_time = eval_time = 0.0
    n_iter = n_steps = seen_total = 0
    loss = math.nan
    stop_reason = "max_iter"

    # Divergence is detected from the loss and recorded in stop_reason; the
    # overflow warnings NumPy would emit on the way there are noise.
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            if shuffle:
                t0 = clock()
                rng.shuffle(perm)
                # mode="clip": with out= and the default mode="raise", NumPy
                # buffers the whole result; the indices are valid anyway.
                np.take(X, perm, axis=0, out=Xs, mode="clip")
                np.take(Y, perm, axis=0, out=Ys, mode="clip")
                shuffle_time += clock() - t0

            total, seen, steps_done, cut = _epoch(batches, deadline)
            n_steps += steps_done
            n_iter += 1
            seen_total += seen
            history.t += seen
            loss = total / seen
            history.loss_curve.append(loss)
            if verbose:
                print(f"Iteration {len(history.loss_curve)}, loss = {loss:.8f}")
            if cut is not None:
                stop_reason = cut
                if verbose:
                    print(
                        "Training loss is not finite. Stopping."
                        if cut == "diverged"
                        else "max_time reached. Stopping."
                    )
                break

            if early_stopping:
                t0 = clock()
                score = scorer()
                eval_time += clock() - t0
                if verbose:
                    print(f"Validation score: {score:f}")
                if _record_score(history, score, tol):
                    np.copyto(best_params, net.params)
            else:
                _record_loss(history, loss, tol)

            if history.no_improvement_count > n_iter_no_change:
                stop_reason = "early_stopping" if early_stopping else "converged"
                if verbose:
                    what = "Validation score" if early_stopping else "Training loss"
                    print(
                        f"{what} did not improve more than tol={tol:f} for "
                        f"{n_iter_no_change} consecutive epochs. Stopping."
                    )
                break
            if incremental:
                break
            if n_iter == max_iter and warn_max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    _convergence_warning_category(),
                    stacklevel=2,
                )

    if early_stopping:
        # The best parameters seen, as scikit-learn does; after a divergence
        # this also brings back finite weights.
        np.copyto(net.params, best_params)

    stats = None
    if instrument:
        stats = timer.totals()
        stats.update(train_time=clock() - start, shuffle_time=shuffle_time, eval_time=eval_time)
    return Outcome(
        n_iter=n_iter,
        loss=loss,
        stop_reason=stop_reason,
        n_steps=n_steps,
        n_samples_seen=seen_total,
        stats=stats,
    )


def _epoch(batches, deadline):
    """One pass over the minibatches: (loss sum, samples, steps, None or why it stopped)."""
    clock, isfinite = time.perf_counter, math.isfinite
    total = 0.0
    seen = steps = 0
    for step, xb, xt, yb, yf, nb in batches:
        batch_loss = step(xb, xt, yb, yf)
        total += batch_loss * nb
        seen += nb
        steps += 1
        if not isfinite(batch_loss):
            return total, seen, steps, "diverged"
        if deadline is not None and clock() > deadline:
            return total, seen, steps, "max_time"
    return total, seen, steps, None


def _build_steps(net, optimizer, n, batch_size, *, alpha, kernels, timer):
    """The training step for a full minibatch and, if ``n`` leaves a rest, a short one."""
    grad = np.empty(net.n_params, net.dtype)
    update = optimizer.bind(net.params, grad, net.n_coef, kernels)
    ws = Workspace(net, batch_size)
    steps = [build_step(net, ws, grad, alpha=alpha, update=update, kernels=kernels)]
    if n % batch_size:
        steps.append(
            build_step(
                net, ws.head(n % batch_size), grad, alpha=alpha, update=update, kernels=kernels
            )
        )
    return [timer.time_step(s) for s in steps] if timer is not None else steps


def _batches(Xs, Ys, steps, batch_size):
    """Per minibatch: its step, X and X.T views, Y and flat Y views, and its size."""
    n, n_out = Ys.shape
    Yf = Ys.reshape(-1)
    batches = []
    for start_row in range(0, n, batch_size):
        stop_row = min(start_row + batch_size, n)
        xb = Xs[start_row:stop_row]
        batches.append(
            (
                steps[stop_row - start_row != batch_size],
                xb,
                xb.T,
                Ys[start_row:stop_row],
                Yf[start_row * n_out : stop_row * n_out],
                stop_row - start_row,
            )
        )
    return batches


def _record_score(history, score, tol):
    """Early stopping's bookkeeping for one validation score; True if it is the best yet."""
    history.validation_scores.append(score)
    if score < history.best_validation_score + tol:
        history.no_improvement_count += 1
    else:
        history.no_improvement_count = 0
    if score > history.best_validation_score:
        history.best_validation_score = score
        return True
    return False


def _record_loss(history, loss, tol):
    """Convergence bookkeeping for one epoch's training loss (scikit-learn's rule)."""
    if loss > history.best_loss - tol:
        history.no_improvement_count += 1
    else:
        history.no_improvement_count = 0
    if loss < history.best_loss:
        history.best_loss = loss
