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
from scipy.special import expit

__all__ = ["GIL_RELEASE_MIN_SIZE", "KernelTimer", "PLAIN_KERNELS"]

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
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "square": np.square,
    "tanh": np.tanh,
    "expit": expit,
    "logaddexp": np.logaddexp,
    "sum": np.add.reduce,
    "max": np.maximum.reduce,
    "min": np.minimum.reduce,
}

PLAIN_KERNELS = SimpleNamespace(**_FUNCTIONS)
"""The kernels of an uninstrumented step: the NumPy functions themselves."""

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
                name: (_timed_blas if name == "dot" else _timed_ufunc)(f, self.acc,
                                                                     self.durations)
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
