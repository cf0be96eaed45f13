"""The stacked training step: K same-shaped MLPs trained as one batched computation.

Layout. Model ``k`` of a stack owns row ``k`` of a ``(K, n_params)`` buffer, in
the single engine's layout (``[W0 | ... | W_{L-1} | b0 | ... | b_{L-1}]``), so
that a row *is* a single-engine parameter vector. Per layer, ``W`` is the view
``(K, fan_in, fan_out)`` and ``b`` the view ``(K, 1, fan_out)``; gradients and
optimizer state use the same layout. Models that still train occupy the
leading ``Ka`` rows (the trainer compacts the stack when one stops), so the
active block ``params[:Ka]`` is contiguous and every call below works on views
of it: a stopped model costs nothing.

The step is a fixed list of calls on fixed buffers (every operand is a
preallocated buffer or a view made once per build), so it is built as a list of
``functools.partial`` objects and run in a loop: no array is created in the
steady state. Each call does for all ``Ka`` models what the single engine does
for one, with the same NumPy function on the same per-model operand shapes,
which is what makes a stacked model's arithmetic the single model's:

- GEMMs: one ``np.matmul`` over ``(Ka, m, k) x (Ka, k, n)`` whose per-model
  operands are C-contiguous or transposed-contiguous (NumPy then calls the same
  BLAS GEMM per model as ``np.dot`` does), or a loop of 2-D ``np.dot(out=)``
  over preallocated slices; :func:`choose_kernels` measures which is faster.
- GEMVs and dot products (bias gradients, softmax row sums, losses, the L2
  penalty): ``np.matmul`` with a 1-row or 1-column operand, which NumPy sends
  to the same BLAS GEMV / DOT routine as ``np.dot``.
- Element-wise ufuncs: per-model scalars become ``(Ka, 1)`` columns.
- Reductions: ``axis=(1, 2)`` over a contiguous ``(Ka, m, n)`` block, the same
  pairwise summation per model as ``axis=None`` over one ``(m, n)`` array.

The optimizers are in :mod:`._stacked_optim`, the epoch loop in :mod:`._stacked`.
"""

import math
import time
from functools import partial

import numpy as np

__all__ = [
    "KERNELS",
    "StackedLayout",
    "StackedWorkspace",
    "build_step",
    "choose_kernels",
    "expit",
    "gemm_sites",
]

# The loop kernel is chosen only if it takes less than this share of the batched
# call's time: both run the same BLAS routine per model (same bits), so the
# measurement guards against a batched path that falls off BLAS, not noise.
LOOP_MARGIN = 0.8
# A batched call shorter than this is timed against the loop over all models
# (see choose_kernels); longer ones on two models only.
SHORT_CALL_S = 5e-5

KERNELS = ("auto", "batched", "loop")


def expit(z, out):
    """The logistic function in NumPy, as calls: ``1 / (1 + exp(-z))`` into ``out``."""
    # exp(-z) overflows to inf for very negative z; 1 / inf is the exact 0.
    return [
        partial(np.negative, z, out=out),
        partial(np.exp, out, out=out),
        partial(np.add, out, 1.0, out=out),
        partial(np.divide, 1.0, out, out=out),
    ]


