"""The processes backend: a small pool of worker processes, one trial each.

Why not ``joblib.Parallel(backend="loky")`` or a ``ProcessPoolExecutor``:
when one of their workers dies, the whole executor breaks and every trial in
flight fails with it, so a single segfaulting trial would be blamed on its
neighbours or end the sweep; and a hung trial can only be stopped by shutting
the whole pool down. Here every worker has its own pipe, and the parent knows
which trial each worker runs. A worker that dies costs exactly its own trial
(``crashed``); a trial past ``timeout`` + grace gets its worker killed
(``timeout``); in both cases a fresh worker takes the next trial.

How workers start (``ProcessBackend._launcher``):

- ``"forkserver"`` (POSIX systems but macOS, the default): forked from a fork
  server, a fresh single-threaded interpreter that has already imported
  NumPy, threadpoolctl, the trial runner, :mod:`mlpar.trial` and the modules
  fn's pickle names; one server per environment, so BLAS loads there under
  the sweep's thread variables (see :mod:`mlpar.backends._forkserver`, and
  why not multiprocessing's own). A worker is ready in milliseconds.
- ``"loky"`` (Windows, macOS): a fresh interpreter per worker from loky's
  launcher (joblib's), which does not re-import the caller's ``__main__``
  and sets the thread variables before any library loads. About a second.
- ``"fork"`` (:class:`ForkProcessBackend`): ``fork()`` of the sweep's own process.
"""

import os
import pickletools
import signal
import sys
import time
from contextlib import suppress
from multiprocessing import Pipe
from multiprocessing.connection import wait as wait_for

from . import _forkserver
from ._base import Backend, cloudpickle_module
from ._worker import _forked_main, _forkserver_main, _worker_main

__all__ = ["ProcessBackend", "ForkProcessBackend", "kill_grace"]

# Read by OpenBLAS, MKL, BLIS, Accelerate, OpenMP and numexpr when they load.
# threadpoolctl then applies the same limit at trial time to those already loaded.
_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# Workers dying before they acknowledge a trial, in a row, before the sweep
# gives up: a module that crashes the interpreter on import would otherwise
# respawn workers forever.
_MAX_EARLY_DEATHS = 5

# macOS: forking a process that loaded Apple's frameworks (NumPy's Accelerate)
# is unsupported by Apple, which is why spawn is Python's default there.
_DEFAULT_LAUNCHER = "forkserver" if hasattr(os, "fork") and sys.platform != "darwin" else "loky"

# Imported by every fork server before its first fork. NumPy first: its BLAS
# then loads under the server's thread variables.
_PRELOAD = ("numpy", "threadpoolctl", "mlpar.backends._execute", "mlpar.trial")


def kill_grace(timeout):
    """Seconds a trial may overrun ``timeout`` before its worker is killed.

    Enough for a cooperative trial to notice its deadline and return its
    metrics: half a second plus a tenth of the timeout.
    """
    return 0.5 + 0.1 * timeout


def _modules_named_in(payload):
    """Modules, importable by name and imported here, that ``payload`` names.

    A pickle names the module of each function and class it refers to by
    reference (fn's own among them), and cloudpickle the modules a by-value
    function uses, as strings. Read from its opcodes, nothing unpickled; a
    stray string that happens to name a loaded module only preloads it.
    """
    names = set()
    for op, arg, _ in pickletools.genops(payload):
        if op.name == "GLOBAL":
            names.add(arg.split(" ", 1)[0])
        elif isinstance(arg, str) and "UNICODE" in op.name:
            names.add(arg)
    return {
        name
        for name in names
        if name not in ("__main__", "__mp_main__")
        and getattr(sys.modules.get(name), "__spec__", None) is not None
    }


class _Worker:
    """One worker process, its pipe and the trial it is running."""

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        self.job = None  # (job_id, trial) while busy
        self.started = None  # monotonic time its trial started, once acknowledged
        self.started_at = None  # the same, wall clock


def _send(conn, message):
    """Send ``message``; False if the worker at the other end is gone."""
    try:
        conn.send(message)
    except OSError:
        return False
    return True


def _release(worker):
    """Close the sweep's ends of ``worker``'s pipe (and status pipe)."""
    worker.conn.close()
    if isinstance(worker.process, _forkserver.ServerProcess):
        worker.process.release()


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
    from ._execute import make_outcome  # here: it imports NumPy, which prestart must not wait for

    now = time.time()
    started_at = worker.started_at if worker.started_at is not None else now
    return make_outcome(
        status,
        error_type=error_type,
        error_message=message,
        wall_time=now - started_at,
        started_at=started_at,
        ended_at=now,
        pid=pid,
    )


def job_timeout(timeout, trial):
    """Seconds a job may take: a stack of K trials gets K x ``timeout`` (see sweep(stack=))."""
    return None if timeout is None else timeout * getattr(trial, "timeout_scale", 1)


