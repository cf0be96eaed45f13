"""A discrete-event simulation of N threads passing the GIL over a step's segments.

Each thread repeats one training step, a sequence of ``(python_s, kernel_s)``
segments: Python that holds the GIL, then a kernel that releases it
(``kernel_s = 0``: the next Python follows without a release). The
simulation follows CPython's GIL (``Python/ceval_gil.h``, 3.2 to 3.12) in
the four rules that decide who runs:

1. A thread that releases the GIL signals one thread blocked on it; that
   thread is running again ``wake_s`` later (a futex wake-up, measured), and
   takes the GIL only if it is free *then*.
2. A thread whose kernel ends takes the GIL at once if it is free, so a short
   kernel usually gets the GIL back before the signalled thread is awake; if
   it is taken, the thread blocks: the convoy, a thread waits for another's
   whole Python segment (and for that one's next kernel to outlast a wake-up).
3. A blocked thread that sees no switch for ``switch_s``
   (``sys.getswitchinterval()``) asks the holder to drop the GIL; the holder
   drops at once and waits until the waiter, ``wake_s`` later, has it.
4. Every release made while another thread is blocked costs the releaser
   ``release_cost_s`` with the GIL unavailable (signalling the waiter: a system
   call, an inter-processor interrupt, the GIL's mutex passing between cores).

Threads share ``cores``; ``kernel_contention`` slows kernels that run at the
same time (memory bandwidth, shared cache): with ``m`` kernels running each
goes at ``1 / (1 + kernel_contention * (m - 1))``. ``gil=False`` is a
free-threaded build (or processes): rules 1-4 vanish and only the cores and
the contention remain.

The result is the steady-state speedup over one thread running the same
steps alone: completed solo work divided by wall time, up to the moment the
first thread has done its share.
"""

from __future__ import annotations

import math
import random

__all__ = ["simulate", "segments_from_histogram"]

_PY, _KERNEL, _WAIT = 0, 1, 2


def segments_from_histogram(python_s, numeric_s, durations_log2, releases):
    """One step's ``(python_s, kernel_s)`` segments from a calibration's totals.

    ``durations_log2[b]`` counts GIL-releasing calls of ``[2**(b-1), 2**b)``
    µs (``b = 0``: under 1 µs); their durations are the buckets' mid-points,
    scaled so that they add up to ``numeric_s``. The step's ``python_s`` is
    spread evenly over its ``releases`` segments, and the kernels of each
    bucket are spread evenly through the step (a deterministic interleave, so
    a long GEMM is not always next to another one).
    """
    n = max(0, int(round(releases)))
    if n == 0:
        return [(python_s, 0.0)]
    total = sum(durations_log2)
    if not total:
        return [(python_s / n, numeric_s / n)] * n
    mids = [0.5e-6 if b == 0 else 0.75e-6 * 2**b for b in range(len(durations_log2))]
    # Bucket b gets round(n * share) kernels; largest remainders fill the rest.
    shares = [n * c / total for c in durations_log2]
    counts = [int(s) for s in shares]
    order = sorted(range(len(shares)), key=lambda b: counts[b] - shares[b])
    for b in order[: n - sum(counts)]:
        counts[b] += 1
    # Evenly spaced positions per bucket, merged by position.
    keyed = []
    for b, c in enumerate(counts):
        keyed += [((i + 0.5) / c, b) for i in range(c)]
    kernels = [mids[b] for _, b in sorted(keyed)]
    scale = numeric_s / sum(kernels) if sum(kernels) > 0 else 0.0
    return [(python_s / n, k * scale) for k in kernels]


class _Thread:
    __slots__ = (
        "mode",
        "rem",
        "full",
        "seg",
        "done",
        "lost",
        "wake_at",
        "deadline",
        "resume",
        "charged",
    )

    def __init__(self, seg):
        self.mode = _WAIT
        self.rem = 0.0
        self.full = 0.0  # this phase's solo length (jittered)
        self.seg = seg
        self.done = 0.0  # solo seconds of work completed
        self.lost = 0.0  # switch costs inside ``done`` (not work)
        self.wake_at = None  # signalled: running again at this time
        self.deadline = math.inf  # rule 3's timeout
        self.resume = None  # Python left when a forced switch interrupted it
        self.charged = False  # this release's cost (rule 4) already paid


