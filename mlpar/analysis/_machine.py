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
  alone, ``T`` the loop's serial time per release; one thread alone and the
  pair alternate every few milliseconds within one run. (A release with no
  work at all, a 2x2 product, measures about half of that and underpredicts
  what narrow steps lose.)
- ``kernel_contention``: how much two kernels running at once slow each
  other (memory bandwidth, shared cache, a virtual CPU's sibling): two
  threads of long GEMMs (the GIL almost never wanted) against one, call by
  call.
- ``switch_s``: ``sys.getswitchinterval()``.

A shared machine is noisy: a first version read a contention of 0.26 in
one process and 0.84 in the next. Three causes, each fixed here:

1. Where the scheduler puts two new threads: on one CPU they take turns, on
   two they overlap only once the load balancer has moved one. The pair
   probes pin their threads to two CPUs and start them at a barrier.
2. Preemption by other processes (2 cores, another engineer's tests): a
   preempted GEMM call (CPU time short of wall time), a release phase in
   which the threads queued for a CPU, a wake-up over 3x the median, each
   measures the machine's other load and is left out.
3. Too few samples, too much drift between them, means over the tail: the
   release probe alternates every few ms (200 samples), every sample of
   every round is pooled (wake-ups: median; release cost: interquartile
   mean, spread widely in one mode; contention: median of its usual state),
   and a busy machine that spoils samples gets up to 2 s more.

The rounds interleave (wake, release, contention, ...); each round's own
values give the prediction's band; ``other_load``, the rest of the load.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import os
import statistics
import sys
import threading
import time

import numpy as np

__all__ = ["measure_gil_machine", "ROUNDS"]

ROUNDS = 5
_WAKE_TAIL = 3.0  # wake-up samples over this many medians are preemptions
_QUEUED = 0.02  # share of a contended phase the probe's threads may queue for a CPU
_ENOUGH = {"release": 50, "contention": 10}  # clean samples wanted, at least
_EXTRA_S = 2.0  # seconds the probe may go on for them on a busy machine


def _cpus():
    """The CPUs this process may run on (empty where affinity is not available)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return []


def _pin(cpu):
    """Pin the calling thread (pid 0 is the caller, not the process) to a CPU or a set."""
    if cpu is not None and cpu != set():
        with contextlib.suppress(OSError):  # a CPU taken away meanwhile
            os.sched_setaffinity(0, cpu if isinstance(cpu, set) else {cpu})


def _pair(body, args, cpus):
    """Run ``body(*args[i])`` on two threads pinned to two CPUs, started together.

    Two busy worker threads on two cores are on two CPUs; so are the probes
    (left to the scheduler, two new threads may share one for milliseconds).
    """
    start = threading.Barrier(2)
    out = [None, None]

    def run(i):
        _pin(cpus[i] if len(cpus) > 1 else None)
        start.wait()
        out[i] = body(*args[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _solo(body, args, cpus):
    """``body(*args)`` alone, on a thread pinned like :func:`_pair`'s first."""
    out = []
    t = threading.Thread(
        target=lambda: (_pin(cpus[0] if cpus[1:] else None), out.append(body(*args)))
    )
    t.start()
    t.join()
    return out[0]


def _wake_samples(cpus, n=24, hold_s=150e-6, sleep_s=400e-6):
    """Seconds from a GIL release to the first Python instruction of a blocked thread.

    The blocked thread runs on another CPU than the releaser, as a worker
    thread's GIL arrives from the other core: a wake-up across CPUs.
    """
    clock = time.perf_counter
    state = {"armed": False, "done": False, "got": None}

    def blocked():
        _pin(cpus[1] if len(cpus) > 1 else None)
        while not state["done"]:
            if state["armed"]:
                state["got"] = clock()
                state["armed"] = False

    old, mask = sys.getswitchinterval(), set(cpus)
    # A short interval so that the main thread gets the GIL back from the
    # spinning thread quickly after each sample (a forced switch).
    sys.setswitchinterval(5e-4)
    other = threading.Thread(target=blocked, daemon=True)
    out = []
    try:
        _pin(cpus[0] if len(cpus) > 1 else None)
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
        _pin(mask)
    return out[2:] or out  # the first samples include the thread's start


def _release_loop(small, a, b, out, stop):
    """The release probe's loop until ``stop()``: the clock before every iteration."""
    add, dot, clock = np.add, np.dot, time.perf_counter
    marks = [clock()]
    append = marks.append
    while not stop():
        add(small, small, out=small)  # GIL held: 64 elements, under 500
        add(small, small, out=small)
        add(small, small, out=small)
        dot(a, b, out=out)  # releases the GIL for a fraction of a microsecond
        append(clock())
    return marks


def _release_bufs():
    return (
        np.zeros((8, 8), np.float32),
        np.ones((32, 64), np.float32),
        np.ones((64, 8), np.float32),
        np.empty((32, 8), np.float32),
    )


def _per_release(runs, lo, hi, gap_s=200e-6):
    """Seconds per iteration (one release) of ``runs`` together over ``(lo, hi]``.

    The time between one iteration end (of either thread) and the next is
    what an iteration cost, releases and hand-offs included. A gap over
    ``gap_s`` is a preemption (milliseconds), not a release's cost
    (microseconds), and is left out. Not a median: the cost is in the tail
    (a waking waiter stalls the holder now and then), not the typical one.
    """
    ends = []
    for marks in runs:
        ends += marks[bisect.bisect_right(marks, lo) : bisect.bisect_right(marks, hi)]
    ends.sort()
    steps = [b - a for a, b in zip(ends, ends[1:]) if b - a <= gap_s]
    return statistics.fmean(steps) if len(steps) >= 50 else math.nan


def _queued_s(tids):
    """Seconds the threads ``tids`` have waited, runnable, for a CPU (schedstat; or 0)."""
    total = 0.0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1]) * 1e-9
        except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
            pass
    return total


