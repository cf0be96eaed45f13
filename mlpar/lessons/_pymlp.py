"""A two-layer perceptron in plain Python: lists of floats, no NumPy in the step.

This is the CPU-bound workload of the lessons on threads and processes. Every
multiply-add of the forward and backward pass is a Python bytecode, so a
training step holds the GIL from start to finish: the kind of work the essay
says threads cannot speed up.
"""

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainTask:
    """One independent training run, as a sweep would hand it to a worker.

    Parameters
    ----------
    X : tuple of tuple of float
        Training inputs, one tuple of ``n_features`` floats per sample.
    y : tuple of int
        Class labels in ``range(n_classes)``.
    n_hidden : int
        Width of the hidden ReLU layer.
    n_classes : int
        Number of output classes.
    n_steps : int
        Number of minibatch SGD steps.
    batch_size : int
        Samples per minibatch; minibatches cycle through ``X`` in order.
    learning_rate : float
        SGD step size.
    seed : int
        Seed of the weight initialisation.
    """

    X: tuple
    y: tuple
    n_hidden: int
    n_classes: int
    n_steps: int
    batch_size: int
    learning_rate: float
    seed: int


@dataclass(frozen=True)
class TrainResult:
    """What a training run sends back: the trained weights and the loss per step."""

    params: dict
    losses: tuple


def init_params(n_features, n_hidden, n_classes, *, random_state):
    """He-initialised weights as nested lists: ``W1`` is (n_hidden, n_features)."""
    rng = np.random.default_rng(random_state)
    # Weights are stored one row per output unit, so each unit's pre-activation
    # is a single zip over two flat lists: the fastest plain-Python layout.
    W1 = rng.normal(0.0, math.sqrt(2.0 / n_features), (n_hidden, n_features))
    W2 = rng.normal(0.0, math.sqrt(1.0 / n_hidden), (n_classes, n_hidden))
    return {
        "W1": W1.tolist(),
        "b1": [0.0] * n_hidden,
        "W2": W2.tolist(),
        "b2": [0.0] * n_classes,
    }


def forward_backward(params, X, y):
    """Mean softmax cross-entropy of a minibatch and its gradients.

    Parameters
    ----------
    params : dict
        ``W1`` (n_hidden lists of n_features floats), ``b1`` (n_hidden floats),
        ``W2`` (n_classes lists of n_hidden floats), ``b2`` (n_classes floats).
    X : sequence of sequence of float
        Minibatch inputs.
    y : sequence of int
        Minibatch labels.

    Returns
    -------
    loss : float
        Mean cross-entropy over the minibatch.
    grads : dict
        Gradients of ``loss`` with the same keys and layout as ``params``.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    n_hidden, n_classes = len(b1), len(b2)
    gW1 = [[0.0] * len(W1[0]) for _ in range(n_hidden)]
    gb1 = [0.0] * n_hidden
    gW2 = [[0.0] * n_hidden for _ in range(n_classes)]
    gb2 = [0.0] * n_classes
    inv_batch = 1.0 / len(X)
    loss = 0.0
    for x, label in zip(X, y):
        # Forward: h = relu(W1 x + b1), logits = W2 h + b2.
        h = []
        for w_row, b in zip(W1, b1):
            z = b
            for w, xi in zip(w_row, x):
                z += w * xi
            h.append(z if z > 0.0 else 0.0)
        logits = []
        for w_row, b in zip(W2, b2):
            z = b
            for w, hj in zip(w_row, h):
                z += w * hj
            logits.append(z)
        # Subtracting the max keeps exp() from overflowing; it cancels in the ratio.
        top = max(logits)
        exps = [math.exp(z - top) for z in logits]
        total = sum(exps)
        loss += math.log(total) + top - logits[label]
        # Backward. d loss / d logits = (softmax - one_hot) / batch.
        d_logits = [e / total * inv_batch for e in exps]
        d_logits[label] -= inv_batch
        d_h = [0.0] * n_hidden
        for k, (dz, w_row, g_row) in enumerate(zip(d_logits, W2, gW2)):
            gb2[k] += dz
            for j, hj in enumerate(h):
                g_row[j] += dz * hj
                d_h[j] += dz * w_row[j]
        for j, (hj, dh, g_row) in enumerate(zip(h, d_h, gW1)):
            # ReLU passes the gradient only through units that were active.
            if hj > 0.0:
                gb1[j] += dh
                for i, xi in enumerate(x):
                    g_row[i] += dh * xi
    return loss * inv_batch, {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2}


def sgd_step(params, X, y, *, learning_rate):
    """One SGD step on a minibatch, updating ``params`` in place; returns the loss."""
    loss, grads = forward_backward(params, X, y)
    for key in ("W1", "W2"):
        for w_row, g_row in zip(params[key], grads[key]):
            for i, g in enumerate(g_row):
                w_row[i] -= learning_rate * g
    for key in ("b1", "b2"):
        b = params[key]
        for i, g in enumerate(grads[key]):
            b[i] -= learning_rate * g
    return loss


def run_task(task):
    """Train one network as described by ``task``; the worker function of lessons 1 and 4.

    Parameters
    ----------
    task : TrainTask
        The run to perform.

    Returns
    -------
    TrainResult
        Trained weights and the loss of every step, identical for identical tasks
        whatever thread or process runs them.
    """
    params = init_params(len(task.X[0]), task.n_hidden, task.n_classes, random_state=task.seed)
    n_samples = len(task.X)
    losses = []
    start = 0
    for _ in range(task.n_steps):
        stop = start + task.batch_size
        losses.append(
            sgd_step(
                params, task.X[start:stop], task.y[start:stop], learning_rate=task.learning_rate
            )
        )
        start = stop if stop < n_samples else 0
    return TrainResult(params=params, losses=tuple(losses))


def make_tasks(n_tasks, *, n_samples, n_hidden, n_steps, batch_size, learning_rate, random_state):
    """Independent training runs on random subsets of scikit-learn's ``digits``.

    Each task gets its own subset and initialisation seed, both derived from
    ``random_state`` through ``np.random.SeedSequence``, like trials of a sweep.

    Returns
    -------
    list of TrainTask
    """
    # Imported here: scikit-learn is slow to import, and worker processes that
    # only run tasks never need it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaling to [0, 1] keeps plain SGD stable.
    X = digits.data / 16.0
    y = digits.target
    n_samples = min(n_samples, len(X))
    tasks = []
    for child in np.random.SeedSequence(random_state).spawn(n_tasks):
        rng = np.random.default_rng(child)
        rows = rng.choice(len(X), size=n_samples, replace=False)
        tasks.append(
            TrainTask(
                X=tuple(tuple(row) for row in X[rows].tolist()),
                y=tuple(y[rows].tolist()),
                n_hidden=n_hidden,
                n_classes=10,
                n_steps=n_steps,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=int(rng.integers(2**32)),
            )
        )
    return tasks
