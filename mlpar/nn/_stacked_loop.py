"""The epoch loop of a stack: slots, per-member stopping rules, compaction; stack sizing.

The single engine's epoch loop (``mlpar.nn._train.train``), run for K models at
once: per-epoch shuffles from each model's own Generator, one gathered
minibatch per model per step, the loss bookkeeping and the convergence rule
per model, divergence checked after every minibatch and ``max_time`` after
every minibatch. A model that stops leaves the active rows (compaction), so
the step is rebuilt for fewer rows and the stopped model costs nothing more.
"""

import math
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ._fit import _fit_core, make_rng
from ._stacked_optim import OPTIMIZERS
from ._stacked_step import StackedLayout, StackedWorkspace, build_step, choose_kernels, gemm_sites

__all__ = ["Stack", "model_bytes", "split", "stack_limit", "train_alone"]

# A stack's per-model buffers (parameters, gradient, optimizer state,
# activations) must stay in the last-level cache from one step to the next, as
# a single model's do, or every step streams them from memory. Measured (AMD
# EPYC, 32 MiB L3, float32, Adam, batch 32): per model and step, 16 models at
# width 128 (~7 MB together) ran 1.1x faster than one alone; 4 at width 256
# (~6 MB) as fast; 8 at width 256 (~11 MB) 1.2x and 2 at width 512 (~10 MB)
# 1.35x slower. So "auto" caps a stack at about a fifth of that cache.
CACHE_SHARE = 0.2
DEFAULT_CACHE_BYTES = 32 * 2**20  # when the OS does not say


def last_level_cache_bytes():
    """Size of the largest CPU cache Linux reports for cpu0, or :data:`DEFAULT_CACHE_BYTES`."""
    best = (0, DEFAULT_CACHE_BYTES)
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if size[-1:] in units and size[:-1].isdigit():
            best = max(best, (level, int(size[:-1]) * units[size[-1]]))
    return best[1]


def model_bytes(layer_units, solver, batch_size, dtype):
    """What one model of a stack keeps between steps: parameters, gradient,
    optimizer state and the activations of a minibatch."""
    shapes = list(zip(layer_units[:-1], layer_units[1:]))
    n_params = sum(i * o + o for i, o in shapes)
    arrays = 4 if solver == "adam" else 3  # params, grad, then m and v, or the velocity
    hidden = sum(layer_units[1:-1])
    activations = batch_size * (layer_units[0] + 3 * layer_units[-1] + 2 * hidden)
    return np.dtype(dtype).itemsize * (arrays * n_params + activations)