class StackedLayout:
    """Shapes and offsets of the flat layout, and the ``(K, n_params)`` parameter buffer."""

    def __init__(self, layer_units, *, activation, out_activation, dtype, n_models):
        self.layer_units = tuple(int(u) for u in layer_units)
        self.activation = activation
        self.out_activation = out_activation
        self.dtype = np.dtype(dtype)
        self.shapes = list(zip(self.layer_units[:-1], self.layer_units[1:]))
        self.n_coef = sum(i * o for i, o in self.shapes)
        self.n_params = self.n_coef + sum(o for _, o in self.shapes)
        self.params = np.zeros((n_models, self.n_params), self.dtype)

    def offsets(self):
        """Per layer ``(coef_offset, intercept_offset)`` in a model's row."""
        coef, bias, out = 0, self.n_coef, []
        for fan_in, fan_out in self.shapes:
            out.append((coef, bias))
            coef += fan_in * fan_out
            bias += fan_out
        return out

    def views(self, flat, rows):
        """``(W, b)``: per layer, views ``(rows, in, out)`` and ``(rows, 1, out)``."""
        W, b = [], []
        for (fan_in, fan_out), (oc, ob) in zip(self.shapes, self.offsets()):
            W.append(flat[:rows, oc : oc + fan_in * fan_out].reshape(rows, fan_in, fan_out))
            b.append(flat[:rows, ob : ob + fan_out].reshape(rows, 1, fan_out))
        return W, b

    def model_views(self, row):
        """``(coefs, intercepts)`` of one model's flat row, as the single engine lays them out."""
        coefs, intercepts = [], []
        for (fan_in, fan_out), (oc, ob) in zip(self.shapes, self.offsets()):
            coefs.append(row[oc : oc + fan_in * fan_out].reshape(fan_in, fan_out))
            intercepts.append(row[ob : ob + fan_out])
        return coefs, intercepts

    def init_glorot(self, slot, rng):
        """Glorot-uniform init of one row, drawn exactly as ``Network.init_glorot`` draws it."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = self.model_views(self.params[slot])
        for (fan_in, fan_out), w, b in zip(self.shapes, coefs, intercepts):
            bound = math.sqrt(factor / (fan_in + fan_out))
            for view in (w, b):
                rng.random(dtype=self.dtype, out=view)
                view *= 2.0 * bound
                view -= bound


class StackedWorkspace:
    """The buffers of a step for K models and minibatches of exactly ``n`` samples."""

    def __init__(self, layout, n_models, n):
        dt, K = layout.dtype, n_models
        units = layout.layer_units
        self.n = n
        self.x = np.empty((K, n, units[0]), dt)  # gathered minibatch rows, per model
        self.y = np.empty((K, n, units[-1]), dt)
        self.z = [np.empty((K, n, u), dt) for u in units[1:-1]]  # activations, then deltas
        act = layout.activation
        self.mask = [np.empty((K, n, u), bool) for u in units[1:-1]] if act == "relu" else None
        self.scratch = (
            [np.empty((K, n, u), dt) for u in units[1:-1]] if act in ("logistic", "tanh") else None
        )
        self.zo = np.empty((K, n, units[-1]), dt)  # output logits
        self.do = np.empty((K, n, units[-1]), dt)  # output delta (and probabilities)
        self.rowsum = np.empty((K, n), dt)
        self.rowmax = np.empty((K, n, 1), dt)
        self.peak = np.empty((K, 1, 1), dt)
        self.dots = np.empty((2, K, 1, 1), dt)
        self.loss = np.empty(K, dt)
        self.ones = np.ones((1, 1, n), dt)  # bias gradients: a GEMV, broadcast over models
        self.ones_col = np.ones((n, 1), dt)
        self.ones_out = np.ones(units[-1], dt)

    def fill(self, value):
        """Set every float buffer to ``value`` (finite operands for timing)."""
        for a in [self.x, self.y, self.zo, self.do, *self.z, *(self.scratch or [])]:
            a.fill(value)


# -- GEMMs: which sites, which kernel --------------------------------------------


def gemm_sites(layout, ws, rows, grad):
    """Every GEMM of a step as ``{name: (a, b, out)}``, views over the first ``rows`` models."""
    W, _ = layout.views(layout.params, rows)
    gW, _ = layout.views(grad, rows)
    L = len(layout.shapes)
    inputs = [ws.x[:rows]] + [z[:rows] for z in ws.z]  # input of layer i
    outputs = [z[:rows] for z in ws.z] + [ws.zo[:rows]]  # output of layer i
    deltas = [z[:rows] for z in ws.z] + [ws.do[:rows]]  # delta at layer i's output
    sites = {}
    for i in range(L):
        sites[f"forward{i}"] = (inputs[i], W[i], outputs[i])
        sites[f"weight_grad{i}"] = (inputs[i].transpose(0, 2, 1), deltas[i], gW[i])
        if i:
            sites[f"backward{i}"] = (deltas[i], W[i].transpose(0, 2, 1), deltas[i - 1])
    return sites


def _gemm(kernel, a, b, out):
    """One zero-argument call computing ``out[k] = a[k] @ b[k]`` for every model."""
    if kernel == "batched":
        return partial(np.matmul, a, b, out=out)
    triples = [(a[k], b[k], out[k]) for k in range(a.shape[0])]
    dot = np.dot

    def loop():
        # np.dot releases the GIL for every call, however small the output.
        for x, y, z in triples:
            dot(x, y, out=z)

    return loop


def choose_kernels(sites, kernel="auto", *, few_sites=None):
    """``{site: "batched" | "loop"}``: the kernel of each GEMM site.

    ``"auto"`` times both kernels on each site's operands (finite values) and
    keeps the batched call unless the loop is clearly faster (under
    :data:`LOOP_MARGIN` of its time). The timing runs on ``few_sites`` (the
    same sites over a couple of models): what can differ there is per model
    (the BLAS path NumPy takes), and timing all models would cost a step.
    Sites whose batched call over all models would take under
    :data:`SHORT_CALL_S` are timed on all of them instead, best of three:
    there the loop's extra Python calls are the difference, and two models
    would hide it. The loop is also kept wherever the two kernels disagree in
    any bit: it makes the single engine's own ``np.dot`` calls, so results
    stay those of training alone, whatever the platform.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; available: {', '.join(KERNELS)}")
    if kernel != "auto":
        return {name: kernel for name in sites}
    few_sites = few_sites or sites
    plan = {}
    for name, operands in sites.items():
        rows = operands[2].shape[0]
        few = few_sites[name]
        if rows < 2:  # one model: the two kernels are the same call
            plan[name] = "batched"
            continue
        batched = _gemm("batched", *few)
        batched()  # warm-up
        estimate = _seconds(batched) * rows / few[2].shape[0]
        if estimate < SHORT_CALL_S:
            plan[name] = _faster(operands, rounds=3)
        else:
            plan[name] = _faster(few, rounds=1)
    return plan


