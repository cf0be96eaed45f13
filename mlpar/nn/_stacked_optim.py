"""Optimizers for a stack: Adam and SGD on ``(K, n_params)`` buffers, one model per row.

Each is the single engine's optimizer (``mlpar.nn._optim``) applied row by row:
the same NumPy calls in the same order, with each model's hyperparameters as
``(K, 1)`` columns (cast to the dtype exactly as NumPy casts a Python float
operand), so a row moves exactly as the single model's buffer does. ``bind``
returns the update as a list of zero-argument calls over cache-sized blocks of
the active rows; the step runs it after the backward pass.
"""

import math
from functools import partial

import numpy as np

from ._optim import _CHUNK_BYTES

__all__ = ["CHUNK_BYTES", "OPTIMIZERS", "StackedAdam", "StackedSGD"]

# The L2 penalty of the loss is summed chunk by chunk, so chunk boundaries
# along a model's row must be the single engine's for its loss to be
# bit-identical; several short rows share one chunk-sized block.
CHUNK_BYTES = _CHUNK_BYTES


def _column(values, dtype):
    """Per-model values as a ``(K, 1)`` column of ``dtype``."""
    return np.array(values, dtype=dtype).reshape(-1, 1)


def _rows(col, r0, r1, same=None):
    """The operand for rows ``[r0, r1)`` of a ``(K, 1)`` column: ``col[r0:r1]``, or the
    ``(1, 1)`` view ``col[r0:r0 + 1]`` when every row holds the same value.

    Same arithmetic either way (NumPy broadcasts the value); the ``(1, 1)`` form
    is ~3x faster for rows shorter than NumPy's buffer (8192 elements), where a
    ``(rows, 1)`` operand makes the ufunc copy it into a buffer, expanded. For a
    column recomputed every step, ``same`` is the array that decides it.
    """
    key = col if same is None else same
    if np.all(key[r0:r1] == key[r0]):
        return col[r0 : r0 + 1]
    return col[r0:r1]


