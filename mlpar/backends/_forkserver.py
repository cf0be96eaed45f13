"""Fork servers: fresh interpreters that import what a worker needs once, then fork workers.

The processes backend starts its workers here (on POSIX systems but macOS).
A fork server is started with ``subprocess`` from the sweep's process, never
forked from it (the sweep may run threads), imports its preload list (NumPy,
threadpoolctl, the trial runner, :mod:`mlpar.trial`) and then, per request,
imports the modules fn needs and forks one worker: ready in milliseconds,
sharing those pages with the server.

Why not ``multiprocessing.get_context("forkserver")`` with
``set_forkserver_preload`` (read ``multiprocessing/forkserver.py``): that
server is one per process and global -- its preload list and environment are
fixed when it first starts and shared with any other user of the context --
while BLAS thread counts must be in the environment *before* BLAS loads, and
differ between sweeps; it re-imports the caller's ``__main__`` in every
child, so an unguarded script would re-run its sweep there; and its children
keep it alive and have it, not the sweep, as their parent, so a worker could
not notice the sweep's death. Here:

- one server per distinct environment (the sweep's ``os.environ`` with the
  BLAS thread variables), reused for the life of the sweep's process, shut
  down at its exit. threadpoolctl could raise OpenBLAS's threads after a
  load with one (checked with OpenBLAS 0.3.31), but only a server per
  environment gives every library it loads, fn's included, the environment
  a fresh worker would have. A server whose preloaded module was edited
  since is replaced, so workers never run stale code;
- ``__main__`` is never imported;
- each worker gets its own pipe, the sweep's current stdout/stderr, working
  directory, ``sys.path`` and environment, and the read end of a pipe only
  the sweep holds: EOF there means the sweep is gone, and the worker exits;
- a module that fails to import in the server is left to the worker (which
  reports why, as before); one that crashes the server or starts threads
  there is never preloaded again, and the sweep goes on.

Fork safety: the server runs no Python thread and never calls BLAS or
OpenMP. With ``blas_threads`` > 1 OpenBLAS starts an idle pool on load; it
stops it before each fork (``pthread_atfork``) and each worker starts its own.

Protocol, over a socket pair per server: the sweep sends one byte with five
file descriptors (the worker's pipe, the death pipe, stdout, stderr, the
write end of a status pipe), then a request dict through a
:class:`~multiprocessing.connection.Connection`. The server writes the
worker's pid to the status pipe (0: declined, see :func:`_serve`) and, once
it has reaped the worker, its exit code. EOF on the socket: fork no more,
exit after the last worker.
"""

import atexit
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import warnings
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for

__all__ = ["spawn", "prestart", "ServerProcess"]

# Environment variables left out of a server's identity: pytest changes this
# one for every test, and no library reads it at import time.
_VOLATILE_ENV = frozenset({"PYTEST_CURRENT_TEST"})

# Servers kept at once, one per environment; the least recently used goes first.
_MAX_SERVERS = 4

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


def _serve(fd, preload):
    """Body of a fork server: import ``preload``, then fork one worker per request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle
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
    env = request["env"]
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    os.environ.update((n, v) for n, v in env.items() if os.environ.get(n) != v)
    if "numpy.random" in sys.modules:
        # Not for mlpar, which never uses it: NumPy's legacy global generator
        # would otherwise be the same in every worker of a server, where a
        # fresh interpreter seeds it from the OS.
        sys.modules["numpy.random"].seed()
    threading.Thread(target=_watch_pipe, args=(death_fd,), daemon=True).start()
    request["target"](Connection(conn_fd))
    return 0


class _ServerLost(Exception):
    """The fork server died, or declined to fork after an import left threads."""


class ServerProcess:
    """A worker forked by a fork server: what the pool uses of a multiprocessing.Process."""

    def __init__(self, pid, status_fd):
        self.pid = pid
        self.sentinel = status_fd  # readable once the exit code is there
        self._exitcode = None

    @property
    def exitcode(self):
        self.join(0)
        return self._exitcode

    def join(self, timeout=None):
        if self._exitcode is not None or self.sentinel is None:
            return
        if wait_for([self.sentinel], timeout):
            try:
                self._exitcode = _read_signed(self.sentinel)
            except (EOFError, OSError):
                # The server died before it could reap this worker, which may
                # run on, orphaned, where no one can report its end: stop it.
                with suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._exitcode = -signal.SIGKILL

    def release(self):
        """Close the status pipe (after the worker has been joined)."""
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


def _stamp(name):
    """The (mtime, size) of module ``name``'s file as this process sees it, or None."""
    path = getattr(sys.modules.get(name), "__file__", None)
    try:
        st = os.stat(path)
    except (TypeError, OSError):
        return None
    return st.st_mtime_ns, st.st_size


def _std_fds():
    """This process's stdout and stderr descriptors (/dev/null for a closed one)."""
    fds = []
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_WRONLY)  # closed in _Server.spawn
        fds.append(fd)
    return fds