def _release_cost(cpus, cycles=40, phase_s=0.004, n=320):
    """Seconds a release costs when another thread is blocked on the GIL; per cycle.

    Thread A runs the loop throughout; thread B alternates one ``n x n``
    GEMM (milliseconds without the GIL: A alone, ``T`` an iteration, one
    release each) with ``phase_s`` of the same loop (A and B contend: ``T +
    c`` an iteration). Each contended phase is set against the solo phases
    beside it, milliseconds away, so a drift of the machine's speed cancels.
    B computes rather than sleeps between them: a sleeping B's CPU halts,
    and its first ~20 ms of contention cost twice the steady state that
    training runs in. A contended phase in which A or B queued for a CPU
    (the scheduler's count, ``/proc/<tid>/schedstat``) over 2% is dropped.
    """
    clock, done, phases, tids = time.perf_counter, [False], [], []
    big, big_out = np.ones((n, n), np.float32), np.empty((n, n), np.float32)

    def holder(*bufs):
        tids.append(threading.get_native_id())
        return _release_loop(*bufs, lambda: done[0])

    def contender(*bufs):
        tids.append(threading.get_native_id())
        try:
            for k in range(cycles + 1):
                t0 = clock()
                np.dot(big, big, out=big_out)  # A alone; B's CPU stays awake
                phases.append((None, t0 + 2e-4, clock(), 0.0))
                if k < cycles:
                    q0, end = _queued_s(tids), clock() + phase_s
                    run = _release_loop(*bufs, lambda end=end: clock() > end)
                    queued = (_queued_s(tids) - q0) / max(run[-1] - run[0], 1e-9)
                    phases.append((run, run[0], run[-1], queued))
        finally:
            done[0] = True

    runs = [(holder, *_release_bufs()), (contender, *_release_bufs())]
    a_run = _pair(lambda body, *bufs: body(*bufs), runs, cpus)[0]
    per = [  # seconds per iteration in each phase; NaN when our threads queued
        _per_release([a_run] if b_run is None else [a_run, b_run], lo, hi)
        if queued <= _QUEUED
        else math.nan
        for b_run, lo, hi, queued in phases
    ]
    costs = [per[k] - 0.5 * (per[k - 1] + per[k + 1]) for k in range(1, len(per) - 1, 2)]
    return [c for c in costs if math.isfinite(c)]


