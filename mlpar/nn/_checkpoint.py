"""Checkpoints of a fit: weights, optimizer buffers, random stream and history, in one file.

A promoted halving trial continues a fit instead of restarting it. Weights
alone would restart Adam's moments and step count (a fresh optimizer takes
large, badly scaled first steps), so a checkpoint holds what the fit needs
to go on: the flat parameter buffer (as layers), the optimizer's buffers
(Adam's ``m``, ``v`` and ``t``; SGD's velocity), the state of the random
stream that shuffles minibatches, and the stopping record (loss curve, best
loss, epochs without improvement). ``fit_mlp(init=ckpt.init)`` continues from
it. The minibatch permutation itself restarts from the identity, as a
scikit-learn ``warm_start`` fit's does, so a continued fit is not bit for bit
the fit that would have run uninterrupted.

Files are ``.npz`` (NumPy only, no pickle), written atomically: a temporary
file beside the target, then ``os.replace``, so a trial killed mid-write
leaves the previous checkpoint or none, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "restore_state"]

#: 2: weights, optimizer buffers, random stream, history. 1 (read): weights only.
CHECKPOINT_FORMAT = 2

_HISTORY_FIELDS = (
    "early_stopping",
    "loss_curve",
    "best_loss",
    "validation_scores",
    "best_validation_score",
    "no_improvement_count",
    "t",
)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read: epochs trained so far, the layers, and the training state.

    Attributes
    ----------
    epochs : int
        Epochs trained, all continuations together.
    coefs, intercepts : list of ndarray
    state : dict or None
        ``solver``, ``optimizer`` (its buffers), ``rng`` (bit generator
        state) and ``history``; None for a weights-only checkpoint.
    """

    epochs: int
    coefs: list
    intercepts: list
    state: dict | None = None

    @property
    def init(self):
        """What ``fit_mlp(init=)`` continues from: ``(coefs, intercepts[, state])``."""
        if self.state is None:
            return (self.coefs, self.intercepts)
        return (self.coefs, self.intercepts, self.state)


def _plain(value):
    """A history value as JSON can hold it (non-finite floats as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unplain(value):
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def save_checkpoint(path, model, *, epochs):
    """Save ``model`` (a :class:`FittedMLP` from ``fit_mlp``) to ``path``, atomically.

    Parameters
    ----------
    path : str or path-like
    model : FittedMLP
    epochs : int
        Epochs trained so far, earlier continuations included.
    """
    arrays = {f"coef_{i}": w for i, w in enumerate(model.coefs)}
    arrays.update({f"intercept_{i}": b for i, b in enumerate(model.intercepts)})
    meta = {"format": CHECKPOINT_FORMAT, "epochs": int(epochs), "n_layers": len(model.coefs)}
    opt, history, rng = model._optimizer, model._history, getattr(model, "_rng", None)
    if opt is not None:
        scalars = {}
        for name, value in opt.state().items():
            if isinstance(value, np.ndarray):
                arrays[f"opt_{name}"] = value
            else:
                scalars[name] = value
        meta["solver"], meta["optimizer"] = opt.solver, scalars
    if history is not None:
        meta["history"] = {k: _plain(getattr(history, k)) for k in _HISTORY_FIELDS}
    if rng is not None:
        meta["rng"] = rng.bit_generator.state
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp.npz"
    try:
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path):
    """Read a checkpoint; None when ``path`` is None or missing.

    Returns
    -------
    Checkpoint or None
    """
    if path is None or not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        if "meta" in data.files:
            meta = json.loads(str(data["meta"]))
        else:  # format 1: weights and epochs only
            meta = {"epochs": int(data["epochs"]), "n_layers": int(data["n_layers"])}
        n = int(meta["n_layers"])
        coefs = [data[f"coef_{i}"] for i in range(n)]
        intercepts = [data[f"intercept_{i}"] for i in range(n)]
        buffers = {k[4:]: data[k] for k in data.files if k.startswith("opt_")}
    state = None
    if "solver" in meta:
        state = {
            "solver": meta["solver"],
            "optimizer": {**meta.get("optimizer", {}), **buffers},
            "rng": meta.get("rng"),
            "history": {k: _unplain(v) for k, v in (meta.get("history") or {}).items()},
        }
    return Checkpoint(int(meta["epochs"]), coefs, intercepts, state)


def restore_state(state, *, optimizer, history, rng):
    """Put a checkpoint's training state into a new fit's optimizer, history and random stream.

    Each part is restored only where it fits (same solver and buffer size;
    same ``early_stopping``; same bit generator); what does not fit starts
    fresh, as it would without a checkpoint.
    """
    buffers = state.get("optimizer") or {}
    sizes = [v.size for v in optimizer.state().values() if isinstance(v, np.ndarray)]
    if state.get("solver") == optimizer.solver and all(
        isinstance(buffers.get(k), np.ndarray) and buffers[k].size == size
        for k, size in zip(
            [k for k, v in optimizer.state().items() if isinstance(v, np.ndarray)], sizes
        )
    ):
        optimizer.load_state(buffers)
    saved = state.get("history") or {}
    if saved and saved.get("early_stopping") == history.early_stopping:
        for name in _HISTORY_FIELDS[1:]:
            if name in saved:
                value = saved[name]
                setattr(history, name, list(value) if isinstance(value, list) else value)
    rng_state = state.get("rng")
    if rng_state and rng_state.get("bit_generator") == type(rng.bit_generator).__name__:
        rng.bit_generator.state = rng_state