def _seconds(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _faster(operands, rounds):
    """ "loop" if the loop is clearly faster on these operands, or differs in a bit."""
    out = operands[2]
    batched, loop = _gemm("batched", *operands), _gemm("loop", *operands)
    best_batched = _seconds(batched)
    reference = out.copy()
    best_loop = _seconds(loop)
    if not np.array_equal(reference, out):
        return "loop"
    for _ in range(rounds - 1):
        best_batched = min(best_batched, _seconds(batched))
        best_loop = min(best_loop, _seconds(loop))
    return "loop" if best_loop < LOOP_MARGIN * best_batched else "batched"


# -- the step -----------------------------------------------------------------------


def build_step(layout, ws, rows, grad, plan, update_calls, *, before_update=None, after=()):
    """The step for the first ``rows`` models on minibatches of ``ws.n`` samples.

    Returns ``step()``: forward, loss, backward and optimizer update, reading the
    gathered minibatch from ``ws.x`` / ``ws.y`` and leaving each model's data
    loss (float32, before the L2 term) in ``ws.loss[:rows]``. ``update_calls``
    is the optimizer's call list; ``before_update()`` (Adam's step size) runs
    first, outside the list because it depends on the step count; the calls
    ``after`` run last (the trainer's loss bookkeeping).
    """
    sites = gemm_sites(layout, ws, rows, grad)
    gemm = {name: _gemm(plan[name], *ops) for name, ops in sites.items()}
    _, b = layout.views(layout.params, rows)
    _, gb = layout.views(grad, rows)
    L = len(layout.shapes)
    Z = [z[:rows] for z in ws.z]
    act, prepare, apply = _hidden_calls(layout.activation, ws, rows)
    deltas = Z + [ws.do[:rows]]
    ones = ws.ones

    forward = []
    for i in range(L - 1):
        forward += [gemm[f"forward{i}"], partial(np.add, Z[i], b[i], out=Z[i]), *act[i]]
    zo = ws.zo[:rows]
    forward += [gemm[f"forward{L - 1}"], partial(np.add, zo, b[L - 1], out=zo)]
    head, check, tail = _output_calls(layout.out_activation, ws, rows)
    forward += head

    backward = list(tail)
    for i in range(L - 1, 0, -1):
        backward += [
            gemm[f"weight_grad{i}"],
            partial(np.matmul, ones, deltas[i], out=gb[i]),
            *prepare[i - 1],
            gemm[f"backward{i}"],
            *apply[i - 1],
        ]
    backward += [gemm["weight_grad0"], partial(np.matmul, ones, deltas[0], out=gb[0])]
    backward += [*update_calls, *after]
    prep = before_update or (lambda: None)

    def step():
        prep()
        for call in forward:
            call()
        check()
        for call in backward:
            call()

    return step


def _hidden_calls(activation, ws, rows):
    """Per hidden layer: the activation's calls, the calls that save f'(z) before the
    buffer takes the delta, and the calls that multiply the delta by it."""
    Z = [z[:rows] for z in ws.z]
    n = len(Z)
    if activation == "relu":
        M = [m[:rows] for m in ws.mask]
        act = [[partial(np.maximum, z, 0.0, out=z)] for z in Z]
        prepare = [[partial(np.greater, z, 0.0, out=m)] for z, m in zip(Z, M)]
        apply = [[partial(np.multiply, z, m, out=z)] for z, m in zip(Z, M)]
    elif activation == "tanh":
        S = [s[:rows] for s in ws.scratch]
        act = [[partial(np.tanh, z, out=z)] for z in Z]
        prepare = [
            [partial(np.square, z, out=s), partial(np.subtract, 1.0, s, out=s)]
            for z, s in zip(Z, S)
        ]
        apply = [[partial(np.multiply, z, s, out=z)] for z, s in zip(Z, S)]
    elif activation == "logistic":
        S = [s[:rows] for s in ws.scratch]
        act = [expit(z, z) for z in Z]
        prepare = [
            [partial(np.subtract, 1.0, z, out=s), partial(np.multiply, s, z, out=s)]
            for z, s in zip(Z, S)
        ]
        apply = [[partial(np.multiply, z, s, out=z)] for z, s in zip(Z, S)]
    else:  # identity
        act = prepare = apply = [[] for _ in range(n)]
    return act, prepare, apply


def _output_calls(out_activation, ws, rows):
    """``(head, check, tail)``: the output layer's calls, writing each model's data
    loss into ``ws.loss`` and its delta ``(p - y) / n`` into ``ws.do``; ``check()``
    runs between them (the softmax's fallback to row shifts)."""
    n = ws.n
    inv_n = 1.0 / n
    zo, do, y, loss = ws.zo[:rows], ws.do[:rows], ws.y[:rows], ws.loss[:rows]
    n_out = zo.shape[2]
    zf = zo.reshape(rows, n * n_out, 1)  # per model, the flat logits as a column
    yf = y.reshape(rows, 1, n * n_out)
    d1, d2 = ws.dots[0, :rows], ws.dots[1, :rows]
    d1f, d2f = d1.reshape(rows), d2.reshape(rows)
    finish = [partial(np.subtract, d1f, d2f, out=loss), partial(np.multiply, loss, inv_n, out=loss)]
    delta = [partial(np.subtract, do, y, out=do), partial(np.multiply, do, inv_n, out=do)]

    def nothing():
        pass

    if out_activation == "softmax":
        s = ws.rowsum[:rows]
        tiny = math.sqrt(np.finfo(zo.dtype).tiny)
        amin = np.minimum.reduce
        # As the single engine: shift by the largest logit of the model's batch,
        # and row by row only for a model whose row sums got tiny.
        head = [
            partial(np.maximum.reduce, zo, axis=(1, 2), keepdims=True, out=ws.peak[:rows]),
            partial(np.subtract, zo, ws.peak[:rows], out=zo),
            partial(np.exp, zo, out=do),
            partial(np.matmul, do, ws.ones_out, out=s),
        ]

        def check():
            if amin(s, axis=None) < tiny:
                _row_shift_fallback(ws, rows, tiny)

        tail = [
            partial(np.divide, do, s.reshape(rows, n, 1), out=do),
            partial(np.log, s, out=s),
            # Cross-entropy: sum of log(sum(exp(z))) minus the sum of z[y].
            partial(np.matmul, s.reshape(rows, 1, n), ws.ones_col, out=d1),
            partial(np.matmul, yf, zf, out=d2),
            *finish,
            *delta,
        ]
        return head, check, tail

    if out_activation == "logistic":
        head = [
            partial(np.logaddexp, 0.0, zo, out=do),
            partial(np.add.reduce, do, axis=(1, 2), out=d1f),
            partial(np.matmul, yf, zf, out=d2),
            *finish,
            *expit(zo, do),
            *delta,
        ]
        return head, nothing, []

    # identity: half squared error, averaged over samples and outputs
    df = do.reshape(rows, 1, n * n_out)
    head = [
        partial(np.subtract, zo, y, out=do),
        partial(np.matmul, df, do.reshape(rows, n * n_out, 1), out=d1),
        partial(np.multiply, d1f, 0.5 / (n * n_out), out=loss),
        partial(np.multiply, do, inv_n, out=do),
    ]
    return head, nothing, []


def _row_shift_fallback(ws, rows, tiny):
    """The single engine's exact path, for each model whose smallest row sum is tiny."""
    s = ws.rowsum[:rows]
    for k in np.flatnonzero(np.minimum.reduce(s, axis=1) < tiny):
        z, d, sk = ws.zo[k], ws.do[k], ws.rowsum[k]
        np.maximum.reduce(z, axis=1, keepdims=True, out=ws.rowmax[k])
        np.subtract(z, ws.rowmax[k], out=z)
        np.exp(z, out=d)
        np.dot(d, ws.ones_out, out=sk)
