"""Named backends that run a sweep's trials: a small registry.

``serial``, ``threads``, ``processes`` and ``dask`` are built in; a new
backend is a :class:`Backend` subclass (or any factory returning one)
registered under a name with :func:`register_backend`. The Dask backend is
imported only when asked for, so Dask stays an optional extra.
"""

import os
import threading

from ._base import Backend, check_picklable, effective_n_jobs
from ._local import SerialBackend, ThreadBackend

__all__ = [
    "Backend",
    "SerialBackend",
    "ThreadBackend",
    "register_backend",
    "available_backends",
    "make_backend",
    "check_picklable",
    "effective_n_jobs",
    "boot_ahead",
    "prestart",
]


def _serial(**kwargs):
    return SerialBackend(**kwargs)


def _threads(**kwargs):
    from ._local import ThreadBackend

    return ThreadBackend(**kwargs)


def _processes(**kwargs):
    from ._process import ProcessBackend

    return ProcessBackend(**kwargs)


def _forked(**kwargs):
    from ._process import ForkProcessBackend

    return ForkProcessBackend(**kwargs)


def _dask(**kwargs):
    # Imported on demand: raises ImportError with the install hint when
    # dask.distributed is missing, and costs nothing otherwise.
    from ._dask import DaskBackend

    return DaskBackend(**kwargs)


# Guarded by a lock: register_backend may be called from any thread, and on
# a free-threaded build dict updates racing with reads are not safe to assume.
_LOCK = threading.Lock()
_REGISTRY = {
    "serial": _serial,
    "threads": _threads,
    "processes": _processes,
    "dask": _dask,
}
if hasattr(os, "fork"):
    # Worker processes started by fork(): no interpreter start-up (see
    # ForkProcessBackend for when that is safe). Not on Windows.
    _REGISTRY["forked"] = _forked


def register_backend(name, factory):
    """Register a backend under ``name``, replacing any backend of that name.

    Parameters
    ----------
    name : str
        The name passed as ``sweep(..., backend=name)``.
    factory : callable
        ``factory(*, n_jobs, address) -> Backend``; a :class:`Backend`
        subclass works as is.

    Examples
    --------
    >>> from mlpar.backends import register_backend, available_backends
    >>> from mlpar.backends import ThreadBackend
    >>> class FourThreads(ThreadBackend):
    ...     default_n_jobs = 4
    >>> register_backend("four-threads", FourThreads)
    >>> "four-threads" in available_backends()
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"backend name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"backend factory must be callable, got {type(factory).__name__}")
    with _LOCK:
        _REGISTRY[name] = factory


def available_backends():
    """Return the registered backend names, sorted.

    Returns
    -------
    names : list of str
    """
    with _LOCK:
        return sorted(_REGISTRY)


def make_backend(name, *, n_jobs=None, address=None):
    """Return a new, unopened backend registered under ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`available_backends`.
    n_jobs : int, default=None
        Trials run at once; None is 1 for ``serial`` and all cores otherwise.
    address : str or distributed.Client, default=None
        Dask scheduler to use; None starts a private local cluster.

    Returns
    -------
    backend : Backend

    Raises
    ------
    ValueError
        If no backend has that name.
    ImportError
        If the backend needs an optional dependency that is not installed.
    """
    with _LOCK:
        factory = _REGISTRY.get(name)
        names = sorted(_REGISTRY)
    if factory is None:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(names)}")
    backend = factory(n_jobs=n_jobs, address=address)
    if not isinstance(backend, Backend):
        raise TypeError(
            f"the factory registered for backend {name!r} returned "
            f"{type(backend).__name__}, not a mlpar.backends.Backend"
        )
    backend._registered_name = name
    return backend


def boot_ahead():
    """Boot a fork server's interpreter now, before the sweep's settings are read.

    ``mlpar run`` calls this first: the server's start-up overlaps the
    command's imports, and :func:`prestart` then takes it for the sweep's
    environment. A no-op where ``processes`` starts no fork server; unused,
    the interpreter exits with this process.
    """
    from ._process import ProcessBackend

    if ProcessBackend._launcher == "forkserver":
        from . import _forkserver

        _forkserver.boot()


def prestart(name, *, n_jobs=None, blas_threads=None):
    """Start, in the background, what backend ``name``'s first trial will wait for.

    A sweep about to run on ``processes`` calls this as early as it can: the
    fork server then imports NumPy and the engine while this process goes on
    preparing the run. ``blas_threads`` None means the sweep's default,
    ``cores // n_jobs``. Unknown names, values that are not what the sweep
    takes and backends with nothing to start are ignored: the sweep itself
    reports any error.
    """
    if not isinstance(name, str) or not (
        blas_threads is None or (type(blas_threads) is int and blas_threads > 0)
    ):
        return
    # Importing joblib (scikit-learn, a user's code) sets KMP_INIT_AT_FORK and
    # importing threadpoolctl (the sweep's runner) sets KMP_DUPLICATE_LIB_OK in
    # os.environ, which is part of the environment a fork server is kept for.
    # Set both now, as those imports would: else the server started here is for
    # another environment than the sweep's, and the sweep starts a second one.
    os.environ.setdefault("KMP_INIT_AT_FORK", "FALSE")
    os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "True")
    try:
        backend = make_backend(name, n_jobs=n_jobs)
    except (ValueError, TypeError, ImportError):
        return
    if blas_threads is None:
        from ..environment import cpu_count

        # The sweep's rule (search.resolve_blas_threads) on the n_jobs that
        # open() will resolve: until then backend.n_jobs is None.
        n = effective_n_jobs(
            backend.requested_n_jobs, default=effective_n_jobs(backend.default_n_jobs, default=1)
        )
        blas_threads = max(1, cpu_count() // n)
    backend.prestart(blas_threads=int(blas_threads))
