"""One trial's record: :class:`TrialRow` and the statuses a trial can end in."""

import dataclasses
from dataclasses import dataclass, field

__all__ = ["TrialRow", "STATUSES"]

#: Every trial ends in one of these. Only ``ok`` rows feed the summary's means.
STATUSES = ("ok", "failed", "diverged", "timeout", "crashed")


@dataclass
class TrialRow:
    """The record of one finished trial, as written to the journal.

    Attributes
    ----------
    key, index, params, repeat, seed
        The trial: stable key, position in the expanded space, configuration,
        repeat index and seed.
    status : {'ok', 'failed', 'diverged', 'timeout', 'crashed'}
        How it ended.
    metrics : dict
        What ``fn`` returned (kept for ``timeout`` and ``diverged`` rows too).
    error_type, error_message, traceback : str or None
        Why it did not end ``ok``.
    attempts : int
        Times it ran (``retries`` re-runs failed, timed-out and crashed trials).
    wall_time, cpu_time : float or None
        Seconds, for the last attempt. ``cpu_time`` is the trial thread's own
        CPU time (``time.thread_time``): other trials' threads are excluded,
        and so are BLAS helper threads when ``blas_threads > 1``.
    started_at, ended_at : float or None
        Wall clock, seconds since the epoch.
    pid, thread_name, thread_id
        Where it ran (``thread_id`` is the OS thread id).
    backend, n_jobs, blas_threads : str, int, int
        The sweep's effective settings.
    blas_threads_seen : int or None
        The largest thread count among the BLAS libraries loaded in the
        worker, read while the trial ran; None if no BLAS was loaded.
    stack_id, stack_size : str or None, int or None
        For a trial trained in a stack (``sweep(stack=)``): the stack's id and
        its number of trials; ``wall_time`` and ``cpu_time`` are then this
        trial's share of the stack's. None when trained alone.
    rung, resource : int or None, number or None
        For successive halving and ASHA: the rung the trial ran in (0, 1, ...)
        and the resource it had there. None for other searches.
    sampler_trial : int or None
        For a sampler's search (Optuna): the trial's number in the study.
    """

    key: str
    index: int
    params: dict
    repeat: int
    seed: int
    status: str
    metrics: dict = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 1
    wall_time: float | None = None
    cpu_time: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    thread_name: str | None = None
    thread_id: int | None = None
    backend: str | None = None
    n_jobs: int | None = None
    blas_threads: int | None = None
    blas_threads_seen: int | None = None
    stack_id: str | None = None
    stack_size: int | None = None
    rung: int | None = None
    resource: object = None
    sampler_trial: int | None = None

    def to_dict(self):
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a row from :meth:`to_dict` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
