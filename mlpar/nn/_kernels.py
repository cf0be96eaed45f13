"""The numeric kernels a training step calls: plain NumPy, or timed for instrumentation.

A training step is written once, against a namespace of kernels (``k.dot``,
``k.add``, ...). A normal fit binds the namespace to the NumPy functions
themselves, so the step pays nothing for instrumentation. An instrumented fit
binds it to thin wrappers that time each call and sort it into one of three
bins, which is what lets mlpar split a step into GIL-held Python work and
GIL-free C work:

- ``gemm``: ``np.dot`` (BLAS GEMM, GEMV and dot products). ``np.dot`` releases
  the GIL for its whole BLAS call, whatever the sizes.
- ``ufunc_big``: ufunc calls (element-wise or reductions) over more than
  :data:`GIL_RELEASE_MIN_SIZE` elements. NumPy releases the GIL inside those
  loops too, so counting only GEMMs would underestimate the GIL-free share.
- everything else in the step (small ufuncs, Python overhead), reported as
  ``other_time = step_time - gemm_time - ufunc_big_time``.

The timing inflates the totals slightly: every timed call adds one
``perf_counter`` pair (``timer_overhead``), every wrapped call adds a Python
function call (``wrapper_overhead``). Both are measured at the start of an
instrumented fit and recorded so that analysis can subtract them.
"""

import time
from types import SimpleNamespace

import numpy as np

__all__ = ["GIL_RELEASE_MIN_SIZE", "KernelTimer", "PLAIN_KERNELS", "logistic", "logistic_kernel"]

# NumPy releases the GIL inside a ufunc loop when it runs over more than 500
# elements (NPY_BEGIN_THREADS_THRESHOLDED in NumPy's C sources).
GIL_RELEASE_MIN_SIZE = 500

# name -> function; "dot" is the only BLAS entry, every other one is a ufunc or
# a ufunc reduction (np.add.reduce, np.maximum.reduce, np.minimum.reduce).
_FUNCTIONS = {
    "dot": np.dot,
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "maximum": np.maximum,
    "greater": np.greater,
    "negative": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "square": np.square,
    "tanh": np.tanh,
    "logaddexp": np.logaddexp,
    "sum": np.add.reduce,
    "max": np.maximum.reduce,
    "min": np.minimum.reduce,
}

PLAIN_KERNELS = SimpleNamespace(**_FUNCTIONS)
"""The kernels of an uninstrumented step: the NumPy functions themselves."""


def logistic_kernel(k):
    """``logistic(x, out)``: ``1 / (1 + exp(-x))`` into ``out`` through the kernels ``k``.

    Four in-place ufunc calls and no temporary, so that a training step stays
    allocation-free; built from ``k``'s functions so that an instrumented step
    times and bins each of them like any other ufunc. ``out`` may be ``x``.

    This is the formula scipy.special.expit is defined by, and it is stable as it
    stands: for very negative ``x``, ``exp(-x)`` overflows to ``inf`` and
    ``1 / (1 + inf)`` is exactly 0 (the true value there is below the smallest
    normal number; scipy's expit gives 0 too); for large ``x``, ``exp(-x)``
    underflows to 0 and the result is 1. No NaN can arise from a finite ``x``.
    The only side effect is NumPy's overflow flag, which the caller silences:
    training and :func:`._engine.forward` run under ``np.errstate``, and
    :func:`logistic` sets it itself. (Splitting on the sign of ``x`` to avoid
    the overflow would need a second buffer or a mask per call.)
    """
    negative, exp, add, divide = k.negative, k.exp, k.add, k.divide

    def logistic_(x, out):
        negative(x, out=out)
        exp(out, out=out)
        add(out, 1.0, out=out)
        divide(1.0, out, out=out)
        return out

    return logistic_


_plain_logistic = logistic_kernel(PLAIN_KERNELS)


def logistic(x, out=None):
    """The logistic sigmoid ``1 / (1 + exp(-x))``, NumPy only.

    Agrees with ``scipy.special.expit`` to a few units in the last place in
    float32 and float64, saturating to exactly 0 and 1 for large ``|x|``.

    Parameters
    ----------
    x : ndarray of float
        Input.
    out : ndarray or None, default=None
        Where to write the result (may be ``x``); None allocates one like ``x``.

    Returns
    -------
    out : ndarray
    """
    if out is None:
        out = np.empty_like(x)
    # exp(-x) overflowing to inf is how large negative x reach exactly 0.
    with np.errstate(over="ignore"):
        return _plain_logistic(x, out)


