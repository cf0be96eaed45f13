"""This machine's GIL constants, measured by three small probes in interleaved rounds.

The hand-off simulation (:mod:`._handoff_sim`) needs, besides a workload's
own segments, four numbers that belong to the machine, not the workload:

- ``wake_s``: how long a thread blocked on the GIL takes to run again once
  the holder releases it (a futex wake-up, an inter-processor interrupt, in a
  VM a virtual CPU coming out of halt). Measured directly: one thread spins in
  Python while the other blocks, then sleeps (a release); the blocked thread
  timestamps its first Python instruction.
- ``release_cost_s``: what a release costs the releaser while another thread
  is blocked on the GIL (signalling it, the GIL's mutex and cache lines moving
  between cores). Measured on two threads whose loop is three small NumPy
  calls (GIL held) and one small GEMM that releases the GIL for well under a
  microsecond, the most common release of a narrow network's step (a
  ``(32, 64) x (64, 8)`` product): the waiter, slower to wake than that,
  almost never gets in, so the pair runs at ``T / (T + c)`` of one thread
  alone, ``T`` the loop's serial time per release. (A release with no work at
  all, a 2x2 product, measures about half of that on the development machine
  and underpredicts what narrow steps lose.)
- ``kernel_contention``: how much two kernels running at once slow each
  other (memory bandwidth, shared cache, a virtual CPU's sibling): two
  threads of long GEMMs (the GIL almost never wanted) against one.
- ``switch_s``: ``sys.getswitchinterval()``.

A shared machine is noisy, so every probe runs in ``rounds`` interleaved
rounds (wake, release, contention, wake, ...); the constants are the medians
and the rounds are kept, so that a prediction can carry the band the rounds
give.
"""

from __future__ import annotations

import functools
import math
import statistics
import sys
import threading
import time

import numpy as np

__all__ = ["measure_gil_machine", "ROUNDS"]

ROUNDS = 5


def _wake_samples(n=16, hold_s=150e-6, sleep_s=400e-6):
    """Seconds from a GIL release to the first Python instruction of a blocked thread."""
    clock = time.perf_counter
    state = {"armed": False, "done": False, "got": None}

    def blocked():
        while not state["done"]:
            if state["armed"]:
                state["got"] = clock()
                state["armed"] = False

    old = sys.getswitchinterval()
    # A short interval so that the main thread gets the GIL back from the
    # spinning thread quickly after each sample (a forced switch).
    sys.setswitchinterval(5e-4)
    other = threading.Thread(target=blocked, daemon=True)
    out = []
    try:
        other.start()
        for _ in range(n + 2):
            end = clock() + hold_s  # hold the GIL: the other thread blocks on it
            while clock() < end:
                pass
            state["got"], state["armed"] = None, True
            t0 = clock()
            time.sleep(sleep_s)  # releases the GIL
            got = state["got"]
            state["armed"] = False
            if got is not None and got > t0:
                out.append(got - t0)
    finally:
        state["done"] = True
        other.join()
        sys.setswitchinterval(old)
    return out[2:] or out  # the first samples include the thread's start


def _release_loop(small, a, b, out, iters, ncalls):
    add, dot = np.add, np.dot
    for _ in range(iters):
        for _ in range(ncalls):
            add(small, small, out=small)  # GIL held: 64 elements, under 500
        dot(a, b, out=out)  # releases the GIL for a fraction of a microsecond


def _release_cost(budget_s=0.1, ncalls=3):
    """Seconds a release costs when another thread is blocked on the GIL."""
    bufs = [
        (
            np.zeros((8, 8), np.float32),
            np.ones((32, 64), np.float32),
            np.ones((64, 8), np.float32),
            np.empty((32, 8), np.float32),
        )
        for _ in range(2)
    ]
    clock = time.perf_counter
    t0 = clock()
    _release_loop(*bufs[0], 500, ncalls)
    iters = max(500, int(budget_s / max((clock() - t0) / 500, 1e-8)))
    t0 = clock()
    for b in bufs:
        _release_loop(*b, iters, ncalls)
    serial = (clock() - t0) / (2 * iters)  # seconds per release, one thread alone
    threads = [threading.Thread(target=_release_loop, args=(*b, iters, ncalls)) for b in bufs]
    t0 = clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    speedup = 2 * iters * serial / (clock() - t0)
    return max(0.0, serial * (1.0 / speedup - 1.0))


def _gemm_loop(a, out, iters):
    for _ in range(iters):
        np.dot(a, a, out=out)


def _contention(budget_s=0.03, n=256):
    """Slow-down of each of two long GEMMs running at once, minus one (>= 0)."""
    bufs = [(np.ones((n, n), np.float32), np.empty((n, n), np.float32)) for _ in range(2)]
    clock = time.perf_counter
    t0 = clock()
    _gemm_loop(*bufs[0], 3)
    iters = max(5, int(budget_s / max((clock() - t0) / 3, 1e-7)))
    t0 = clock()
    for b in bufs:
        _gemm_loop(*b, iters)
    serial = clock() - t0
    threads = [threading.Thread(target=_gemm_loop, args=(*b, iters)) for b in bufs]
    t0 = clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    speedup = serial / (clock() - t0)
    return min(1.0, max(0.0, 2.0 / speedup - 1.0))


@functools.lru_cache(maxsize=2)
def _measure(rounds):
    from threadpoolctl import threadpool_limits

    per_round, samples = [], []
    with threadpool_limits(1):
        _release_cost(budget_s=0.005)  # warm up the code paths and BLAS
        for _ in range(rounds):
            wake = _wake_samples()
            cost = _release_cost()
            contention = _contention()
            samples += wake
            per_round.append(
                {
                    "wake_s": statistics.median(wake) if wake else math.nan,
                    "release_cost_s": cost,
                    "kernel_contention": contention,
                }
            )

    def median(key):
        xs = [r[key] for r in per_round if math.isfinite(r[key])]
        return statistics.median(xs) if xs else 0.0

    return {
        "wake_s": median("wake_s"),
        "wake_samples_s": sorted(samples),
        "release_cost_s": median("release_cost_s"),
        "kernel_contention": median("kernel_contention"),
        "switch_s": sys.getswitchinterval(),
        "rounds": per_round,
    }


def measure_gil_machine(rounds=ROUNDS):
    """This machine's GIL constants (about 0.4 s a round; measured once per process).

    Returns
    -------
    dict
        ``wake_s`` (median), ``wake_samples_s`` (all samples, sorted),
        ``release_cost_s``, ``kernel_contention``, ``switch_s`` and
        ``rounds``: each round's own ``wake_s``, ``release_cost_s`` and
        ``kernel_contention``, for the prediction's band.
    """
    m = _measure(int(rounds))
    return {
        **m,
        "wake_samples_s": list(m["wake_samples_s"]),
        "rounds": [dict(r) for r in m["rounds"]],
    }
