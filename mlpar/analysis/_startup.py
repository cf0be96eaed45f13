"""What starting worker processes costs: the start-up ``advise`` and ``compare`` model."""

from __future__ import annotations

import time

__all__ = ["measure_process_startup", "measure_startups"]


def measure_process_startup(n_jobs, *, backend="processes"):
    """Seconds a processes sweep spends before its workers can train.

    Runs a sweep of ``n_jobs`` no-op trials on ``backend`` ("processes":
    workers forked from a pre-loaded fork server, whose own start is paid once
    per sweep process; "forked": copies of this process), each importing what
    an MLP trial needs (NumPy, mlpar's engine and data), exactly as a real
    sweep's workers do, and times it end to end. The first call in a process
    includes starting the fork server, as a first ``mlpar run`` does.
    """
    from ..sweep import sweep

    t0 = time.perf_counter()
    sweep(
        _import_trial,
        {"i": list(range(n_jobs))},
        backend=backend,
        n_jobs=n_jobs,
        blas_threads=1,
        progress=False,
    )
    return time.perf_counter() - t0


def measure_startups(n_jobs, backends):
    """Start-up seconds of each process-based backend among ``backends``."""
    return {
        b: measure_process_startup(n_jobs, backend=b)
        for b in ("processes", "forked")
        if b in backends
    }


def _import_trial(params, seed):
    import mlpar.trial  # noqa: F401  (the import is what is being timed)

    return {"ok": 1.0}
