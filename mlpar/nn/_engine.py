"""The MLP engine: a network in one flat buffer, and an allocation-free training step.

Layout. All parameters live in one contiguous vector, coefficients first::

    params = [W0 | W1 | ... | W_{L-1} | b0 | b1 | ... | b_{L-1}]

``coefs`` and ``intercepts`` are reshaped views into it. The gradient and the
optimizer state use the same layout, so one optimizer step is a handful of
NumPy calls over whole buffers, and the L2 penalty touches one contiguous
prefix (``params[:n_coef]``).

The step. :func:`build_step` returns a closure that runs forward, loss,
backward and the optimizer update for one minibatch using buffers sized once
per fit (a hidden layer's activation buffer takes its delta on the way back).
Every array result goes into a preallocated ``out=``, so the steady state
creates no arrays; NumPy only uses its own fixed-size internal buffer for the
broadcast bias add and the boolean relu mask. The closure calls its kernels
through a namespace (``k.dot``, ``k.add``...) that is either NumPy itself or
timed wrappers (:mod:`._kernels`), chosen once per fit.

Losses follow scikit-learn's MLP, so results compare: the mean over samples of
cross-entropy (softmax outputs), binary cross-entropy summed over outputs
(logistic outputs), or half the squared error averaged over outputs (identity
outputs), plus ``alpha / 2 * sum(W ** 2) / n_samples_in_batch``. The output
delta is ``p - y`` for all three (softmax and cross-entropy fused). As in
scikit-learn, the gradient for several regression outputs is that of the
squared error *summed* over outputs.
"""

import math
from functools import partial

import numpy as np

from ._kernels import PLAIN_KERNELS, logistic_kernel

__all__ = ["ACTIVATIONS", "Network", "Workspace", "build_step", "forward", "loss_and_grad"]

ACTIVATIONS = ("identity", "logistic", "relu", "tanh")
OUT_ACTIVATIONS = ("identity", "logistic", "softmax")


class Network:
    """A dense MLP whose parameters live in one flat buffer.

    Parameters
    ----------
    layer_units : sequence of int
        Units per layer, input and output included: ``[n_features, *hidden, n_outputs]``.
    activation : {"identity", "logistic", "relu", "tanh"}
        Activation of the hidden layers.
    out_activation : {"identity", "logistic", "softmax"}
        Activation of the output layer; it fixes the loss (squared error,
        binary cross-entropy, cross-entropy).
    dtype : numpy dtype
        float32 or float64, used for parameters, buffers and gradients.
    """

    def __init__(self, layer_units, *, activation, out_activation, dtype):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}"
            )
        if out_activation not in OUT_ACTIVATIONS:
            raise ValueError(
                f"unknown output activation {out_activation!r}; "
                f"available: {', '.join(OUT_ACTIVATIONS)}"
            )
        self.layer_units = tuple(int(u) for u in layer_units)
        self.activation = activation
        self.out_activation = out_activation
        self.dtype = np.dtype(dtype)
        self.shapes = list(zip(self.layer_units[:-1], self.layer_units[1:]))
        self.n_coef = sum(fan_in * fan_out for fan_in, fan_out in self.shapes)
        self.n_params = self.n_coef + sum(fan_out for _, fan_out in self.shapes)
        self.params = np.zeros(self.n_params, dtype=self.dtype)
        self.coefs, self.intercepts = self.views(self.params)

    @property
    def n_layers(self):
        """Number of layers, input and output included (scikit-learn's ``n_layers_``)."""
        return len(self.layer_units)

    def views(self, flat):
        """Per-layer ``(coefs, intercepts)`` views into a flat buffer of this layout."""
        coefs, intercepts = [], []
        offset = 0
        for fan_in, fan_out in self.shapes:
            coefs.append(flat[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out))
            offset += fan_in * fan_out
        for _, fan_out in self.shapes:
            intercepts.append(flat[offset : offset + fan_out])
            offset += fan_out
        return coefs, intercepts

    def init_glorot(self, rng):
        """Glorot-uniform initialization, as scikit-learn's MLP does it.

        Weights and biases of layer ``i`` are uniform in ``±sqrt(f / (fan_in + fan_out))``
        with ``f = 2`` for logistic hidden units and ``f = 6`` otherwise, drawn
        layer by layer, coefficients before intercepts.
        """
        factor = 2.0 if self.activation == "logistic" else 6.0
        for (fan_in, fan_out), w, b in zip(self.shapes, self.coefs, self.intercepts):
            bound = math.sqrt(factor / (fan_in + fan_out))
            for view in (w, b):
                # Drawn straight in the network's dtype into the flat buffer: no
                # float64 temporary the size of the layer.
                rng.random(dtype=self.dtype, out=view)
                view *= 2.0 * bound
                view -= bound

    def load(self, coefs, intercepts):
        """Copy per-layer arrays (e.g. a previous fit's ``coefs_``) into the flat buffer."""
        for dst, src in zip(self.coefs + self.intercepts, list(coefs) + list(intercepts)):
            np.copyto(dst, src, casting="same_kind")