def simulate(
    segments,
    n_threads,
    *,
    gil=True,
    wake_s=0.0,
    switch_s=0.005,
    release_cost_s=0.0,
    switch_cost_s=0.0,
    cores=None,
    kernel_contention=0.0,
    jitter=0.5,
    min_segments=2000,
    seed=0,
):
    """Speedup of ``n_threads`` threads running ``segments`` over one thread alone.

    Parameters
    ----------
    segments : sequence of (float, float)
        One step: ``(python_s, kernel_s)`` pairs, repeated by every thread.
    n_threads : int
    gil : bool, default=True
        False: a free-threaded build, or processes (no GIL at all).
    wake_s : float or sequence of float, default=0.0
        Wake-up latency of a thread blocked on the GIL; a sequence is
        sampled (seeded), as measured latencies vary.
    switch_s : float, default=0.005
        ``sys.getswitchinterval()``.
    release_cost_s : float, default=0.0
        Rule 4's cost of a release while another thread is blocked.
    switch_cost_s : float, default=0.0
        GIL-held time a thread loses when it takes the GIL from another
        thread (the interpreter's shared state moving to its core).
    cores : int, optional
        Default ``n_threads``.
    kernel_contention : float, default=0.0
        Slow-down of each of two kernels running at once, minus one.
    jitter : float, default=0.5
        Each phase lasts its nominal length times a uniform factor in
        ``[1 - jitter, 1 + jitter]`` (seeded): real steps vary, and without
        variation two threads can fall into a phase-locked pattern that never
        collides, which no machine sustains.
    min_segments : int, default=2000
        Segments each of two threads completes (whole steps, at least two);
        ``n`` threads complete ``2 / n`` of that each (at least 500), and a
        step without releases runs for at least four switch intervals.
    seed : int, default=0

    Returns
    -------
    dict
        ``speedup``, ``wall_s``, ``work_s``, ``handoffs`` (the GIL changing
        thread), ``forced`` (rule 3 switches), ``gil_idle`` (share of the wall
        time no thread held the GIL).
    """
    segs = [(max(0.0, float(p)), max(0.0, float(k))) for p, k in segments]
    if not segs or sum(p + k for p, k in segs) <= 0:
        raise ValueError("segments must contain some work: a positive python_s or kernel_s")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    cores = n_threads if cores is None else cores
    rng = random.Random(seed)
    samples = list(wake_s) if hasattr(wake_s, "__len__") else [float(wake_s)]

    def wake():
        return samples[0] if len(samples) == 1 else rng.choice(samples)

    def draw(x):
        return x * (1.0 + jitter * (2.0 * rng.random() - 1.0)) if jitter and x else x

    # About 2 * min_segments segments in all, so that 16 threads cost what 2 do.
    quota = max(500, (2 * min_segments) // n_threads)
    steps = max(2, -(-quota // len(segs)))
    if gil and not any(k for _, k in segs):
        # Without releases only forced switches (rule 3) move the GIL: see several.
        steps = max(steps, min(int(4 * switch_s / sum(p for p, _ in segs)) + 1, 50_000))
    per_thread = steps * len(segs)
    # Threads start at different points of the step: they do not run in lock-step.
    threads = [_Thread((i * len(segs)) // n_threads) for i in range(n_threads)]
    counts = [0] * n_threads  # segments completed
    holder = None
    reserved = None  # the waiter a forced switch hands the GIL to
    last_holder = None
    switches = forced = 0
    now = idle = 0.0
    gil_free_since = 0.0

    def waiting(exclude):
        return any(t.mode == _WAIT and j != exclude for j, t in enumerate(threads))

    def take(i):
        nonlocal holder, last_holder, switches, idle
        t = threads[i]
        holder = i
        idle += now - gil_free_since
        t.mode, t.wake_at, t.deadline = _PY, None, math.inf
        if t.resume is not None:
            t.rem, t.resume = t.resume, None
        else:
            t.full = t.rem = draw(segs[t.seg][0])
        t.charged = False
        if last_holder != i:
            switches += 1
            if last_holder is not None:
                t.rem += switch_cost_s
                t.full += switch_cost_s
                t.lost += switch_cost_s
            last_holder = i

    def block(i):
        t = threads[i]
        t.mode, t.wake_at, t.deadline = _WAIT, None, now + switch_s

    def release(i):
        nonlocal holder, gil_free_since
        holder = None
        gil_free_since = now
        # Rule 1: signal the waiter that has waited longest (earliest deadline).
        asleep = [j for j, t in enumerate(threads) if t.mode == _WAIT and t.wake_at is None]
        if asleep:
            j = min(asleep, key=lambda j: threads[j].deadline)
            threads[j].wake_at = now + wake()

    def end_of_python(i):
        t = threads[i]
        k = segs[t.seg][1]
        if gil and k > 0 and release_cost_s > 0 and not t.charged and waiting(i):
            # Rule 4: the release itself costs time, the GIL still unavailable.
            t.charged, t.rem = True, release_cost_s
            return
        t.done += t.full  # the segment's Python; a release charge is not work
        if k > 0:
            t.mode = _KERNEL
            t.full = t.rem = draw(k)
            if gil:
                release(i)
        else:
            next_segment(i)

    def next_segment(i):
        t = threads[i]
        counts[i] += 1
        t.seg = (t.seg + 1) % len(segs)
        if not gil or holder == i:
            t.mode, t.charged = _PY, False
            t.full = t.rem = draw(segs[t.seg][0])
        elif holder is None and reserved is None:
            take(i)
        else:
            block(i)

    if gil:
        take(0)
        for i in range(1, n_threads):
            block(i)
    else:
        for t in threads:
            t.mode = _PY
            t.full = t.rem = draw(segs[t.seg][0])

    while max(counts) < per_thread:
        running = [i for i, t in enumerate(threads) if t.mode != _WAIT]
        share = min(1.0, cores / len(running)) if running else 1.0
        in_kernel = sum(1 for i in running if threads[i].mode == _KERNEL)
        k_rate = share / (1.0 + kernel_contention * max(0, in_kernel - 1))
        rates = {i: (k_rate if threads[i].mode == _KERNEL else share) for i in running}
        dt, who, what = math.inf, None, None
        for i in running:
            d = threads[i].rem / rates[i]
            if d < dt:
                dt, who, what = d, i, "end"
        for i, t in enumerate(threads):
            if t.mode == _WAIT:
                if t.wake_at is not None and t.wake_at - now < dt:
                    dt, who, what = t.wake_at - now, i, "wake"
                elif t.wake_at is None and t.deadline - now < dt:
                    dt, who, what = t.deadline - now, i, "timeout"
        if who is None:
            raise RuntimeError("simulation deadlocked")  # pragma: no cover
        dt = max(0.0, dt)
        now += dt
        for i in running:
            threads[i].rem = max(0.0, threads[i].rem - dt * rates[i])
        t = threads[who]
        if what == "end":
            if t.mode == _PY:
                end_of_python(who)
            else:
                t.done += t.full
                next_segment(who)
        elif what == "wake":
            if reserved == who or (holder is None and reserved is None):
                reserved = None if reserved == who else reserved
                take(who)
            else:
                block(who)  # it lost the race: back to waiting
        else:  # timeout
            if holder is None and reserved is None:
                take(who)
            elif holder is not None and reserved is None:
                # Rule 3: a forced switch; the holder's Python resumes later.
                h = holder
                threads[h].resume = threads[h].rem
                forced += 1
                holder, gil_free_since = None, now
                t.wake_at = now + wake()
                reserved = who
                block(h)
            else:
                block(who)
    work = sum(t.done - t.lost for t in threads)
    # Partly done phases count as the work they did.
    for t in threads:
        if t.mode == _PY:
            work += t.full if t.charged else max(0.0, t.full - t.rem)
        elif t.resume is not None:
            work += max(0.0, t.full - t.resume)
        elif t.mode == _KERNEL:
            work += max(0.0, t.full - t.rem)
    if holder is None:
        idle += now - gil_free_since
    return {
        "speedup": work / now if now > 0 else float(n_threads),
        "wall_s": now,
        "work_s": work,
        "handoffs": switches - 1 if gil else 0,
        "forced": forced,
        "gil_idle": idle / now if gil and now > 0 else 0.0,
    }
