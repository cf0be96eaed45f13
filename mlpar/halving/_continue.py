"""Checkpoints between rungs: which file each trial saves to and continues from.

A rung's trial function is wrapped in :class:`RungTrial`, which sets the
trial's :func:`mlpar.context.checkpoint_path` and
:func:`~mlpar.context.previous_checkpoint_path` around the call. The wrapper
is pickled with the trial, so every backend sees the same paths.
"""

from __future__ import annotations

from pathlib import Path

from ..context import _checkpoint_scope
from ..search import callable_name as _callable_name
from ..space import canonical_json, expand_space
from ._rungs import config_key

__all__ = ["RungTrial", "rung_checkpoints", "drop_checkpoints"]


def _name(params, repeat, resource, rung):
    base = {k: v for k, v in params.items() if k != resource}
    return f"{config_key(base, resource)}-{repeat}-rung{rung}.npz"


def rung_checkpoints(folder, rung_space, *, rung, resource, seeds, random_state, continues):
    """``{"<params>#<seed>": (save path, load path or None)}`` for every trial of a rung."""
    folder = Path(folder)
    paths = {}
    for t in expand_space(rung_space, seeds=seeds, random_state=random_state):
        load = (
            folder / _name(t.params, t.repeat, resource, rung - 1)
            if continues and rung > 0
            else None
        )
        paths[f"{canonical_json(t.params)}#{t.seed}"] = (
            str(folder / _name(t.params, t.repeat, resource, rung)),
            None if load is None else str(load),
        )
    return paths


def drop_checkpoints(folder, *, rung, keep, resource):
    """Delete the previous rung's checkpoints, and this rung's of configurations not kept."""
    keep = {config_key(p, resource) for p in keep}
    for path in Path(folder).glob("*.npz"):
        key, _, tag = path.stem.rpartition("-")
        if tag == f"rung{rung - 1}" or (
            tag == f"rung{rung}" and key.rpartition("-")[0] not in keep
        ):
            path.unlink(missing_ok=True)


class RungTrial:
    """``fn`` with the checkpoint paths of its rung set in the trial's context."""

    def __init__(self, fn, paths):
        self.fn, self.paths = fn, paths

    @property
    def sweep_identity(self):
        """The wrapped function's name: resume compares it, not the paths."""
        return _callable_name(self.fn)

    def __call__(self, params, seed):
        save, load = self.paths.get(f"{canonical_json(params)}#{seed}", (None, None))
        with _checkpoint_scope(save, load):
            return self.fn(params, seed)

    def prepare(self, params_list):
        """The wrapped function's ``prepare``, if it has one."""
        prepare = getattr(self.fn, "prepare", None)
        if callable(prepare):
            prepare(params_list)