def forward(X, coefs, intercepts, activation, out_activation):
    """Output activations of the network for ``X`` (allocates; for prediction)."""
    hidden = _HIDDEN_FORWARD[activation]
    a = X
    last = len(coefs) - 1
    # A diverged model has non-finite weights: its outputs are NaN, quietly.
    with np.errstate(all="ignore"):
        for i, (w, b) in enumerate(zip(coefs, intercepts)):
            a = np.dot(a, w)
            a += b
            if i < last:
                hidden(a)
        if out_activation == "softmax":
            a -= a.max(axis=1, keepdims=True)
            np.exp(a, out=a)
            a /= a.sum(axis=1, keepdims=True)
        elif out_activation == "logistic":
            _logistic(a, a)
    return a


# Raises NumPy's overflow flag for very negative inputs (harmlessly: the result
# is 0); forward() runs it under errstate, as train() runs the step.
_logistic = logistic_kernel(PLAIN_KERNELS)

_HIDDEN_FORWARD = {
    "identity": lambda z: None,
    "logistic": lambda z: _logistic(z, z),
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
}


class Workspace:
    """The buffers of a training step for minibatches of up to ``n`` samples.

    ``head(m)`` gives the same buffers as views of their first ``m`` rows, for
    the last, shorter minibatch of an epoch: no second set of buffers.
    """

    def __init__(self, net, n, *, _views=None):
        if _views is not None:
            self.__dict__.update(_views)
            return
        dt = net.dtype
        hidden = net.layer_units[1:-1]
        n_out = net.layer_units[-1]
        self.n = n
        self.z = [np.empty((n, u), dt) for u in hidden]  # hidden activations, then deltas
        self.mask = [np.empty((n, u), bool) for u in hidden] if net.activation == "relu" else None
        if net.activation in ("logistic", "tanh"):
            self.scratch = [np.empty((n, u), dt) for u in hidden]
        else:
            self.scratch = None
        self.zo = np.empty((n, n_out), dt)  # output logits
        self.do = np.empty((n, n_out), dt)  # output delta (and probabilities)
        self.rowsum = np.empty(n, dt)
        self.rowmax = np.empty((n, 1), dt)
        self.ones = np.ones(n, dt)

    def head(self, m):
        """The same buffers, restricted to the first ``m`` rows."""
        views = {"n": m}
        for name, value in self.__dict__.items():
            if isinstance(value, list):
                views[name] = [a[:m] for a in value]
            elif isinstance(value, np.ndarray):
                views[name] = value[:m]
            elif name != "n":
                views[name] = value
        return Workspace(None, m, _views=views)


