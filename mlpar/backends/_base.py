"""The contract every backend implements, and the helpers they share."""

import numbers
import queue
from abc import ABC, abstractmethod

__all__ = ["Backend", "effective_n_jobs", "check_picklable", "drain"]


def effective_n_jobs(n_jobs, *, default):
    """Return the number of workers for ``n_jobs``, joblib-style.

    Parameters
    ----------
    n_jobs : int or None
        None means ``default``; -1 means all cores (``joblib.cpu_count()``,
        which honours CPU affinity and container quotas); -2 all but one, and
        so on.
    default : int
        The value for None.

    Returns
    -------
    n_jobs : int
        At least 1.
    """
    if n_jobs is None:
        return default
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a positive integer, -1 for all cores, or None, got {n_jobs!r}"
        )
    if n_jobs < 0:
        from ..environment import cpu_count

        return max(1, cpu_count() + 1 + int(n_jobs))
    return int(n_jobs)


def drain(inbox, *, timeout):
    """Block up to ``timeout`` for one item of a queue, then take all that are ready."""
    try:
        items = [inbox.get(timeout=timeout)]
    except queue.Empty:
        return []
    # Single consumer: empty() cannot turn False under our feet.
    while not inbox.empty():
        items.append(inbox.get_nowait())
    return items


def cloudpickle_module():
    """Return cloudpickle: a dependency of joblib >= 1.5, vendored inside older joblib."""
    try:
        import cloudpickle
    except ImportError:  # joblib < 1.5 ships its own copy
        from joblib.externals import cloudpickle
    return cloudpickle


def check_picklable(fn, *, backend):
    """Raise TypeError, before anything runs, if ``fn`` cannot reach a worker process.

    Workers receive ``fn`` through cloudpickle, as with loky and Dask, so
    lambdas and local functions travel fine; what cannot travel is state bound
    to this process: locks, open files, sockets, database connections,
    generators captured by ``fn``.
    """
    try:
        cloudpickle_module().dumps(fn)
    except Exception as exc:
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise TypeError(
            f"fn {name!r} cannot be sent to the worker processes of backend "
            f"{backend!r}: {type(exc).__name__}: {exc}. Define fn at module level "
            "and let it capture only picklable values (no locks, open files, "
            "sockets or connections: create those inside fn), or use "
            "backend='threads'"
        ) from exc


class Backend(ABC):
    """Where trials run: a pool of workers fed one trial at a time.

    A backend knows nothing about models or metrics. The sweep opens it,
    starts it with a :class:`~mlpar.backends._execute.TrialRunner`, submits
    trials up to ``capacity`` at a time, collects outcomes with :meth:`wait`
    as they complete and closes it. An outcome is a dict of
    :data:`~mlpar.backends._execute.OUTCOME_FIELDS`; a backend synthesizes one
    itself when a worker dies (status ``crashed``) or is killed for running
    past its timeout (status ``timeout``).

    Subclasses set the capability flags below, in the spirit of joblib's
    ``ParallelBackendBase``.

    Parameters
    ----------
    n_jobs : int, default=None
        Number of trials run at once; see :func:`effective_n_jobs`.
    address : str or distributed.Client, default=None
        Scheduler to connect to; only meaningful for Dask.
    """

    #: Trials run in other processes: fn must pickle, and the BLAS thread
    #: budget is applied inside each worker instead of once in this process.
    uses_processes = False
    #: A trial that ignores its deadline is killed at ``timeout`` + grace.
    supports_timeout_kill = False
    #: n_jobs when the user passes None.
    default_n_jobs = -1

    def prestart(self, *, blas_threads):
        """Begin, in the background, what the first trial will wait for (default: nothing).

        The processes backend starts its fork server here, so that the
        server's imports overlap the rest of the sweep's preparation.
        """
        return None

    def __init__(self, *, n_jobs=None, address=None):
        if address is not None:
            raise ValueError(
                f"address={address!r} is only used by backend='dask'; remove it "
                "or choose backend='dask'"
            )
        self.requested_n_jobs = n_jobs
        self.n_jobs = None
        self.address = address

    @property
    def name(self):
        """The name this backend is registered under."""
        return getattr(self, "_registered_name", type(self).__name__)

    def open(self):
        """Acquire resources (a cluster, a connection) and resolve ``n_jobs``."""
        self.n_jobs = effective_n_jobs(
            self.requested_n_jobs, default=effective_n_jobs(self.default_n_jobs, default=1)
        )

    @property
    def capacity(self):
        """How many trials may be in flight at once."""
        return self.n_jobs

    @abstractmethod
    def start(self, runner, *, blas_threads):
        """Prepare workers to call ``runner(trial)``; ``blas_threads`` per worker."""

    @abstractmethod
    def submit(self, job_id, trial):
        """Send ``trial`` to a free worker; ``job_id`` comes back with its outcome."""

    @abstractmethod
    def wait(self):
        """Block until at least one submitted trial is done; return ``[(job_id, outcome), ...]``."""

    @abstractmethod
    def close(self, *, kill=False):
        """Release workers; with ``kill``, stop running trials as fast as possible."""