class _Server:
    """One fork server process and the modules it has imported (name -> file stamp)."""

    def __init__(self, env, preload):
        ours, theirs = socket.socketpair()
        boot = (
            f"import sys; sys.path[:] = {list(sys.path)!r}; "
            "from mlpar.backends._forkserver import _serve; "
            f"_serve({theirs.fileno()}, {list(preload)!r})"
        )
        # The interpreter flags (-X, -W, -O ...) this one runs with, as
        # multiprocessing passes them to its own fork server.
        args = [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", boot]
        with theirs:
            self.process = subprocess.Popen(
                args, env=env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
        self.socket = ours
        self.conn = Connection(os.dup(ours.fileno()))
        self.modules = {name: _stamp(name) for name in preload}

    def spawn(self, fds, request):
        """Have one worker forked; return it as a :class:`ServerProcess`."""
        status_r, status_w = os.pipe()
        try:
            try:
                socket.send_fds(self.socket, [b"F"], [*fds, status_w])
            finally:
                # Only the server may hold it now: if the server dies, EOF.
                os.close(status_w)
                for fd in fds[2:4]:
                    if fd > 2:  # a /dev/null stand-in from _std_fds
                        os.close(fd)
            self.conn.send(request)
            pid = _read_signed(status_r)
        except (EOFError, OSError):
            pid = 0
        if pid <= 0:
            os.close(status_r)
            raise _ServerLost
        return ServerProcess(pid, status_r)

    def stale(self, modules):
        """True if one of ``modules`` was edited since this server imported it."""
        for name in modules:
            then, now = self.modules.get(name), _stamp(name)
            if then is not None and now is not None and then != now:
                return True
        return False

    def close(self):
        self.socket.close()  # it forks no more and exits after its last worker
        self.conn.close()


class _Servers:
    """This process's fork servers, one per environment, kept until it exits.

    Process-wide, like multiprocessing's own fork server and loky's reusable
    executor: a server costs an interpreter start-up, which a process should
    pay once, not once per sweep.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = None

    def _own(self):
        # A process forked from this one (a forked worker, a user's fork)
        # inherits this object but must not talk to this process's servers.
        if self._owner == os.getpid():
            return
        self._owner = os.getpid()
        self._servers = {}  # key -> _Server, least recently used first
        self._retired = []  # Popen of servers winding down, reaped as they end
        self._unsafe = set()  # modules that crashed a server or left threads there
        # Only this process holds the write end (not inheritable, never sent).
        self._death_r, self._death_w = os.pipe()
        atexit.register(self.shutdown)

    def spawn(self, child_conn, *, env, preload, modules, target):
        """Fork a worker that runs ``target(conn)`` on ``child_conn``; return it."""
        with self._lock:
            self._own()
            self._retired = [p for p in self._retired if p.poll() is None]
            identity = sorted(i for i in env.items() if i[0] not in _VOLATILE_ENV)
            key = (sys.executable, tuple(identity))
            request = {"cwd": os.getcwd(), "sys_path": list(sys.path), "env": env, "target": target}
            for _ in range(3):
                wanted = [name for name in (*preload, *modules) if name not in self._unsafe]
                server = self._server(key, env, [n for n in preload if n in wanted], wanted)
                new = [name for name in wanted if name not in server.modules]
                fds = [child_conn.fileno(), self._death_r, *_std_fds()]
                try:
                    process = server.spawn(fds, {**request, "modules": new})
                except _ServerLost:
                    # Blame what it was importing, or at start-up all it had:
                    # the next server preloads less; workers import the rest.
                    self._unsafe.update(new or server.modules)
                    self._retire(key)
                    continue
                server.modules.update((name, _stamp(name)) for name in new)
                return process
        raise RuntimeError(
            "the processes backend could not keep a fork server running for its "
            f"workers (three died in a row, the last with exit code {server.process.poll()}); "
            "check that 'import mlpar' works in a fresh Python process, or use backend='forked'"
        )

    def prestart(self, env, preload):
        """Start the server for ``env`` now, without waiting for it (its imports overlap ours)."""
        with self._lock:
            self._own()
            identity = sorted(i for i in env.items() if i[0] not in _VOLATILE_ENV)
            key = (sys.executable, tuple(identity))
            if key not in self._servers:
                wanted = [name for name in preload if name not in self._unsafe]
                self._server(key, env, wanted, wanted)

    def _server(self, key, env, preload, modules):
        """The live, up-to-date server for ``key``, started with ``preload`` if need be."""
        server = self._servers.get(key)
        if server is not None and (server.process.poll() is not None or server.stale(modules)):
            self._retire(key)
            server = None
        if server is None:
            while len(self._servers) >= _MAX_SERVERS:
                self._retire(next(iter(self._servers)))
            server = _Server(env, preload)
        else:
            del self._servers[key]  # re-inserted below, as the most recently used
        self._servers[key] = server
        return server

    def _retire(self, key):
        server = self._servers.pop(key)
        server.close()
        self._retired.append(server.process)

    def shutdown(self):
        """Close every server of this process (at exit)."""
        with self._lock:
            if self._owner != os.getpid():
                return
            for key in list(self._servers):
                self._retire(key)
            # Not waited for: each ends on its own once its socket closes (a
            # worker still running ends with this process, through the death
            # pipe), and init reaps what this process leaves behind.
            for process in self._retired:
                process.poll()


_SERVERS = _Servers()
spawn = _SERVERS.spawn
prestart = _SERVERS.prestart
