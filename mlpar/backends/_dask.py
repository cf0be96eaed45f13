"""The dask backend: trials as futures on a ``dask.distributed`` cluster.

With ``address=None`` the sweep starts its own ``LocalCluster`` (one
single-threaded worker process per job, every socket bound to 127.0.0.1,
nothing reachable from the network) and closes it afterwards. With an
address (or a ``distributed.Client``) it uses that cluster and leaves it
running.

On its own cluster the sweep sets the scheduler's ``allowed_failures`` to 0,
so a trial that kills its worker is reported ``crashed`` at once instead of
being retried by Dask on three more workers; a trial past ``timeout`` +
grace gets its worker killed (its nanny starts a fresh one). On someone else's cluster
neither is ours to change: a crashing trial is retried by Dask up to the
cluster's ``distributed.scheduler.allowed-failures`` before it is reported
``crashed``, and timeouts are cooperative only (a late trial is marked
``timeout`` when it returns).

The BLAS limit is set per worker process, not per trial: on someone else's
cluster a worker may have several threads, and trials sharing it must not
undo each other's limit (see ``_BlasLease``).
"""

import copy
import logging
import math
import os
import queue
import sys
import threading
import time
import warnings
from contextlib import contextmanager

try:
    import dask
    import distributed
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "backend 'dask' needs dask.distributed, which is not installed; "
        'install it with: pip install "mlpar[dask]"'
    ) from exc

from ._base import Backend, drain, effective_n_jobs
from ._execute import _threadpools
from ._process import _THREAD_ENV_VARS, _synthetic_outcome, job_timeout, kill_grace

__all__ = ["DaskBackend", "connect"]


def connect(address, *, timeout):
    """A client of the Dask scheduler at ``address``, or one clear error after ``timeout`` s.

    Raises
    ------
    ConnectionError
        Naming the address, when no scheduler answers there in time.
    """
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split())
        # Dask's "Timed out trying to connect to <address> after 10 s" says it again.
        reason = "" if not reason or reason.startswith("Timed out") else f" ({reason})"
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s{reason}; "
            f"check execution.address, start a scheduler there (dask scheduler), or raise "
            f"execution.connect_timeout"
        ) from None


class _BlasLease:
    """This worker process's BLAS limit, held while any trial of a sweep runs in it.

    A worker with several threads runs several trials at once, and the BLAS
    limit is process-wide: if each trial set the limit on entry and restored
    the old value on exit, the first to finish would lift the limit under the
    others. So the first trial in sets it, every trial applies it in its own
    thread too (OpenMP's limit is per thread), and the last one out restores
    the worker's own value. (OpenBLAS 0.3.31 ignores that last raise while
    other threads that called it are alive, as a multi-threaded worker's are:
    the worker then keeps the sweep's limit, never a larger one.)
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._holders = 0
        self._original = None

    @contextmanager
    def hold(self, limit):
        with self._lock:
            limiter = _threadpools(len(sys.modules)).limit(limits=limit)
            if self._holders == 0:
                self._original = limiter
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._original.restore_original_limits()
                    self._original = None


# One per worker process, like the limit it guards (a module global on purpose).
_LEASE = _BlasLease()


def _call(runner, trial):
    """Task body on a Dask worker: the trial, under the worker's shared BLAS limit."""
    if not runner.limit_threads or runner.blas_threads is None:
        return runner(trial)
    inner = copy.copy(runner)
    inner.limit_threads = False  # the lease holds the limit instead
    with _LEASE.hold(runner.blas_threads):
        return inner(trial)


async def _exit_worker():
    """Run by a Dask worker's event loop: end the worker process now."""
    # A coroutine because Client.run only fires and forgets coroutines.
    os._exit(1)


def _executing_for(key, dask_worker=None):
    """Run by a Dask worker: seconds ``key`` has been executing, None if it is not, -1 if unknown."""
    try:
        task = dask_worker.state.tasks.get(key)
        if key not in dask_worker.active_keys or task is None or task.start_time is None:
            return None
        return time.time() - task.start_time
    except AttributeError:  # another distributed version's internals: fall back
        return -1.0


class _Pending:
    """What the sweep needs to know about one submitted future."""

    def __init__(self, job_id, trial):
        self.job_id = job_id
        self.trial = trial
        self.submitted = time.monotonic()
        self.started_at = time.time()


