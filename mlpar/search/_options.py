"""The sweep's options, checked, its BLAS budget, and its progress bar."""

import numbers
import sys
import warnings

__all__ = ["Progress", "check_options", "resolve_blas_threads"]


class Progress:
    """A tqdm bar on stderr: finished trials, failures, running trials, ETA."""

    def __init__(self, enabled, *, total, initial):
        if enabled is None:
            isatty = getattr(sys.stderr, "isatty", None)
            enabled = bool(isatty and isatty())
        self._bar = None
        self._failed = 0
        if enabled and (total is None or total > initial):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="trial",
                desc="sweep",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, *, finished=None, running=0):
        if self._bar is None:
            return
        if finished is not None and finished.status != "ok":
            self._failed += 1
        self._bar.set_postfix(failed=self._failed, running=running, refresh=False)
        self._bar.update(0 if finished is None else 1)

    def close(self):
        if self._bar is not None:
            self._bar.close()


def check_options(fn, *, timeout, retries, error_score, blas_threads, journal, resume, progress):
    """Raise TypeError/ValueError for malformed sweep options."""
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(params, seed), got {type(fn).__name__}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if error_score != "raise" and (
        isinstance(error_score, bool) or not isinstance(error_score, numbers.Real)
    ):
        raise ValueError(f"error_score must be 'raise' or a number, got {error_score!r}")
    if blas_threads is not None and (
        isinstance(blas_threads, bool)
        or not isinstance(blas_threads, numbers.Integral)
        or blas_threads < 1
    ):
        raise ValueError(f"blas_threads must be a positive integer or None, got {blas_threads!r}")
    if resume and journal is None:
        raise ValueError("resume=True needs the journal to resume: pass journal=<path>")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")


def resolve_blas_threads(blas_threads, backend):
    """Return the BLAS threads per trial, warning when the budget oversubscribes."""
    from ..environment import cpu_count  # joblib's rule, without its ~0.1 s import

    cores = cpu_count()
    if blas_threads is None:
        return max(1, cores // backend.n_jobs)
    local = getattr(backend, "address", None) is None
    if local and backend.n_jobs * blas_threads > cores:
        warnings.warn(
            f"n_jobs x blas_threads = {backend.n_jobs} x {blas_threads} exceeds the "
            f"{cores} available cores; trials will compete for CPU and timings will "
            "not compare",
            RuntimeWarning,
            stacklevel=5,
        )
    return int(blas_threads)
