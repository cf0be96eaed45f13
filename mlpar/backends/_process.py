"""The processes backend: a small pool of loky worker processes, one trial each.

Why not ``joblib.Parallel(backend="loky")`` or a ``ProcessPoolExecutor``:
when one of their workers dies, the whole executor breaks and every trial in
flight fails with it, so a single segfaulting trial would be blamed on its
neighbours or end the sweep; and a hung trial can only be stopped by shutting
the whole pool down. Here every worker has its own pipe, and the parent knows
which trial each worker runs. A worker that dies costs exactly its own trial
(``crashed``); a trial past ``timeout`` + grace gets its worker killed
(``timeout``); in both cases a fresh worker takes the next trial.

Workers are started with loky's process launcher (the one joblib uses): it
does not re-import the caller's ``__main__`` (no ``if __name__ ==
"__main__"`` guard needed) and lets us set each worker's environment, so
BLAS/OpenMP thread variables are in place before any library loads.
"""

import os
import pickle
import signal
import threading
import time
from contextlib import suppress
from multiprocessing import Pipe
from multiprocessing.connection import wait as wait_for

from ._base import Backend, cloudpickle_module

__all__ = ["ProcessBackend", "ForkProcessBackend", "kill_grace"]

# Read by OpenBLAS, MKL, BLIS, Accelerate, OpenMP and numexpr when they load.
# threadpoolctl then applies the same limit at trial time to those already loaded.
_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)


# Workers dying before they acknowledge a trial, in a row, before the sweep
# gives up: a module that crashes the interpreter on import would otherwise
# respawn workers forever.
_MAX_EARLY_DEATHS = 5


def kill_grace(timeout):
    """Seconds a trial may overrun ``timeout`` before its worker is killed.

    Enough for a cooperative trial to notice its deadline and return its
    metrics: half a second plus a tenth of the timeout.
    """
    return 0.5 + 0.1 * timeout