class DaskBackend(Backend):
    """Run trials on a Dask cluster, one trial per worker thread.

    Parameters
    ----------
    n_jobs : int, default=None
        Own cluster: number of worker processes (None = all cores).
        Existing cluster: trials in flight at once (None = all its threads).
    address : str or distributed.Client, default=None
        Scheduler address such as ``"tcp://10.0.0.5:8786"``, or a connected
        client; None starts a private ``LocalCluster`` on 127.0.0.1.
    """

    uses_processes = True
    supports_timeout_kill = True

    def __init__(self, *, n_jobs=None, address=None):
        self.requested_n_jobs = n_jobs
        self.n_jobs = None
        self.address = address
        self._cluster = None
        self._client = None
        self._own_client = False

    def open(self):
        if self.address is None:
            self.n_jobs = effective_n_jobs(
                self.requested_n_jobs, default=effective_n_jobs(-1, default=1)
            )
            return  # the cluster starts in start(), once blas_threads is known
        if isinstance(self.address, distributed.Client):
            self._client = self.address
        else:
            # Dask's own connect timeout (30 s by default), as one clear error.
            timeout = dask.config.get("distributed.comm.timeouts.connect")
            self._client = connect(self.address, timeout=dask.utils.parse_timedelta(timeout))
            self._own_client = True
        # Not our cluster: its scheduler's settings are not ours to change.
        self.supports_timeout_kill = False
        threads = sum(self._client.nthreads().values())
        self.n_jobs = effective_n_jobs(self.requested_n_jobs, default=max(1, threads))

    @property
    def capacity(self):
        # One trial per live worker thread, never more: a trial queued on a
        # busy worker would die with it if the running trial crashed it, and
        # would be blamed. A killed trial holds its thread until its worker is
        # gone. (So the throughput of no-op trials is bound by the round trip
        # to the cluster, a few ms: Dask is for trials that take seconds.)
        return max(0, min(self.n_jobs, self._live_threads()) - len(self._doomed))

    def _live_threads(self):
        """Threads of the cluster's live workers, asked at most 4 times a second."""
        now = time.monotonic()
        if now - self._threads_checked > 0.25:
            self._threads = sum(self._client.nthreads().values())
            self._threads_checked = now
        return self._threads

    def start(self, runner, *, blas_threads):
        if self.address is None:
            # Saturation 1.0: a worker never holds a second task queued behind
            # the running one, so a worker's death is blamed on one trial only.
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
                self._cluster = distributed.LocalCluster(
                    n_workers=self.n_jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    # A dashboard on a random loopback port, not the default
                    # ":8787" on every interface.
                    dashboard_address="127.0.0.1:0",
                    # The workers' own HTTP servers too: in older distributed
                    # releases (2024.1 included) they listened on every interface.
                    worker_dashboard_address="127.0.0.1:0",
                    # A trial that kills its worker is reported at once rather
                    # than retried by Dask on three more workers.
                    scheduler_kwargs={"allowed_failures": 0},
                    env={name: str(blas_threads) for name in _THREAD_ENV_VARS},
                    # Worker deaths are expected here (crashing trials) and are
                    # reported as rows; Dask's error logs about them are noise.
                    silence_logs=logging.CRITICAL,
                )
            self._client = distributed.Client(self._cluster, set_as_default=False)
            self._own_client = True
        self._runner = runner
        self._timeout = runner.timeout if self.supports_timeout_kill else None
        self._pending = {}
        self._unsent = []
        self._threads, self._threads_checked = 0, -math.inf
        # Futures of killed trials, held until Dask reports them dead: released
        # earlier, the scheduler would hand their dying worker a new trial.
        self._doomed = set()
        self._finished = queue.SimpleQueue()

    def submit(self, job_id, trial):
        # Buffered, and sent by wait() in one message: each submit() is a
        # round trip to the scheduler, which costs more than a no-op trial.
        self._unsent.append((job_id, trial))

    def _send(self):
        """Send the buffered trials to the cluster as one graph."""
        if not self._unsent:
            return
        jobs, self._unsent = self._unsent, []
        # The runner travels with every task rather than being scattered once:
        # scattered data dies with the workers holding it, and crashing trials
        # kill workers. Big arrays belong in files opened with mmap_mode="r".
        futures = self._client.map(
            _call,
            [self._runner] * len(jobs),
            [trial for _, trial in jobs],
            key=[f"mlpar-trial-{trial.key}-{job_id}" for job_id, trial in jobs],
            pure=False,
        )
        for future, (job_id, trial) in zip(futures, jobs):
            self._pending[future] = _Pending(job_id, trial)
            # A callback rather than distributed.wait(): that one talks to the
            # *default* client, and the sweep's client never becomes the default.
            future.add_done_callback(self._finished.put)

    def _outcomes(self, finished):
        """Return ``[(job_id, outcome), ...]`` for finished futures."""
        finished = [f for f in finished if f in self._pending]
        done = [f for f in finished if f.status == "finished"]
        # One gather for all: each result otherwise costs a round trip to its worker.
        results = self._client.gather(done, errors="skip") if done else []
        out = [(self._pending.pop(f).job_id, r) for f, r in zip(done, results)]
        for future in finished:
            if future in self._pending:
                out.append(self._failure(future))
        return out

    def _failure(self, future):
        """Return ``(job_id, outcome)`` for a future that erred or was cancelled."""
        pending = self._pending.pop(future)
        exc = future.exception() if future.status == "error" else None
        future.release()
        if isinstance(exc, distributed.scheduler.KilledWorker):
            self._threads_checked = -math.inf  # a worker is gone: count again
            message = f"the Dask worker running the trial died ({exc})"
            return pending.job_id, _synthetic_outcome(
                "crashed", "WorkerCrashed", message, pending, None
            )
        # The task never ran fn (TrialRunner catches fn's errors): it could not
        # be deserialized on the worker, or the cluster lost it.
        error_type = type(exc).__name__ if exc is not None else "CancelledError"
        message = str(exc) if exc is not None else "the future was cancelled by the cluster"
        outcome = _synthetic_outcome("failed", error_type, message, pending, None)
        return pending.job_id, outcome

    def _limit(self, pending):
        """Seconds a job may run before its worker is killed: timeout (x K for a stack) + grace."""
        timeout = job_timeout(self._timeout, pending.trial)
        return timeout + kill_grace(timeout)

    def _kill_overdue(self):
        """Kill the workers of trials past timeout + grace; return their outcomes."""
        if self._timeout is None:
            return []
        now = time.monotonic()
        overdue = [f for f, p in self._pending.items() if now - p.submitted > self._limit(p)]
        if not overdue:
            return []
        processing = self._client.processing()
        done = []
        for future in overdue:
            workers = [w for w, keys in processing.items() if future.key in keys]
            # Time since submission overstates a trial's run when it waited
            # for a (re)starting worker: ask the worker when it really began.
            running_for = None
            if workers:
                running_for = self._client.run(_executing_for, future.key, workers=workers[:1])
                running_for = running_for.get(workers[0])
            limit = self._limit(self._pending[future])
            if running_for is None or 0 <= running_for < limit:
                self._pending[future].submitted = now - (running_for or 0.0)
                continue
            pending = self._pending.pop(future)
            timeout = job_timeout(self._timeout, pending.trial)
            self._doomed.add(future)
            self._threads_checked = -math.inf
            # The worker's event loop still answers while its task thread is
            # stuck, so it can be told to exit; its nanny starts a fresh one.
            # (restart_workers would block the sweep until the restart is done.)
            self._client.run(_exit_worker, workers=workers, wait=False)
            message = (
                f"trial did not return within its timeout of {timeout:g} s "
                f"(+{kill_grace(timeout):g} s grace); Dask worker {workers[0]} "
                "was killed and its nanny starts a fresh one"
            )
            done.append(
                (
                    pending.job_id,
                    _synthetic_outcome("timeout", "TimeoutError", message, pending, None),
                )
            )
        return done

    def _bury(self, finished):
        """Forget killed trials whose futures are finally done: their worker is gone."""
        gone = self._doomed.intersection(finished)
        if gone:
            self._doomed -= gone
            self._threads_checked = -math.inf  # count the live threads again

    def wait(self):
        self._send()
        if not self._pending:
            # Nothing in flight: workers are (re)starting, or killed ones still
            # dying. Give them a moment, then let the sweep look again.
            self._bury(drain(self._finished, timeout=0.25))
            self._threads_checked = -math.inf
            return []
        while self._pending:
            wake = None
            if self._timeout is not None:
                first = min(p.submitted + self._limit(p) for p in self._pending.values())
                wake = max(0.01, first - time.monotonic())
            finished = drain(self._finished, timeout=wake)
            self._bury(finished)
            done = self._outcomes(finished)
            done.extend(self._kill_overdue())
            if done:
                return done
        return []

    def close(self, *, kill=False):
        pending = list(getattr(self, "_pending", {}))
        try:
            if pending and self._client is not None:
                self._client.cancel(pending, force=True)
            if self._own_client and self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            self._pending, self._client, self._cluster = {}, None, None
            if pending and not kill:
                warnings.warn(
                    f"{len(pending)} Dask trials were still pending at close",
                    RuntimeWarning,
                    stacklevel=2,
                )
