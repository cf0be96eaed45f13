"""The running trial's context: its cooperative deadline, its checkpoint paths.

A sweep with ``timeout=`` gives every trial a deadline on the
``time.monotonic()`` clock. Code running inside the trial (a training loop,
an estimator with ``max_time``) reads it with :func:`trial_deadline` and stops
in time. Only the processes backend (and a sweep's own Dask cluster) can kill
a trial that ignores its deadline; threads and serial trials can only be asked.
"""

import threading
import time
from contextlib import contextmanager

__all__ = ["trial_deadline", "time_left", "checkpoint_path", "previous_checkpoint_path"]

# Thread-local, not a plain global: under the threads backend several trials
# run at once in one process, each with its own deadline.
_local = threading.local()


def trial_deadline():
    """Return the ``time.monotonic()`` deadline of the trial running in this thread.

    Returns
    -------
    deadline : float or None
        The deadline, or None outside a trial or when the sweep has no
        ``timeout``.

    Examples
    --------
    >>> import time
    >>> from mlpar.context import trial_deadline
    >>> def fn(params, seed):
    ...     deadline = trial_deadline()
    ...     for epoch in range(100):
    ...         if deadline is not None and time.monotonic() > deadline:
    ...             break  # stop cooperatively; the row keeps these metrics
    ...     return {"epochs": epoch + 1}
    >>> trial_deadline() is None
    True
    """
    return getattr(_local, "deadline", None)


def time_left():
    """Return the seconds left before this thread's trial deadline.

    Returns
    -------
    seconds : float or None
        Seconds left (negative once the deadline has passed), or None when
        there is no deadline.
    """
    deadline = trial_deadline()
    return None if deadline is None else deadline - time.monotonic()


@contextmanager
def _deadline_scope(deadline):
    """Set this thread's trial deadline for the duration of the block."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = previous


def checkpoint_path():
    """Return where the running trial may save a checkpoint of this configuration.

    Set by :func:`mlpar.halving.successive_halving` (with a ``journal_dir``):
    a file in the run folder, one per configuration, repeat and rung. Write it
    atomically (a temporary file, then ``os.replace``).

    Returns
    -------
    path : pathlib.Path or None
        None outside a halving rung: then there is nothing to save.
    """
    return getattr(_local, "checkpoint", (None, None))[0]


def previous_checkpoint_path():
    """Return the checkpoint this configuration saved in the previous rung, if any.

    A trial that loads it and trains only the extra budget continues where the
    previous rung stopped; one that ignores it restarts with the larger budget
    (correct, only slower).

    Returns
    -------
    path : pathlib.Path or None
        None in the first rung, outside a halving rung, or for a resource that
        training cannot continue along (anything but ``epochs``). The file may
        be missing (the trial failed, or did not save one).
    """
    return getattr(_local, "checkpoint", (None, None))[1]


@contextmanager
def _checkpoint_scope(save, load):
    """Set this thread's checkpoint paths for the duration of the block."""
    previous = getattr(_local, "checkpoint", (None, None))
    _local.checkpoint = (save, load)
    try:
        yield
    finally:
        _local.checkpoint = previous