def build_step(net, ws, grad, *, alpha=0.0, update=None, kernels=PLAIN_KERNELS):
    """A training step for minibatches of exactly ``ws.n`` samples.

    Parameters
    ----------
    net : Network
    ws : Workspace
        Buffers sized for the minibatch (``Workspace(net, n)`` or a ``head``).
    grad : ndarray
        Flat gradient buffer (``net.n_params``), written by every step.
    alpha : float, default=0.0
        L2 strength. ``update`` adds the penalty's gradient ``alpha / n * W``
        and returns its value, which the step adds to the loss (both fused
        with the optimizer's pass over memory).
    update : callable or None, default=None
        ``update(l2) -> l2 * sum(W ** 2)`` from an optimizer's ``bind``; None
        computes the data loss and gradient only.
    kernels : namespace, default=PLAIN_KERNELS
        NumPy functions, or timed ones from :class:`._kernels.KernelTimer`.

    Returns
    -------
    step : callable
        ``step(x, xt, y, yf) -> loss`` with ``x`` the minibatch (n, n_features),
        ``xt`` its transpose (a view), ``y`` the targets (n, n_outputs) and
        ``yf`` the same targets as a flat view. Views are passed in, not made
        in the step, so that the step creates no array objects at all.
    """
    k = kernels
    # np.dot, not np.matmul, for every product: matmul keeps the GIL when its
    # output has <= 500 elements, which would serialize small layers under the
    # threads backend; np.dot releases it for the whole BLAS call. out= needs a
    # C-contiguous buffer of the exact dtype; transposed operands are views that
    # BLAS reads through its transpose flag, without a copy.
    dot, add = k.dot, k.add
    n = ws.n
    last = len(net.coefs) - 1
    W, b = net.coefs, net.intercepts
    WT = [w.T for w in W]
    gW, gb = net.views(grad)
    Z, ones = ws.z, ws.ones
    ZT = [None] + [z.T for z in Z]  # ZT[i] is the input of layer i, transposed
    zo, do = ws.zo, ws.do
    act, prepare, apply = _hidden_kernels(net.activation, ws, k)
    output = _output_kernel(net.out_activation, ws, k)

    def backprop(x, xt, y, yf):
        a = x
        for i in range(last):
            z = Z[i]
            dot(a, W[i], out=z)
            add(z, b[i], out=z)
            act(z)
            a = z
        dot(a, W[last], out=zo)
        add(zo, b[last], out=zo)
        loss = output(zo, y, yf)  # also writes the output delta into do
        d = do
        for i in range(last, 0, -1):
            dot(ZT[i], d, out=gW[i])
            # Bias gradient as a GEMV with a ones vector: one BLAS call, several
            # times faster than np.sum(d, axis=0) and GIL-free.
            dot(ones, d, out=gb[i])
            # The layer's activations are needed once more, for f'(z); after
            # that their buffer takes the layer's delta: no separate delta
            # buffers, a smaller working set for the caches.
            prepare[i - 1]()
            z = Z[i - 1]
            dot(d, WT[i], out=z)
            apply[i - 1]()
            d = z
        dot(xt, d, out=gW[0])
        dot(ones, d, out=gb[0])
        return loss

    if update is None:
        return backprop

    l2 = float(alpha) / n

    def step(x, xt, y, yf):
        loss = backprop(x, xt, y, yf)
        # update returns l2 * sum(W ** 2), taken before it moves W:
        # the penalty alpha / 2 * sum(W ** 2) / n of scikit-learn's loss.
        return float(loss) + 0.5 * update(l2)

    return step


def _hidden_kernels(activation, ws, k):
    """``act(z)`` in place; per hidden layer ``i``, ``prepare[i]()`` saves what
    f'(z) needs from the activations ``Z[i]`` and ``apply[i]()`` multiplies the
    delta (written over ``Z[i]`` in between) by it."""
    Z, n_hidden = ws.z, len(ws.z)
    multiply, subtract = k.multiply, k.subtract
    nothing = [lambda: None] * n_hidden
    if activation == "relu":
        maximum, greater, M = k.maximum, k.greater, ws.mask

        def act(z):
            maximum(z, 0.0, out=z)

        # A boolean mask buffer: the cheapest masking measured (NumPy casts it
        # through its own internal buffer; no array is created).
        prepare = [partial(greater, z, 0.0, out=m) for z, m in zip(Z, M)]
        apply = [partial(multiply, z, m, out=z) for z, m in zip(Z, M)]

    elif activation == "tanh":
        tanh, square, S = k.tanh, k.square, ws.scratch

        def act(z):
            tanh(z, out=z)

        def tanh_grad(i):  # tanh' = 1 - a**2
            square(Z[i], out=S[i])
            subtract(1.0, S[i], out=S[i])

        prepare = [partial(tanh_grad, i) for i in range(n_hidden)]
        apply = [partial(multiply, z, s, out=z) for z, s in zip(Z, S)]

    elif activation == "logistic":
        logistic_, S = logistic_kernel(k), ws.scratch

        def act(z):
            logistic_(z, z)

        def logistic_grad(i):  # logistic' = a * (1 - a)
            subtract(1.0, Z[i], out=S[i])
            multiply(S[i], Z[i], out=S[i])

        prepare = [partial(logistic_grad, i) for i in range(n_hidden)]
        apply = [partial(multiply, z, s, out=z) for z, s in zip(Z, S)]

    else:  # identity

        def act(z):
            pass

        prepare = apply = nothing

    return act, prepare, apply


