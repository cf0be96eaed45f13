"""What runs inside a fork server, and in the workers it forks.

The design, the protocol and why a server of mlpar's own are in
:mod:`mlpar.backends._forkserver`, which starts servers with
``_serve(fd, preload)`` and reads what they write with :func:`_read_signed`.
This module imports nothing of mlpar: a server's imports are its preload
list's.
"""

import os
import signal
import socket
import struct
import sys
import threading
import warnings
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for

_SIGNED = struct.Struct("q")


def _write_signed(fd, n):
    with suppress(OSError):  # the sweep stopped listening: nothing to tell
        os.write(fd, _SIGNED.pack(n))


def _read_signed(fd):
    data = b""
    while len(data) < _SIGNED.size:
        chunk = os.read(fd, _SIGNED.size - len(data))
        if not chunk:
            raise EOFError("the fork server closed the status pipe")
        data += chunk
    return _SIGNED.unpack(data)[0]


def _count_threads():
    """Threads of this process, native ones included where /proc tells."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _import_quietly(names):
    """Import what imports; a worker imports the rest itself, and reports why not."""
    for name in names:
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 -- SystemExit or worse from a user module
            pass


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()


def _set_environ(env):
    """Make ``os.environ`` exactly ``env``."""
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    os.environ.update((n, v) for n, v in env.items() if os.environ.get(n) != v)


def _serve(fd, preload):
    """Body of a fork server: import ``preload``, then fork one worker per request.

    ``preload`` None: a server booted ahead (:func:`boot`) first waits for
    its environment and preload list; EOF instead means it was never needed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle
    if preload is None:
        with Connection(os.dup(fd)) as first:
            try:
                init = first.recv()
            except (EOFError, OSError):
                return
        _set_environ(init["env"])
        preload = init["preload"]
    _import_quietly(preload)
    baseline = _count_threads()  # 1, or OpenBLAS's idle pool if blas_threads > 1
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the wait below
    sock = socket.socket(fileno=fd)
    conn = Connection(os.dup(fd))
    children = {}  # pid -> status fd
    while sock is not None or children:
        ready = wait_for([sig_r] if sock is None else [sock, sig_r])
        if sig_r in ready:
            with suppress(BlockingIOError):
                os.read(sig_r, 4096)
            _reap(children)
        if sock is None or sock not in ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1, 8)
            if not msg:
                raise EOFError
            # From the sweep that started this server, over a socket pair
            # only the two of them hold.
            request = conn.recv()
        except (EOFError, OSError):
            sock.close()
            conn.close()
            sock = None
            continue
        conn_fd, death_fd, out_fd, err_fd, status_fd = fds
        sys.path[:] = request["sys_path"]
        _import_quietly(request["modules"])
        if _count_threads() > baseline:
            # A module started threads: forking now is what this server exists
            # to avoid. It forks no more; the sweep starts a clean one.
            _write_signed(status_fd, 0)
            for f in fds:
                os.close(f)
            sock.close()
            conn.close()
            sock = None
            continue
        _flush_std()  # or every worker prints the server's buffered output again
        with warnings.catch_warnings():
            # Python >= 3.12 warns of fork() with threads running; the only
            # ones here are OpenBLAS's, which it stops across fork() itself.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for f in (sig_r, sig_w, status_fd, *children.values()):
                    os.close(f)
                sock.close()
                conn.close()
                code = _child(conn_fd, death_fd, out_fd, err_fd, request)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                pass  # the sweep closed this worker's pipe (Ctrl-C, a kill): nothing to say
            except BaseException:  # noqa: BLE001 -- say why before the exit code does
                sys.excepthook(*sys.exc_info())
            finally:
                _flush_std()
                os._exit(code)
        _write_signed(status_fd, pid)
        children[pid] = status_fd
        for f in (conn_fd, death_fd, out_fd, err_fd):
            os.close(f)


def _reap(children):
    """Send the exit code of each finished child to its sweep."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            _write_signed(fd, os.waitstatus_to_exitcode(status))
            os.close(fd)


def _watch_pipe(fd):
    """Exit this worker once ``fd`` reads EOF: the sweep, its only writer, is gone."""
    with suppress(OSError):
        while os.read(fd, 1):
            pass
    os._exit(1)


def _child(conn_fd, death_fd, out_fd, err_fd, request):
    """Body of a forked worker: take on the sweep's state, then run the target."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # The sweep's stdout and stderr as they are now, not as they were when
    # the server started (pytest's capture, a redirected CLI).
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    with suppress(OSError):
        os.chdir(request["cwd"])
    _set_environ(request["env"])
    if "numpy.random" in sys.modules:
        # Not for mlpar, which never uses it: NumPy's legacy global generator
        # would otherwise be the same in every worker of a server, where a
        # fresh interpreter seeds it from the OS.
        sys.modules["numpy.random"].seed()
    threading.Thread(target=_watch_pipe, args=(death_fd,), daemon=True).start()
    request["target"](Connection(conn_fd))
    return 0
