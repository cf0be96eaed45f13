"""Checkpoints between rungs: which file each trial saves to and continues from.

A halving search wraps its trial function in :class:`HalvingTrial`, which
sets :func:`mlpar.context.checkpoint_path` and
:func:`~mlpar.context.previous_checkpoint_path` around each call. The paths
are a pure function of the trial's parameters and seed (its configuration,
its rung), so the wrapper is pickled once and every backend, worker and
resumed run sees the same files.
"""

from __future__ import annotations

from pathlib import Path

from ..context import _checkpoint_scope
from ..search import callable_name as _callable_name
from ._rungs import config_key

__all__ = ["HalvingTrial", "checkpoint_file"]


def checkpoint_file(folder, ckey, seed, rung):
    """The checkpoint of configuration ``ckey``, seed ``seed``, after rung ``rung``."""
    return Path(folder) / f"{ckey}-{seed}-rung{rung}.npz"


class HalvingTrial:
    """``fn`` with the checkpoint paths of its configuration and rung set in its context.

    Parameters
    ----------
    fn : callable
        The trial function.
    folder : path-like or None
        Where checkpoints live; None: no checkpoint paths (every rung restarts).
    resource : str
    resources : list
        The resource of every rung: a trial's rung is the position of its
        resource value there.
    continues : bool
        Whether a promoted trial is offered the previous rung's checkpoint.
    """

    def __init__(self, fn, folder, *, resource, resources, continues, configs=()):
        self.fn, self.folder = fn, None if folder is None else str(folder)
        self.resource, self.resources, self.continues = resource, list(resources), continues
        # Every trial the search may run, prepared at once (train_mlp verifies
        # its data cache there): ASHA asks a trial at a time, and a check per
        # ask would cost more than many trials.
        self._todo = [{**c, resource: r} for c in configs for r in self.resources]

    def __getstate__(self):
        return {**self.__dict__, "_todo": []}  # the parent prepares; workers need not carry it

    @property
    def sweep_identity(self):
        """The wrapped function's name: resume compares it, not the checkpoint folder."""
        return _callable_name(self.fn)

    def paths(self, params, seed):
        """``(save, load)`` for this trial: None where there is nothing to save or load."""
        if self.folder is None:
            return None, None
        rung = self.resources.index(params[self.resource])
        ckey = config_key(params, self.resource)
        save = checkpoint_file(self.folder, ckey, seed, rung)
        load = checkpoint_file(self.folder, ckey, seed, rung - 1)
        return save, load if self.continues and rung > 0 else None

    def __call__(self, params, seed):
        save, load = self.paths(params, seed)
        with _checkpoint_scope(save, load):
            return self.fn(params, seed)

    def prepare(self, params_list):
        """The wrapped function's ``prepare``, once for every trial the search may run."""
        prepare = getattr(self.fn, "prepare", None)
        if callable(prepare) and self._todo is not None:
            prepare(self._todo or params_list)
            self._todo = None