class ProcessBackend(Backend):
    """Run trials in worker processes, isolated from each other and from the sweep.

    Each worker runs one trial at a time with ``blas_threads`` BLAS/OpenMP
    threads. ``fn`` travels by cloudpickle (lambdas work; locks and open
    files do not). Workers start lazily, pre-loaded where a fork server
    can start them (see the module docstring), and are reused across trials.
    """

    uses_processes = True
    supports_timeout_kill = True
    #: How workers start: "forkserver", "loky" or "fork" (see the module
    #: docstring). Private: benchmarks compare launchers through subclasses.
    _launcher = _DEFAULT_LAUNCHER

    def prestart(self, *, blas_threads):
        if self._launcher == "forkserver":
            env = {name: str(blas_threads) for name in _THREAD_ENV_VARS}
            _forkserver.prestart({**os.environ, **env}, _PRELOAD)

    def start(self, runner, *, blas_threads):
        self._payload = cloudpickle_module().dumps(runner)
        self._timeout = runner.timeout
        self._env = {name: str(blas_threads) for name in _THREAD_ENV_VARS}
        self._idle = []
        self._busy = []
        self._n_spawned = 0
        self._early_deaths = 0
        if self._launcher == "forkserver":
            self._modules = sorted(_modules_named_in(self._payload) - set(_PRELOAD))
        elif self._launcher == "loky":
            from joblib.externals.loky.backend.context import get_context

            self._context = get_context("loky")
        else:
            import multiprocessing

            self._context = multiprocessing.get_context("fork")

    def _start_process(self, child_conn):
        """Start one worker on the child end of its pipe; return its process."""
        name = f"mlpar-worker-{self._n_spawned}"
        if self._launcher == "forkserver":
            # The sweep's environment as it is now, with its thread settings:
            # the server for it has loaded BLAS under these very variables.
            env = {**os.environ, **self._env}
            return _forkserver.spawn(
                child_conn,
                env=env,
                preload=_PRELOAD,
                modules=self._modules,
                target=_forkserver_main,
            )
        if self._launcher == "loky":
            args = (child_conn, self._payload, os.getpid())
            process = self._context.Process(
                target=_worker_main, args=args, env=self._env, name=name
            )
        else:
            args = (child_conn, self._payload, os.getpid(), self._env)
            process = self._context.Process(target=_forked_main, args=args, name=name)
        process.start()
        return process

    def _spawn(self):
        parent_conn, child_conn = Pipe()
        try:
            process = self._start_process(child_conn)
        finally:
            child_conn.close()
        self._n_spawned += 1
        if isinstance(process, _forkserver.ServerProcess):
            # Sent down its own pipe, so a large fn (one that captured data)
            # never passes through the server. A worker that died before
            # reading it shows as an early death in _collect.
            with suppress(OSError):
                parent_conn.send_bytes(self._payload)
        return _Worker(process, parent_conn)

    def submit(self, job_id, trial):
        worker = self._idle.pop() if self._idle else None
        if worker is not None and not _send(worker.conn, (job_id, trial)):
            # It died while idle (an OOM killer, a stray signal): not this
            # trial's fault, so it simply goes to a fresh worker.
            self._discard(worker, kill=True)
            worker = None
        if worker is None:
            worker = self._spawn()
            # A fresh worker that cannot take it died starting up: _collect
            # sees it exit unacknowledged, counts it and resubmits the trial.
            _send(worker.conn, (job_id, trial))
        worker.job = (job_id, trial)
        worker.started = worker.started_at = None
        self._busy.append(worker)

    def _discard(self, worker, *, kill):
        """Stop tracking ``worker``, killing it first if asked; return its exit code."""
        if kill:
            _hard_kill(worker.process)
        worker.process.join(timeout=5)
        exitcode = worker.process.exitcode
        _release(worker)
        if worker in self._busy:
            self._busy.remove(worker)
        return exitcode

    def _collect(self, worker):
        """Read ``worker``'s messages; return the outcomes they complete."""
        done = []
        while worker.job is not None:
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                # Its pipe closed: it is exiting. Wait for its exit code
                # rather than spin on the closed pipe until it comes.
                worker.process.join(timeout=5)
                if worker.process.exitcode is None:
                    _hard_kill(worker.process)
                    worker.process.join()
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
            done.append(
                (job_id, _synthetic_outcome("crashed", "WorkerCrashed", message, worker, pid))
            )
        return done

    def _kill_overdue(self):
        """Kill the workers of trials past timeout + grace; return their outcomes."""
        done = []
        if self._timeout is None:
            return done
        now = time.monotonic()
        for worker in list(self._busy):
            timeout = job_timeout(self._timeout, worker.job[1])
            if worker.started is not None and now - worker.started > timeout + kill_grace(timeout):
                job_id, _ = worker.job
                pid = worker.process.pid
                self._discard(worker, kill=True)
                message = (
                    f"trial did not return within its timeout of {timeout:g} s "
                    f"(+{kill_grace(timeout):g} s grace); worker process {pid} "
                    "was killed and a fresh worker takes the next trial"
                )
                done.append(
                    (job_id, _synthetic_outcome("timeout", "TimeoutError", message, worker, pid))
                )
        return done

    def wait(self):
        while self._busy:
            wake = None
            if self._timeout is not None:
                deadlines = [
                    w.started + t + kill_grace(t)
                    for w in self._busy
                    if w.started is not None
                    for t in [job_timeout(self._timeout, w.job[1])]
                ]
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
            _release(worker)
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
    whose trials use NumPy and mlpar; the default ``processes`` backend forks
    its workers from a fresh single-threaded server instead, and is safe for
    any trial.
    """

    _launcher = "fork"