def stack_limit(max_stack, layer_units, solver, batch_size, dtype):
    """The most models one stack may hold: ``max_stack``, or the cache rule for "auto"."""
    if max_stack is None:
        return math.inf
    if max_stack == "auto":
        per_model = model_bytes(layer_units, solver, batch_size, dtype)
        return max(1, int(CACHE_SHARE * last_level_cache_bytes() // per_model))
    return int(max_stack)


def split(n, limit):
    """``range(n)`` in as few contiguous groups of at most ``limit`` as possible, evened out."""
    n_groups = max(1, math.ceil(n / limit))
    bounds = [round(g * n / n_groups) for g in range(n_groups + 1)]
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def train_alone(
    X,
    Y,
    member,
    *,
    hidden,
    activation,
    out_activation,
    solver,
    batch_size,
    max_iter,
    shuffle,
    max_time,
    dtype,
):
    """A stack of one: the member trained by the single engine itself (``_fit._fit_core``)."""
    hp = SimpleNamespace(
        hidden_layer_sizes=tuple(hidden),
        activation=activation,
        solver=solver,
        batch_size=batch_size,
        max_iter=max_iter,
        shuffle=shuffle,
        max_time=max_time,
        dtype=np.dtype(dtype).name,
        early_stopping=False,
        validation_fraction=0.1,
        instrument=False,
        verbose=False,
        **vars(member),
    )
    fitted = _fit_core(
        X,
        Y,
        hp,
        hidden=hidden,
        out_activation=out_activation,
        n_classes=None,
        t_start=time.perf_counter(),
        warn_max_iter=False,
    )
    params = np.concatenate([w.ravel() for w in fitted.coefs] + list(fitted.intercepts))
    n = X.shape[0]
    last_epoch = fitted.t - (fitted.n_iter - 1) * n  # samples of the last (maybe cut) epoch
    n_steps = (fitted.n_iter - 1) * math.ceil(n / batch_size) + math.ceil(last_epoch / batch_size)
    return dict(
        params=params,
        n_iter=fitted.n_iter,
        loss=fitted.loss,
        loss_curve=fitted.loss_curve,
        best_loss=fitted.best_loss,
        stop_reason=fitted.stop_reason,
        n_steps=n_steps,
        t=fitted.t,
    )


class Stack:
    """The models of one stack: slot arrays, per-member state, and the epoch loop.

    Slot ``s`` (row ``s`` of every per-model buffer) holds member
    ``member_of[s]``. Active members fill slots ``[0, rows)``, ordered by the
    optimizer's update rule and then L2-first, so that each rule (and the L2
    term) applies to a contiguous block of rows.
    """

    def __init__(
        self,
        X,
        Y,
        members,
        *,
        hidden,
        activation,
        out_activation,
        solver,
        batch_size,
        dtype,
        kernel,
    ):
        self.X, self.Y, self.members = X, Y, members
        n, K = X.shape[0], len(members)
        units = [X.shape[1], *hidden, Y.shape[1]]
        rule = OPTIMIZERS[solver].rule
        order = sorted(range(K), key=lambda i: (rule(members[i]), members[i].alpha == 0))
        ordered = [members[i] for i in order]
        self.member_of = np.array(order)
        self.rules = [(rule(m), m.alpha != 0) for m in ordered]
        self.layout = StackedLayout(
            units, activation=activation, out_activation=out_activation, dtype=dtype, n_models=K
        )
        self.rngs = [make_rng(m.random_state) for m in members]  # by member index
        for slot, i in enumerate(order):
            self.layout.init_glorot(slot, self.rngs[i])
        self.opt = OPTIMIZERS[solver](K, self.layout.n_params, dtype, ordered)
        self.grad = np.zeros((K, self.layout.n_params), dtype)
        self.batch_size = batch_size
        self.n_full, rest = divmod(n, batch_size)
        self.sizes = [batch_size] * self.n_full + ([rest] if rest else [])
        self.ws = {m: StackedWorkspace(self.layout, K, m) for m in set(self.sizes)}
        # alpha / n as the single engine computes it, per batch size.
        self.l2 = {m: np.array([[float(mb.alpha) / m] for mb in ordered], dtype) for m in self.ws}
        self.any_l2 = any(m.alpha != 0 for m in members)
        self.perm = np.tile(np.arange(n), (K, 1))
        self.idx_full = np.empty((self.n_full, K, batch_size), self.perm.dtype)
        self.idx_rest = np.empty((K, rest), self.perm.dtype)
        self.total = np.zeros(K)  # per slot: this epoch's sum of batch loss * batch size
        self.batch_loss = np.empty(K)
        self.tmp = np.empty(K)
        full = self.ws[batch_size]
        full.fill(0.5)
        if isinstance(kernel, dict):  # a plan chosen for another stack of these shapes
            self.kernels = dict(kernel)
        else:
            self.kernels = choose_kernels(
                gemm_sites(self.layout, full, K, self.grad),
                kernel,
                few_sites=gemm_sites(self.layout, full, min(K, 2), self.grad),
            )
        self.rows = K
        self.results = [None] * K
        self.state = [{"best_loss": math.inf, "count": 0, "curve": []} for _ in members]
        self._build()

    # -- building and compacting ------------------------------------------------

    def _segments(self):
        """``(lo, hi, rule, has_l2)`` runs of equal update rule and L2 flag over the active rows."""
        segments = []
        for s in range(self.rows):
            rule, l2 = self.rules[s]
            if segments and tuple(segments[-1][2:]) == (rule, l2):
                segments[-1][1] = s + 1
            else:
                segments.append([s, s + 1, rule, l2])
        return [tuple(seg) for seg in segments]

    def _build(self):
        """Steps, gathers and loss bookkeeping for the current active rows."""
        rows, layout, opt = self.rows, self.layout, self.opt
        segments = self._segments()
        bl, tmp, total = self.batch_loss[:rows], self.tmp[:rows], self.total[:rows]
        steps = {}
        for m, ws in self.ws.items():
            update = opt.bind(layout.params, self.grad, segments, layout.n_coef, self.l2[m])
            # batch loss = float(loss) + 0.5 * penalty; total += batch loss * m
            book = [partial(np.copyto, bl, ws.loss[:rows], casting="same_kind")]
            if self.any_l2:
                book += [
                    partial(np.multiply, opt.pen64[:rows], 0.5, out=tmp),
                    partial(np.add, bl, tmp, out=bl),
                ]
            book += [partial(np.multiply, bl, m, out=tmp), partial(np.add, total, tmp, out=total)]
            steps[m] = build_step(
                layout,
                ws,
                rows,
                self.grad,
                self.kernels,
                update,
                before_update=opt.step_size(rows),
                after=book,
            )
        idx = [self.idx_full[j, :rows].reshape(-1) for j in range(self.n_full)]
        if len(self.sizes) > self.n_full:
            idx.append(self.idx_rest[:rows].reshape(-1))
        self.batches = []
        for m, ix in zip(self.sizes, idx):
            ws = self.ws[m]
            # mode="clip": with out= and the default mode="raise", NumPy buffers
            # the whole result; the indices are valid anyway.
            self.batches.append(
                (
                    steps[m],
                    partial(self.X.take, ix, 0, ws.x[:rows].reshape(rows * m, -1), "clip"),
                    partial(self.Y.take, ix, 0, ws.y[:rows].reshape(rows * m, -1), "clip"),
                    bl,
                    m,
                )
            )

    def _fill_indices(self):
        """This epoch's minibatch rows of every active model, batch-major (one gather per step)."""
        rows, b, nf = self.rows, self.batch_size, self.n_full
        np.copyto(
            self.idx_full[:, :rows],
            self.perm[:rows, : nf * b].reshape(rows, nf, b).transpose(1, 0, 2),
        )
        np.copyto(self.idx_rest[:rows], self.perm[:rows, nf * b :])

    def _compact(self, keep):
        """Keep the active slots ``keep`` (in order) in rows ``[0, len(keep))``."""
        order = np.array(keep, dtype=np.intp)
        for a in [self.layout.params, self.perm, self.total, self.member_of, *self.l2.values()]:
            a[: len(order)] = a[order]
        self.opt.permute(order)
        self.rules = [self.rules[s] for s in keep]
        self.rows = len(keep)
        if self.rows:
            self._build()

    def _finish(self, slot, reason, n_iter, n_steps, t):
        """Copy a stopped model out of the stack: its flat parameters and training record."""
        i = int(self.member_of[slot])
        st = self.state[i]
        self.results[i] = dict(
            params=self.layout.params[slot].copy(),
            n_iter=n_iter,
            loss=st["curve"][-1] if st["curve"] else math.nan,
            loss_curve=st["curve"],
            best_loss=st["best_loss"],
            stop_reason=reason,
            n_steps=n_steps,
            t=t,
        )

    # -- the epoch loop -------------------------------------------------------------

    def train(self, *, max_iter, shuffle, deadline):
        """Run the epochs; one record (a dict of StackedResult fields) per member, in order."""
        clock, isfinite, asum = time.perf_counter, math.isfinite, np.add.reduce
        n_steps = t = 0
        with np.errstate(all="ignore"):  # divergence is read from the loss, as alone
            for epoch in range(max_iter):
                if shuffle:
                    for s in range(self.rows):
                        self.rngs[self.member_of[s]].shuffle(self.perm[s])
                self._fill_indices()
                self.total.fill(0.0)
                seen, j, cut = 0, 0, None
                while j < len(self.batches):
                    step, gather_x, gather_y, bl, nb = self.batches[j]
                    gather_x()
                    gather_y()
                    step()
                    seen += nb
                    n_steps += 1
                    j += 1
                    if not isfinite(asum(bl)):
                        self._stop_diverged(bl, epoch, seen, n_steps, t + seen)
                        if not self.rows:
                            break
                    if deadline is not None and clock() > deadline:
                        cut = "max_time"
                        break
                t += seen
                if not self.rows:
                    break
                self._end_epoch(epoch, seen, n_steps, t, cut)
                if not self.rows:
                    break
        for s in range(self.rows):
            self._finish(s, "max_iter", max_iter, n_steps, t)
        self.rows = 0
        return self.results

    def _stop_diverged(self, batch_loss, epoch, seen, n_steps, t):
        """Stop the models whose minibatch loss is not finite, mid-epoch, as alone."""
        finite = np.isfinite(batch_loss)
        for s in np.flatnonzero(~finite):
            self.state[self.member_of[s]]["curve"].append(float(self.total[s] / seen))
            self._finish(s, "diverged", epoch + 1, n_steps, t)
        keep = [int(s) for s in np.flatnonzero(finite)]
        self._compact(keep)
        if self.rows:
            self._fill_indices()  # the rest of this epoch, for the models left

    def _end_epoch(self, epoch, seen, n_steps, t, cut):
        """Loss curve and convergence rule of every active model, as ``_train.train``."""
        keep = []
        for s in range(self.rows):
            i = self.member_of[s]
            st, mb = self.state[i], self.members[i]
            loss = self.total[s] / seen
            st["curve"].append(float(loss))
            if cut is not None:
                self._finish(s, cut, epoch + 1, n_steps, t)
                continue
            if loss > st["best_loss"] - mb.tol:
                st["count"] += 1
            else:
                st["count"] = 0
            if loss < st["best_loss"]:
                st["best_loss"] = float(loss)
            if st["count"] > mb.n_iter_no_change:
                self._finish(s, "converged", epoch + 1, n_steps, t)
            else:
                keep.append(s)
        if len(keep) < self.rows:
            self._compact(keep)