class _StackedOptimizer:
    """Per-model state and hyperparameters, one row per slot; see :meth:`bind`."""

    # Names of the attributes whose first axis is the slot: compaction permutes them.
    slot_arrays = ()

    def permute(self, order):
        """Move rows ``order`` to the front, in that order (a stack's compaction)."""
        for name in self.slot_arrays:
            a = getattr(self, name)
            a[: len(order)] = a[order]

    def blocks(self, params, grad, segments, n_coef):
        """Cache-sized blocks ``(rows, cols)`` of the active rows, segment by segment.

        Column boundaries are the engine's chunk boundaries; a block holds as
        many whole rows of a chunk as fit in :data:`CHUNK_BYTES`.
        """
        step = max(1, CHUNK_BYTES // params.dtype.itemsize)
        size = params.shape[1]
        out = []
        for lo, hi, rule, l2 in segments:
            for c0 in range(0, size, step):
                c1 = min(c0 + step, size)
                n_rows = max(1, step // (c1 - c0))
                for r0 in range(lo, hi, n_rows):
                    r1 = min(r0 + n_rows, hi)
                    coef = min(c1, n_coef) - c0 if l2 and c0 < n_coef else 0
                    out.append((r0, r1, c0, c1, coef, rule))
        return out

    def _l2_calls(self, p, g, tmp, r0, r1, coef, l2):
        """The L2 term on a block's coefficients: ``g += l2 * W``, penalty ``W . (l2 * W)``."""
        pc, gc, tc = p[:, :coef], g[:, :coef], tmp[:, :coef]
        pen32 = self.pen32[r0:r1]
        return [
            partial(np.multiply, pc, _rows(l2, r0, r1), out=tc),
            partial(np.matmul, pc[:, None, :], tc[:, :, None], out=pen32.reshape(-1, 1, 1)),
            partial(np.add, self.pen64[r0:r1], pen32, out=self.pen64[r0:r1]),
            partial(np.add, gc, tc, out=gc),
        ]

    def bind(self, params, grad, segments, n_coef, l2):
        """The update's call list for the active rows.

        ``segments``: ``(lo, hi, rule, has_l2)`` row ranges of one update rule
        (:meth:`rule`) and one L2 setting each;
        ``l2``: ``(K, 1)`` column of ``alpha / batch_size``. The list starts by
        zeroing the per-model penalty (:attr:`pen64`, ``l2 * sum(W ** 2)``).
        """
        rows = segments[-1][1] if segments else 0
        blocks = self.blocks(params, grad, segments, n_coef)
        width = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1, _, _ in blocks)
        if self.scratch.size < width:
            self.scratch = np.empty(width, params.dtype)
        calls = [partial(self.pen64[:rows].fill, 0.0)] if any(s[3] for s in segments) else []
        for r0, r1, c0, c1, coef, rule in blocks:
            p, g = params[r0:r1, c0:c1], grad[r0:r1, c0:c1]
            tmp = self.scratch[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            if coef:
                calls += self._l2_calls(p, g, tmp, r0, r1, coef, l2)
            calls += self._block_calls(rule, p, g, tmp, r0, r1, c0, c1)
        return calls


class StackedAdam(_StackedOptimizer):
    """Adam for a stack: ``mlpar.nn._optim.Adam``'s arithmetic, per row.

    The moments are stored scaled, as there; the step size of every model is
    computed each step in float64 exactly as the single optimizer computes it.
    """

    solver = "adam"
    slot_arrays = ("m", "v", "b1", "b2", "eps", "lr_scale", "group")

    def __init__(self, n_models, n_params, dtype, members):
        self.t = 0
        self.m = np.zeros((n_models, n_params), dtype)
        self.v = np.zeros((n_models, n_params), dtype)
        self.b1 = _column([mb.beta_1 for mb in members], dtype)
        self.b2 = _column([mb.beta_2 for mb in members], dtype)
        # The same Python float expressions as Adam.bind, cast once to the dtype
        # (as NumPy casts a Python float operand of a float32 ufunc).
        self.eps = _column([mb.epsilon / math.sqrt(1.0 - mb.beta_2) for mb in members], dtype)
        self.lr_scale = np.array(
            [
                mb.learning_rate_init * (1.0 - mb.beta_1) / math.sqrt(1.0 - mb.beta_2)
                for mb in members
            ]
        )
        self.betas = sorted({(mb.beta_1, mb.beta_2) for mb in members})
        self.group = np.array([self.betas.index((mb.beta_1, mb.beta_2)) for mb in members])
        self.lr64 = np.empty(n_models)
        self.lr32 = np.empty((n_models, 1), dtype)
        self._num = np.empty(len(self.betas))
        self._den = np.empty(len(self.betas))
        self._num_rows, self._den_rows = np.empty(n_models), np.empty(n_models)
        self.pen32 = np.zeros(n_models, dtype)
        self.pen64 = np.zeros(n_models)
        self.scratch = np.empty(0, dtype)

    def step_size(self, rows):
        """``before_update``: ``t += 1`` and each model's step size into :attr:`lr32`."""
        lr64, lr32, scale = self.lr64[:rows], self.lr32[:rows, 0], self.lr_scale[:rows]
        if len(self.betas) == 1:
            ((b1, b2),) = self.betas

            def before_update():
                self.t += 1
                t = self.t
                # Adam.bind: lr = lr_scale * sqrt(1 - b2 ** t) / (1 - b1 ** t)
                np.multiply(scale, math.sqrt(1.0 - b2**t), out=lr64)
                np.divide(lr64, 1.0 - b1**t, out=lr64)
                np.copyto(lr32, lr64, casting="same_kind")

            return before_update
        num, den, group = self._num, self._den, self.group[:rows]
        num_rows, den_rows = self._num_rows[:rows], self._den_rows[:rows]

        def before_update():
            self.t += 1
            t = self.t
            for j, (b1, b2) in enumerate(self.betas):
                num[j] = math.sqrt(1.0 - b2**t)
                den[j] = 1.0 - b1**t
            np.take(num, group, out=num_rows)
            np.take(den, group, out=den_rows)
            np.multiply(scale, num_rows, out=lr64)
            np.divide(lr64, den_rows, out=lr64)
            np.copyto(lr32, lr64, casting="same_kind")

        return before_update

    def _block_calls(self, rule, p, g, tmp, r0, r1, c0, c1):
        m, v = self.m[r0:r1, c0:c1], self.v[r0:r1, c0:c1]
        b1, b2, eps = _rows(self.b1, r0, r1), _rows(self.b2, r0, r1), _rows(self.eps, r0, r1)
        # The step size is recomputed each step from lr_scale and the betas.
        same = np.stack([self.lr_scale, self.group.astype(float)], axis=1)
        lr = _rows(self.lr32, r0, r1, same=same)
        return [
            partial(np.multiply, m, b1, out=m),
            partial(np.add, m, g, out=m),
            partial(np.square, g, out=tmp),
            partial(np.multiply, v, b2, out=v),
            partial(np.add, v, tmp, out=v),
            partial(np.sqrt, v, out=tmp),
            partial(np.add, tmp, eps, out=tmp),
            partial(np.divide, m, tmp, out=tmp),
            partial(np.multiply, tmp, lr, out=tmp),
            partial(np.subtract, p, tmp, out=p),
        ]

    @staticmethod
    def rule(member):
        """The update rule's name for ``member`` (one for all Adam members)."""
        return "adam"


class StackedSGD(_StackedOptimizer):
    """SGD with momentum / Nesterov for a stack: ``mlpar.nn._optim.SGD``'s arithmetic, per row.

    The single optimizer branches on ``momentum == 0`` and on Nesterov; a stack
    keeps models of one branch in adjacent rows (see :meth:`rule`), and each
    segment runs its own branch's calls.
    """

    solver = "sgd"
    slot_arrays = ("velocity", "lr", "mu")

    def __init__(self, n_models, n_params, dtype, members):
        self.velocity = np.zeros((n_models, n_params), dtype)
        self.lr = _column([mb.learning_rate_init for mb in members], dtype)
        self.mu = _column([mb.momentum for mb in members], dtype)
        self.pen32 = np.zeros(n_models, dtype)
        self.pen64 = np.zeros(n_models)
        self.scratch = np.empty(0, dtype)

    def step_size(self, rows):
        return None

    @staticmethod
    def rule(member):
        """``"plain"`` (no momentum), ``"nesterov"`` or ``"momentum"``."""
        if member.momentum == 0.0:
            return "plain"
        return "nesterov" if member.nesterovs_momentum else "momentum"

    def _block_calls(self, rule, p, g, tmp, r0, r1, c0, c1):
        vel = self.velocity[r0:r1, c0:c1]
        lr, mu = _rows(self.lr, r0, r1), _rows(self.mu, r0, r1)
        calls = [partial(np.multiply, g, lr, out=tmp)]  # tmp = lr * g
        if rule == "plain":  # the velocity stays -lr * g, unused
            return calls + [partial(np.subtract, p, tmp, out=p)]
        calls += [partial(np.multiply, vel, mu, out=vel), partial(np.subtract, vel, tmp, out=vel)]
        if rule == "nesterov":
            return calls + [
                partial(np.subtract, p, tmp, out=p),
                partial(np.multiply, vel, mu, out=tmp),
                partial(np.add, p, tmp, out=p),
            ]
        return calls + [partial(np.add, p, vel, out=p)]


OPTIMIZERS = {"adam": StackedAdam, "sgd": StackedSGD}
"""Solver name -> stacked optimizer class; ``OPTIMIZERS[solver].rule(member)`` is static."""
