"""Backends inside the sweep's own process: serial and threads."""

import queue
import threading
import traceback
from collections import deque

from ._base import Backend, drain

__all__ = ["SerialBackend", "ThreadBackend"]


class SerialBackend(Backend):
    """Run trials one after another in the calling thread.

    The reference every other backend is compared with, and the easiest to
    debug: ``fn`` runs in the caller's thread, so breakpoints and Ctrl-C work
    as usual. Timeouts are cooperative only.
    """

    default_n_jobs = 1

    def open(self):
        super().open()
        if self.n_jobs != 1:
            raise ValueError(
                f"backend 'serial' runs one trial at a time; n_jobs must be 1 or "
                f"None, got {self.requested_n_jobs!r}; use backend='threads' or "
                "'processes' to run trials in parallel"
            )

    def start(self, runner, *, blas_threads):
        self._runner = runner
        self._queue = deque()

    def submit(self, job_id, trial):
        self._queue.append((job_id, trial))

    def wait(self):
        job_id, trial = self._queue.popleft()
        return [(job_id, self._runner(trial))]

    def close(self, *, kill=False):
        self._queue = deque()


class ThreadBackend(Backend):
    """Run trials on a pool of threads in this process.

    Threads share memory and start instantly, and NumPy releases the GIL
    inside BLAS calls, so trials dominated by large matrix products overlap;
    trials dominated by Python code serialize on the GIL.

    A thread cannot be killed: a trial past its ``timeout`` is marked
    ``timeout`` only when it finally returns, and the sweep waits for it. The
    threads are daemons, so an interrupted sweep (Ctrl-C) does not wait for
    running trials and the interpreter can still exit.
    """

    def start(self, runner, *, blas_threads):
        self._runner = runner
        self._inbox = queue.SimpleQueue()
        self._outbox = queue.SimpleQueue()
        self._threads = []
        for i in range(self.n_jobs):
            # Our own small pool rather than ThreadPoolExecutor: its threads
            # are joined at interpreter exit, so one hung trial would keep a
            # Ctrl-C'd program alive forever.
            thread = threading.Thread(target=self._work, name=f"mlpar-trial-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self):
        """Thread body: run trials from the inbox until told to stop."""
        while True:
            item = self._inbox.get()
            if item is None:
                return
            job_id, trial = item
            try:
                outcome = self._runner(trial)
            except BaseException as exc:  # pragma: no cover - TrialRunner catches fn's errors
                outcome = exc, traceback.format_exc()
            self._outbox.put((job_id, outcome))

    def submit(self, job_id, trial):
        self._inbox.put((job_id, trial))

    def wait(self):
        done = drain(self._outbox, timeout=None)
        for _, outcome in done:
            if isinstance(outcome, tuple):
                # The runner itself broke (a bug, not a trial failure): surface it.
                raise RuntimeError(f"trial runner failed in a worker thread:\n{outcome[1]}")
        return done

    def close(self, *, kill=False):
        threads = getattr(self, "_threads", [])  # close() may follow a failed start()
        for _ in threads:
            self._inbox.put(None)
        if not kill:
            for thread in threads:
                thread.join()
        self._threads = []