def _gemm_calls(a, out, duration_s):
    """GEMMs for ``duration_s``: each call's (start, end, thread CPU seconds)."""
    clock, cpu, dot = time.perf_counter, time.thread_time, np.dot
    calls = []
    end = clock() + duration_s
    t = clock()
    while t < end:
        c0 = cpu()
        dot(a, a, out=out)
        calls.append((t, t := clock(), cpu() - c0))
    return calls


def _on_cpu(calls):
    # A call its thread ran through (not preempted): CPU time ~ its wall time.
    return [c for c in calls if c[2] >= 0.9 * (c[1] - c[0])]


def _contention(cpus, alternations=3, solo_s=0.008, pair_s=0.015, n=256):
    """Slow-down of each of two GEMMs running at once, minus one; one per alternation.

    Timed call by call, alone and in pairs in turn; of the pair only calls
    made while both threads ran, and not preempted (:func:`_on_cpu`), count.
    Each alternation: the median call of the pair over the median alone
    before it (none with under 3 such calls).
    """

    def bufs():
        return np.ones((n, n), np.float32), np.empty((n, n), np.float32)

    a, out = bufs()
    _gemm_calls(a, out, 0.002)  # warm up
    ratios = []
    for _ in range(alternations):
        solo = [c[1] - c[0] for c in _on_cpu(_solo(_gemm_calls, (a, out, solo_s), cpus))]
        runs = _pair(_gemm_calls, [(*bufs(), pair_s) for _ in range(2)], cpus)
        lo, hi = max(r[0][0] for r in runs), min(r[-1][1] for r in runs)
        both = [c[1] - c[0] for r in runs for c in _on_cpu(r) if c[0] >= lo and c[1] <= hi]
        if len(solo) >= 3 and len(both) >= 3:
            ratios.append(statistics.median(both) / statistics.median(solo) - 1.0)
    return ratios


def _iq_mean(xs):
    """Mean of the middle half (the interquartile mean): robust, and steadier than a median."""
    xs = sorted(x for x in xs if math.isfinite(x))
    if len(xs) < 4:
        return statistics.median(xs) if xs else math.nan
    k = len(xs) // 4
    return statistics.fmean(xs[k : len(xs) - k])


def _cpu_jiffies():
    """``(busy, total)`` jiffies of all CPUs from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return None
    return sum(v) - v[3] - v[4], sum(v)  # idle and iowait are not busy


def _busy_share(before, after, own_s):
    """Share of the machine's CPUs busy with other work than this process meanwhile."""
    if not before or not after or after[1] <= before[1]:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((after[0] - before[0]) / hz - own_s) / ((after[1] - before[1]) / hz))


def _trim_wakes(wakes, tail=_WAKE_TAIL):
    """Wake-up samples without those over ``tail`` medians, sorted.

    Such a wake-up is a waiter whose CPU another process had (load, not
    latency): the simulation draws from the rest.
    """
    cut = tail * _median(wakes) if wakes else math.inf
    return sorted(w for w in wakes if w <= cut)


def _clamp(c):
    # Below 0 is timing noise (kernels do not speed each other up); above 1, a
    # kernel at under half speed beside another, a preemption the test missed.
    return min(1.0, max(0.0, c)) if math.isfinite(c) else c