# Slots of KernelTimer.acc: a flat list is the cheapest mutable accumulator to
# update from the wrappers (one index store, no attribute lookups).
_GEMM_T, _GEMM_N, _BIG_T, _BIG_N, _SMALL_N, _STEP_T, _STEP_N = range(7)
# Durations of GIL-releasing calls, in power-of-two microsecond buckets:
# bucket b counts calls of [2**(b-1), 2**b) µs (bucket 0: under 1 µs). What a
# GIL hand-off costs depends on how long the releasing call lasts (the other
# thread only gets to run, and must later be woken, if it is long enough), so
# the GIL model needs the distribution, not just the total.
N_DURATION_BUCKETS = 16


class KernelTimer:
    """Timed kernels and the accumulators they fill.

    ``timer.kernels`` has the same names as :data:`PLAIN_KERNELS`; build a step
    with it, wrap the step with :meth:`time_step`, run, then read
    :meth:`totals`.
    """

    def __init__(self):
        self.acc = [0.0, 0, 0.0, 0, 0, 0.0, 0]
        self.durations = [0] * N_DURATION_BUCKETS
        self.kernels = SimpleNamespace(
            **{
                name: (_timed_blas if name == "dot" else _timed_ufunc)(f, self.acc, self.durations)
                for name, f in _FUNCTIONS.items()
            }
        )

    def time_step(self, step):
        """Wrap a step function so that its total time is recorded too."""
        acc = self.acc
        clock = time.perf_counter

        def timed_step(*args):
            t0 = clock()
            loss = step(*args)
            acc[_STEP_T] += clock() - t0
            acc[_STEP_N] += 1
            return loss

        return timed_step

    def totals(self):
        """Accumulated times (seconds) and call counts, as a dict."""
        a = self.acc
        return {
            "n_steps": a[_STEP_N],
            "step_time": a[_STEP_T],
            "gemm_time": a[_GEMM_T],
            "gemm_calls": a[_GEMM_N],
            "ufunc_big_time": a[_BIG_T],
            "ufunc_big_calls": a[_BIG_N],
            "ufunc_small_calls": a[_SMALL_N],
            # By construction >= 0: the timed calls are disjoint intervals
            # inside the step's interval.
            "other_time": max(0.0, a[_STEP_T] - a[_GEMM_T] - a[_BIG_T]),
            "release_durations_us_log2": list(self.durations),
        }


def _timed_blas(f, acc, durations):
    clock = time.perf_counter
    last = N_DURATION_BUCKETS - 1

    def timed(a, b, out=None):
        t0 = clock()
        result = f(a, b, out=out)
        dt = clock() - t0
        acc[_GEMM_T] += dt
        acc[_GEMM_N] += 1
        durations[min(int(dt * 1e6).bit_length(), last)] += 1
        return result

    return timed


def _timed_ufunc(f, acc, durations):
    clock = time.perf_counter
    ndarray = np.ndarray
    last = N_DURATION_BUCKETS - 1

    def timed(*args, out=None, **kwargs):
        # The loop length is the first operand's size (the input of a
        # reduction, the full-size operand of a broadcast); a scalar first
        # operand (np.subtract(1, a, out=a)) means the output's size.
        first = args[0]
        size = first.size if first.__class__ is ndarray else out.size
        if size <= GIL_RELEASE_MIN_SIZE:
            acc[_SMALL_N] += 1
            return f(*args, out=out, **kwargs)
        t0 = clock()
        result = f(*args, out=out, **kwargs)
        dt = clock() - t0
        acc[_BIG_T] += dt
        acc[_BIG_N] += 1
        durations[min(int(dt * 1e6).bit_length(), last)] += 1
        return result

    return timed


def measure_timer_overhead(n=2000):
    """Median cost (seconds) of one ``perf_counter`` pair, as in the timed calls."""
    clock = time.perf_counter
    pairs = []
    for _ in range(n):
        t0 = clock()
        t1 = clock()
        pairs.append(t1 - t0)
    pairs.sort()
    return pairs[n // 2]


def measure_wrapper_overhead(n=2000, repeats=5):
    """Extra cost (seconds) of one wrapped small ufunc call over the bare call.

    Includes the timer pair of timed calls only partly (small calls skip it);
    it is the Python-side cost every wrapped call adds to ``other_time``.
    """
    a = np.zeros(1)  # 0 + 0 stays 0: no overflow however many calls
    wrapped = KernelTimer().kernels.add
    bare = np.add
    clock = time.perf_counter

    def loop(f):
        t0 = clock()
        for _ in range(n):
            f(a, a, out=a)
        return clock() - t0

    best_bare = min(loop(bare) for _ in range(repeats))
    best_wrapped = min(loop(wrapped) for _ in range(repeats))
    return max(0.0, (best_wrapped - best_bare) / n)
