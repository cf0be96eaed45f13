"""What a worker process runs: serve trials from the sweep over its own pipe.

Three entry points, one per way a worker starts (see
:mod:`mlpar.backends._process`): from loky's launcher, by ``fork()`` of the
sweep, and from a fork server. Each ends in :func:`_serve_trials`.
"""

import os
import pickle
import signal
import threading
import time

__all__ = []


def _watch_parent(parent_pid):
    """Exit this worker if the sweep's process dies, so no trial is orphaned."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _serve_trials(conn, payload):
    """Load the runner from ``payload``, then run the trials sent down ``conn``."""
    # Ctrl-C in a terminal reaches the whole process group; the sweep's
    # process decides what happens and kills its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # Bytes the parent sweep pickled for this worker, passed in memory
        # (the process launcher's arguments or the worker's own pipe), never
        # read from a file.
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


def _worker_main(conn, payload, parent_pid):
    """Body of a loky-started worker: watch the sweep, then serve trials."""
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    _serve_trials(conn, payload)


def _forked_main(conn, payload, parent_pid, env):
    """Body of a forked worker: its thread settings first, then as any worker."""
    os.environ.update(env)  # for libraries first loaded in the worker
    _worker_main(conn, payload, parent_pid)


def _forkserver_main(conn):
    """Body of a worker from a fork server (which watches the sweep): payload first."""
    try:
        payload = conn.recv_bytes()
    except (EOFError, OSError):
        return
    _serve_trials(conn, payload)