def _contention_of(samples, shared=0.5):
    """The machine's kernel contention from its samples, and the share in the high state.

    Two GEMMs each under 2/3 speed (over ``shared``) are not memory traffic
    but two virtual CPUs on one host core, ~0.1 s spells of a neighbour's
    load. As a minority they make a median drift with their share (0.0 in
    one probe, 0.16 in the next): the median of the others; as the
    majority they are the machine, and all count.
    """
    xs = [_clamp(x) for x in samples if math.isfinite(x)]
    low = [x for x in xs if x <= shared]
    high = (len(xs) - len(low)) / len(xs) if xs else 0.0
    return _median(low if len(low) * 2 >= len(xs) else xs), high


def _median(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else math.nan


@functools.lru_cache(maxsize=2)
def _measure(rounds):
    from threadpoolctl import threadpool_limits

    per_round, wakes, costs, contentions = [], [], [], []
    cpus = _cpus()
    jiffies, own = _cpu_jiffies(), time.process_time()
    t0 = time.perf_counter()
    with threadpool_limits(1):
        # Warm up the code paths and BLAS.
        _release_cost(cpus, cycles=2, phase_s=0.002)
        for _ in range(rounds):
            wake = _wake_samples(cpus)
            cost = _release_cost(cpus)
            contention = _contention(cpus)
            wakes += wake
            costs += cost
            contentions += contention
            per_round.append(
                {
                    "wake_s": _median(wake),
                    "release_cost_s": _iq_mean(cost),
                    "kernel_contention": _contention_of(contention)[0],
                }
            )
        # A busy machine preempts the probes and spoils samples (dropped
        # above); measure on, within a bounded time, until enough are clean.
        extra_until = time.perf_counter() + _EXTRA_S
        while time.perf_counter() < extra_until and (
            len(costs) < _ENOUGH["release"] or len(contentions) < _ENOUGH["contention"]
        ):
            if len(costs) < _ENOUGH["release"]:
                costs += _release_cost(cpus)
            if len(contentions) < _ENOUGH["contention"]:
                contentions += _contention(cpus)
    other = _busy_share(jiffies, _cpu_jiffies(), time.process_time() - own)

    def zero_if_nan(x):
        return x if math.isfinite(x) else 0.0

    kept = _trim_wakes(wakes)
    contention, shared = _contention_of(contentions)
    return {
        # Medians of every sample of every round (the rounds' spread is the band).
        "wake_s": zero_if_nan(_median(kept)),
        "wake_samples_s": kept,
        "wake_samples_dropped": len(wakes) - len(kept),
        # Release costs spread widely but in one mode: the interquartile mean.
        "release_cost_s": zero_if_nan(_iq_mean(costs)),
        "release_cost_samples": len(costs),
        "kernel_contention": zero_if_nan(contention),
        "kernel_contention_samples": len(contentions),
        "kernel_contention_shared": shared,
        "switch_s": sys.getswitchinterval(),
        "pinned": len(cpus) > 1,
        "probe_s": time.perf_counter() - t0,
        "other_load": other,
        "rounds": per_round,
    }


def measure_gil_machine(rounds=ROUNDS):
    """This machine's GIL constants (about 0.5 s a round; measured once per process).

    Returns
    -------
    dict
        ``wake_s`` (median), ``wake_samples_s`` (the samples the simulation
        draws from, sorted; ``wake_samples_dropped``: those over 3x the
        median), ``release_cost_s`` and ``kernel_contention`` (with their
        ``*_samples`` counts), ``switch_s``, ``pinned`` (the pair probes ran
        on two CPUs), ``probe_s``, ``other_load`` (share of the CPUs busy
        with other processes meanwhile; None where unknown) and ``rounds``:
        each round's own ``wake_s``, ``release_cost_s`` and
        ``kernel_contention``, for the prediction's band.
    """
    m = _measure(int(rounds))
    return {
        **m,
        "wake_samples_s": list(m["wake_samples_s"]),
        "rounds": [dict(r) for r in m["rounds"]],
    }