def _output_kernel(out_activation, ws, k):
    """``output(z, y, yf) -> loss``: writes the output delta ``(p - y) / n`` into ``ws.do``."""
    dot, subtract, multiply = k.dot, k.subtract, k.multiply
    n = ws.n
    inv_n = 1.0 / n
    zo, do, s, ones = ws.zo, ws.do, ws.rowsum, ws.ones
    zf = zo.reshape(-1)  # views made once here, not per step
    df = do.reshape(-1)

    if out_activation == "softmax":
        exp, log, divide, amax, amin = k.exp, k.log, k.divide, k.max, k.min
        s_col, rowmax = s.reshape(-1, 1), ws.rowmax
        ones_k = np.ones(zo.shape[1], zo.dtype)
        # Shifting by the batch's largest logit instead of each row's saves a
        # slow reduction along the short class axis. A row whose largest logit
        # lies far below the batch's would lose precision (its sum of
        # exponentials gets tiny): then shift row by row, exactly.
        tiny = math.sqrt(np.finfo(zo.dtype).tiny)

        def output(z, y, yf):
            subtract(z, amax(z, axis=None), out=z)
            exp(z, out=do)
            dot(do, ones_k, out=s)  # row sums as a GEMV
            if amin(s, axis=None) < tiny:
                amax(z, axis=1, keepdims=True, out=rowmax)
                subtract(z, rowmax, out=z)
                exp(z, out=do)
                dot(do, ones_k, out=s)
            divide(do, s_col, out=do)
            log(s, out=s)
            # Cross-entropy from the shifted logits: log(sum(exp(z))) - z[y].
            # Exact, and no log of a probability that could underflow.
            loss = (dot(s, ones) - dot(yf, zf)) * inv_n
            subtract(do, y, out=do)
            multiply(do, inv_n, out=do)
            return loss

    elif out_activation == "logistic":
        logaddexp, logistic_, asum = k.logaddexp, logistic_kernel(k), k.sum

        def output(z, y, yf):
            # Binary cross-entropy from logits: softplus(z) - y * z, stable for
            # any z, and exact where log(p) of a saturated p would not be.
            logaddexp(0.0, z, out=do)
            loss = (asum(do, axis=None) - dot(yf, zf)) * inv_n
            logistic_(z, do)
            subtract(do, y, out=do)
            multiply(do, inv_n, out=do)
            return loss

    else:  # identity: half squared error, averaged over samples and outputs
        half = 0.5 / (n * zo.shape[1])

        def output(z, y, yf):
            subtract(z, y, out=do)
            loss = dot(df, df) * half
            multiply(do, inv_n, out=do)
            return loss

    return output


def loss_and_grad(net, X, Y, *, alpha=0.0):
    """Loss and gradient of the whole batch ``(X, Y)`` at ``net.params``.

    The same forward and backward code as training, plus the L2 gradient added
    explicitly (training fuses it into the optimizer). Used to check gradients
    against finite differences.

    Returns
    -------
    loss : float
        As reported during training (scikit-learn's convention).
    grad : ndarray of shape (net.n_params,)
        Flat gradient, layout of ``net.params``.
    """
    X = np.ascontiguousarray(X, dtype=net.dtype)
    Y = np.ascontiguousarray(Y, dtype=net.dtype).reshape(X.shape[0], -1)
    n = X.shape[0]
    grad = np.empty(net.n_params, net.dtype)
    backprop = build_step(net, Workspace(net, n), grad)
    with np.errstate(over="ignore"):  # logistic units: see _kernels.logistic_kernel
        loss = float(backprop(X, X.T, Y, Y.reshape(-1)))
    if alpha:
        w = net.params[: net.n_coef]
        loss += 0.5 * alpha / n * float(np.dot(w, w))
        grad[: net.n_coef] += (alpha / n) * w
    return loss, grad
