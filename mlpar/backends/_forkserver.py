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
- ``mlpar run`` boots one interpreter ahead (:func:`boot`), before its
  config is read: it waits there, imports nothing, and becomes the first
  server asked for when only variables read at library load differ from
  the environment it booted in;
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
import subprocess
import sys
import threading
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for

from ._forkserver_body import _read_signed

__all__ = ["spawn", "prestart", "boot", "ServerProcess"]

# Environment variables left out of a server's identity: pytest changes this
# one for every test, and no library reads it at import time.
_VOLATILE_ENV = frozenset({"PYTEST_CURRENT_TEST"})

# Environment variables a server booted ahead has read before it knows its
# environment: CPython's, the dynamic linker's (glibc, macOS).
_READ_AT_BOOT = ("PYTHON", "LD_", "DYLD_")

# Servers kept at once, one per environment; the least recently used goes first.
_MAX_SERVERS = 4


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
    """One fork server process and the modules it has imported (name -> file stamp).

    ``preload`` None boots the interpreter only: :meth:`claim` gives it its
    environment and preload list later.
    """

    def __init__(self, env, preload):
        ours, theirs = socket.socketpair()
        boot = (
            f"import sys; sys.path[:] = {list(sys.path)!r}; "
            "from mlpar.backends._forkserver_body import _serve; "
            f"_serve({theirs.fileno()}, {None if preload is None else list(preload)!r})"
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
        self.env = env
        self.modules = {} if preload is None else {name: _stamp(name) for name in preload}

    def can_take(self, env):
        """True if a server booted ahead in ``self.env`` may serve ``env``.

        Only variables read once a library loads may differ (the BLAS thread
        counts, KMP_*): not those the interpreter or the dynamic linker read
        at start-up, which the boot has already read.
        """
        differ = {n for n in env.keys() | self.env.keys() if env.get(n) != self.env.get(n)}
        return not any(n.startswith(_READ_AT_BOOT) for n in differ - _VOLATILE_ENV)

    def claim(self, env, preload):
        """Give a server booted ahead its environment and preload list."""
        self.conn.send({"env": env, "preload": list(preload)})
        self.env = env
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
        self._ahead = None  # a server booted ahead, for the next environment asked for
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

    def boot(self):
        """Start a server's interpreter now, before the sweep's environment is known.

        ``mlpar run`` calls this first thing: the interpreter's start-up (site,
        the install's path hooks) overlaps the command's own imports and the
        reading of its config, and the next server asked for, if its
        environment allows (:meth:`_Server.can_take`), is this one. Unused, it
        exits with this process.
        """
        with self._lock:
            self._own()
            if self._ahead is None and not self._servers:
                self._ahead = _Server(dict(os.environ), None)

    def _take_ahead(self, env, preload):
        """The server booted ahead, given ``env`` and ``preload``; None if there is none to take."""
        server, self._ahead = self._ahead, None
        if server is None:
            return None
        if server.process.poll() is None and server.can_take(env):
            try:
                server.claim(env, preload)
                return server
            except OSError:  # it died since: start a fresh one
                pass
        server.close()
        self._retired.append(server.process)
        return None

    def _server(self, key, env, preload, modules):
        """The live, up-to-date server for ``key``, started with ``preload`` if need be."""
        server = self._servers.get(key)
        if server is not None and (server.process.poll() is not None or server.stale(modules)):
            self._retire(key)
            server = None
        if server is None:
            while len(self._servers) >= _MAX_SERVERS:
                self._retire(next(iter(self._servers)))
            server = self._take_ahead(env, preload) or _Server(env, preload)
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
            self._take_ahead({}, ())  # {} never fits: closed, like the others
            # Not waited for: each ends on its own once its socket closes (a
            # worker still running ends with this process, through the death
            # pipe), and init reaps what this process leaves behind.
            for process in self._retired:
                process.poll()


_SERVERS = _Servers()
spawn = _SERVERS.spawn
prestart = _SERVERS.prestart
boot = _SERVERS.boot