def _watch_parent(parent_pid):
    """Exit this worker if the sweep's process dies, so no trial is orphaned."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_main(conn, payload, parent_pid):
    """Worker process body: load the runner, then run the trials sent down ``conn``."""
    # Ctrl-C in a terminal reaches the whole process group; the sweep's
    # process decides what happens and kills its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        # Bytes the parent sweep pickled for this worker and passed at start-up
        # (in memory, through the process launcher): never read from a file.
        runner = pickle.loads(payload)
    except BaseException:
        import traceback

        conn.send(("setup_error", traceback.format_exc()))
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job_id, trial = message
        conn.send(("start", job_id))
        conn.send(("done", job_id, runner(trial)))


def _forked_main(conn, payload, parent_pid, env):
    """Body of a forked worker: its thread settings first, then as any worker."""
    os.environ.update(env)  # for libraries first loaded in the worker
    _worker_main(conn, payload, parent_pid)


class _Worker:
    """One worker process, its pipe and the trial it is running."""

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        self.job = None  # (job_id, trial) while busy
        self.started = None  # monotonic time its trial started, once acknowledged
        self.started_at = None  # the same, wall clock


def _hard_kill(process):
    """Kill a worker at once: SIGKILL where it exists (loky's Popen has no kill())."""
    if process.exitcode is not None:
        return
    if hasattr(signal, "SIGKILL"):
        # ProcessLookupError: it exited between the check and the kill.
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    else:  # Windows: terminate() is TerminateProcess, already immediate
        process.terminate()


def _describe_exit(exitcode):
    """Return a readable exit status: 'exit code 1' or 'killed by SIGSEGV'."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _synthetic_outcome(status, error_type, message, worker, pid):
    """Return the outcome of a trial whose worker did not report one."""
    now = time.time()
    started_at = worker.started_at if worker.started_at is not None else now
    return {
        "status": status,
        "metrics": {},
        "error_type": error_type,
        "error_message": message,
        "traceback": None,
        "wall_time": now - started_at,
        "cpu_time": None,
        "started_at": started_at,
        "ended_at": now,
        "pid": pid,
        "thread_name": None,
        "thread_id": None,
        "blas_threads_seen": None,
    }


class ProcessBackend(Backend):
    """Run trials in worker processes, isolated from each other and from the sweep.

    Each worker runs one trial at a time with ``blas_threads`` BLAS/OpenMP
    threads. ``fn`` travels by cloudpickle (lambdas work; locks and open
    files do not). Workers start lazily and are reused across trials.
    """

    uses_processes = True
    supports_timeout_kill = True
    isolates_crashes = True

    def start(self, runner, *, blas_threads):
        from joblib.externals.loky.backend.context import get_context

        self._context = get_context("loky")
        self._payload = cloudpickle_module().dumps(runner)
        self._timeout = runner.timeout
        self._env = {name: str(blas_threads) for name in _THREAD_ENV_VARS}
        self._idle = []
        self._busy = []
        self._n_spawned = 0
        self._early_deaths = 0

    def _spawn(self):
        parent_conn, child_conn = Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, self._payload, os.getpid()),
            env=self._env,
            name=f"mlpar-worker-{self._n_spawned}",
        )
        self._n_spawned += 1
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def submit(self, job_id, trial):
        worker = self._idle.pop() if self._idle else self._spawn()
        try:
            worker.conn.send((job_id, trial))
        except OSError:
            # It died while idle (an OOM killer, a stray signal): not this
            # trial's fault, so it simply goes to a fresh worker.
            self._discard(worker, kill=True)
            worker = self._spawn()
            worker.conn.send((job_id, trial))
        worker.job = (job_id, trial)
        worker.started = worker.started_at = None
        self._busy.append(worker)

    def _discard(self, worker, *, kill):
        """Stop tracking ``worker``, killing it first if asked; return its exit code."""
        if kill:
            _hard_kill(worker.process)
        worker.process.join(timeout=5)
        worker.conn.close()
        if worker in self._busy:
            self._busy.remove(worker)
        return worker.process.exitcode

    def _collect(self, worker):
        """Read ``worker``'s messages; return the outcomes they complete."""
        done = []
        while worker.job is not None:
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "start":
                worker.started, worker.started_at = time.monotonic(), time.time()
                self._early_deaths = 0
            elif message[0] == "done":
                done.append((message[1], message[2]))
                worker.job = worker.started = worker.started_at = None
                self._busy.remove(worker)
                self._idle.append(worker)
                return done
            else:  # setup_error: fn could not be loaded in the worker at all
                self.close(kill=True)
                raise RuntimeError(
                    "a worker process could not load fn; is the module defining "
                    f"it importable there (same sys.path and working directory)?\n{message[1]}"
                )
        if worker.job is not None and worker.process.exitcode is not None:
            job_id, trial = worker.job
            pid = worker.process.pid
            if worker.started is None:
                # Died before it acknowledged the trial: the trial never ran
                # there, so it is resubmitted without counting an attempt --
                # unless workers keep dying on start-up, which no retry fixes.
                exitcode = self._discard(worker, kill=False)
                self._early_deaths += 1
                if self._early_deaths >= _MAX_EARLY_DEATHS:
                    raise RuntimeError(
                        f"{self._early_deaths} worker processes in a row died before "
                        f"running a trial (the last: {_describe_exit(exitcode)}); "
                        "check that fn's module imports cleanly in a fresh Python process"
                    )
                self.submit(job_id, trial)
                return done
            exitcode = self._discard(worker, kill=False)
            message = (
                f"worker process {pid} died while running the trial "
                f"({_describe_exit(exitcode)}); a fresh worker takes the next trial"
            )
            done.append((job_id, _synthetic_outcome("crashed", "WorkerCrashed", message, worker, pid)))
        return done

    def _kill_overdue(self):
        """Kill the workers of trials past timeout + grace; return their outcomes."""
        done = []
        if self._timeout is None:
            return done
        limit = self._timeout + kill_grace(self._timeout)
        now = time.monotonic()
        for worker in list(self._busy):
            if worker.started is not None and now - worker.started > limit:
                job_id, _ = worker.job
                pid = worker.process.pid
                self._discard(worker, kill=True)
                message = (
                    f"trial did not return within its timeout of {self._timeout:g} s "
                    f"(+{kill_grace(self._timeout):g} s grace); worker process {pid} "
                    "was killed and a fresh worker takes the next trial"
                )
                done.append((job_id, _synthetic_outcome("timeout", "TimeoutError", message, worker, pid)))
        return done

    def wait(self):
        while self._busy:
            wake = None
            if self._timeout is not None:
                limit = self._timeout + kill_grace(self._timeout)
                deadlines = [w.started + limit for w in self._busy if w.started is not None]
                if deadlines:
                    wake = max(0.0, min(deadlines) - time.monotonic())
            handles = [w.conn for w in self._busy] + [w.process.sentinel for w in self._busy]
            ready = set(wait_for(handles, timeout=wake))
            done = []
            for worker in list(self._busy):
                if worker.conn in ready or worker.process.sentinel in ready:
                    done.extend(self._collect(worker))
            done.extend(self._kill_overdue())
            if done:
                return done
        return []

    def close(self, *, kill=False):
        workers = getattr(self, "_busy", []) + getattr(self, "_idle", [])
        for worker in workers:
            if kill or worker.job is not None:
                _hard_kill(worker.process)
            else:
                # OSError: it is already gone, and join() below reaps it.
                with suppress(OSError):
                    worker.conn.send(None)
        for worker in workers:
            worker.process.join(timeout=10)
            if worker.process.exitcode is None:
                _hard_kill(worker.process)
                worker.process.join()
            worker.conn.close()
        self._busy, self._idle = [], []


class ForkProcessBackend(ProcessBackend):
    """The processes backend with workers started by ``fork()`` (POSIX only).

    A forked worker starts as a copy of the sweep's process, with NumPy,
    scikit-learn and mlpar already imported: it is ready in milliseconds,
    where a fresh interpreter takes about a second to import them. Everything
    else (one trial per worker, crash isolation, timeouts, BLAS limits
    applied per trial) is the processes backend's.

    The price is fork's: a library that was running threads in the sweep's
    process when it forked may not work in the worker (GNU OpenMP is the
    known case; OpenBLAS re-initializes itself after fork). Use it for sweeps
    whose trials use NumPy and mlpar; the default ``processes`` backend starts
    clean interpreters and is safe for any trial.
    """

    def start(self, runner, *, blas_threads):
        import multiprocessing

        super().start(runner, blas_threads=blas_threads)
        self._context = multiprocessing.get_context("fork")

    def _spawn(self):
        parent_conn, child_conn = Pipe()
        process = self._context.Process(
            target=_forked_main,
            args=(child_conn, self._payload, os.getpid(), self._env),
            name=f"mlpar-worker-{self._n_spawned}",
        )
        self._n_spawned += 1
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)
