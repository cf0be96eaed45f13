"""The GIL/BLAS decomposition: how much of a training step holds the GIL.

A training step is Python-level work (the interpreter, NumPy's per-call
dispatch) that holds the GIL, plus numeric kernels (GEMMs, large element-wise
loops) that release it. With ``p`` the GIL-free fraction of a step, ``n``
threads can reach at most Amdahl's ``1 / ((1 - p) + p / n)``.

``p`` is measured serially with the engine's instrumentation: the time inside
GIL-releasing calls, less the GIL-held dispatch part of each call (measured on
an empty call of the same kind). Two costs Amdahl ignores are measured too and
form the extended model: every GIL release under contention is a hand-off
between threads (a futex wake-up and often a context switch), and ``n`` threads
of Python share one interpreter lock, so per-call overhead does not shrink.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time

import numpy as np

__all__ = [
    "amdahl",
    "predict_threads",
    "sample_gil",
    "py_spy_available",
    "measure_handoff_cost",
    "measure_call_overhead",
    "calibrate",
    "Calibration",
]


def amdahl(p, n):
    """Amdahl's ceiling for ``n`` threads when a fraction ``p`` runs without the GIL."""
    p = min(max(float(p), 0.0), 1.0)
    return 1.0 / ((1.0 - p) + p / n)


def predict_threads(p, n, *, releases_per_s=0.0, handoff_s=0.0):
    """Predicted speedup of ``n`` threads over serial, Amdahl plus GIL hand-offs.

    Per second of serial work a trial makes ``releases_per_s`` GIL releases;
    when two threads contend, each release costs ``handoff_s`` of extra wall
    time (as :func:`measure_handoff_cost` measures it). With ``handoff_s = 0``
    this is Amdahl's law.
    """
    if n <= 1:
        return 1.0
    p = min(max(float(p), 0.0), 1.0)
    # Wall time per trial of 1 s serial work: the GIL-held part serializes
    # across threads, the GIL-free part overlaps, and every release pays the
    # hand-off cost. That cost was measured with 2 threads; with n threads a
    # release finds a waiter (n - 1) / n of the time instead of 1/2.
    contended = 2.0 * (n - 1) / n
    per_trial = (1.0 - p) + p / n + releases_per_s * handoff_s * contended
    return 1.0 / per_trial


def _step_loop(a, b, out, iters, py_iters):
    # A caricature of a training step: a short Python stretch (the GIL held,
    # like the interpreter work between NumPy calls), then one GIL-releasing
    # np.dot whose duration is set by the operand sizes.
    for _ in range(iters):
        x = 0
        for j in range(py_iters):
            x += j
        np.dot(a, b, out=out)


def _python_only(a, iters, py_iters):
    # The same loop with a 1x1 dot: no real kernel, so all of it holds the GIL.
    tiny = a[:1, :1]
    for _ in range(iters):
        x = 0
        for j in range(py_iters):
            x += j
        np.dot(tiny, tiny)


# Operand sizes whose np.dot lasts from about a microsecond to a few hundred.
HANDOFF_SHAPES = ((64, 32), (64, 64), (128, 128), (256, 256))


def measure_handoff_cost(*, m=64, k=64, py_iters=10, budget_s=0.08, repeats=3):
    """Extra seconds per GIL release when 2 threads contend, for one kernel size.

    Two threads run the caricature step (:func:`_step_loop`); Amdahl's law,
    with ``p`` measured on the same loop serially, predicts their wall time.
    What the threads take beyond it, per GIL release, is the hand-off cost:
    the futex wake-ups and context switches of passing the GIL back and forth.

    Returns
    -------
    (kernel_s, handoff_s) : tuple of float
        The kernel's duration and the hand-off cost per release.
    """
    from threadpoolctl import threadpool_limits

    a = np.ones((m, k), np.float32)
    b = np.ones((k, k), np.float32)
    outs = [np.empty((m, k), np.float32) for _ in range(2)]
    costs, kernels = [], []
    with threadpool_limits(1):
        t0 = time.perf_counter()
        _step_loop(a, b, outs[0], 50, py_iters)
        per = (time.perf_counter() - t0) / 50
        iters = max(100, int(budget_s / max(per, 1e-7)))
        for _ in range(repeats):
            t0 = time.perf_counter()
            _step_loop(a, b, outs[0], iters, py_iters)
            _step_loop(a, b, outs[1], iters, py_iters)
            serial = (time.perf_counter() - t0) / 2
            t0 = time.perf_counter()
            _python_only(a, iters, py_iters)
            python = min(serial, time.perf_counter() - t0)
            threads = [
                threading.Thread(target=_step_loop, args=(a, b, outs[q], iters, py_iters))
                for q in range(2)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            p = 1.0 - python / serial
            costs.append(max(0.0, wall - (2.0 - p) * serial) / (2 * iters))
            kernels.append((serial - python) / iters)
    return statistics.median(kernels), statistics.median(costs)


@functools.lru_cache(maxsize=1)
def measure_handoff_curve():
    """Hand-off cost per GIL release as a function of the releasing call's duration.

    Measured once per process on :data:`HANDOFF_SHAPES` (about two seconds).
    Short calls cost little: the releasing thread takes the GIL back before
    the other one has woken up. Calls longer than a thread's wake-up latency
    let the other thread run, and each such hand-off costs a wake-up.

    Returns
    -------
    tuple of (kernel_s, handoff_s), sorted by kernel duration.
    """
    return tuple(sorted(measure_handoff_cost(m=m, k=k) for m, k in HANDOFF_SHAPES))


def handoff_at(duration_s, curve):
    """Interpolate the hand-off cost for a call of ``duration_s`` (log scale)."""
    pts = [(math.log(max(k, 1e-9)), h) for k, h in curve]
    x = math.log(max(duration_s, 1e-9))
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, h0), (x1, h1) in zip(pts, pts[1:]):
        if x <= x1:
            return h0 + (h1 - h0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def mean_handoff(durations_log2, curve):
    """Average hand-off cost per release for a histogram of release durations.

    ``durations_log2[b]`` counts calls lasting [2**(b-1), 2**b) µs (b = 0:
    under 1 µs), as recorded by the engine's instrumentation.
    """
    total = sum(durations_log2)
    if not total:
        return 0.0
    cost = 0.0
    for b, count in enumerate(durations_log2):
        if count:
            mid_us = 0.5 if b == 0 else 0.75 * 2**b
            cost += count * handoff_at(mid_us * 1e-6, curve)
    return cost / total


def measure_call_overhead(*, iters=20000):
    """Seconds of GIL-held dispatch in one NumPy call (an ``np.dot`` on 2x2 arrays).

    Too small to release the GIL and with no real work, so its whole time is
    the Python-side overhead every call pays before its kernel starts.
    """
    a = np.ones((2, 2), np.float32)
    out = np.empty((2, 2), np.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            np.dot(a, a, out=out)
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


class Calibration(dict):
    """Measured decomposition of one workload's training step (a dict)."""

    def prediction(self, n, *, handoff_s=None):
        h = self.get("handoff_s", 0.0) if handoff_s is None else handoff_s
        return predict_threads(self["p"], n, releases_per_s=self["releases_per_s"], handoff_s=h)


def measure_blas_speedup(params, *, seed=0, threads=2, epochs=None, repeats=2):
    """Speedup of one trial's training from ``threads`` BLAS threads instead of 1.

    Whether OpenBLAS's threads pay depends on the GEMM sizes (small products
    gain nothing, or lose to the threads' synchronization), which no formula
    on ``p`` captures well; so it is measured: the same short serial training,
    interleaved with 1 and with ``threads`` BLAS threads, best of ``repeats``.
    """
    from threadpoolctl import threadpool_limits

    from ..trial import train_mlp

    params = dict(params)
    if epochs is not None:
        params["epochs"] = epochs
    times = {1: [], threads: []}
    for _ in range(repeats):
        for t in (1, threads):
            with threadpool_limits(t):
                times[t].append(train_mlp(params, seed)["fit_time"])
    return min(times[1]) / min(times[threads])


def calibrate(params, *, seed=0, epochs=None, curve=None):
    """Serially profile one trial's training and return its decomposition.

    Parameters
    ----------
    params : dict
        Flat trial parameters (as for :func:`mlpar.train_mlp`).
    seed : int, default=0
    epochs : int, optional
        Train only this many epochs (a step's mix does not change with epochs).
    curve : sequence of (kernel_s, handoff_s), optional
        This machine's hand-off costs (:func:`measure_handoff_curve`, measured
        when not given); ``()`` means none: plain Amdahl.

    Returns
    -------
    Calibration
        ``p`` (GIL-free fraction), ``p_gemm`` (GEMMs only), ``step_time``,
        ``python_time`` and ``numeric_time`` per step, ``releases_per_s``,
        ``handoff_s``, and the Amdahl and extended predictions for 2 threads.
    """
    from threadpoolctl import threadpool_limits

    from ..trial import train_mlp

    params = dict(params)
    if epochs is not None:
        params["epochs"] = epochs
    with threadpool_limits(1):
        # Warm up caches and BLAS, and time epochs without the instrumentation,
        # whose timers inflate a narrow model's step: that is the trial length.
        plain = train_mlp({**params, "epochs": min(2, params.get("epochs", 2))}, seed)
        m = train_mlp(params, seed, instrument=True)
        if curve is None:
            curve = measure_handoff_curve()
    s = {k[len("stats_") :]: v for k, v in m.items() if k.startswith("stats_")}
    steps = max(1, s["n_steps"])
    calls = s["gemm_calls"] + s["ufunc_big_calls"]  # the GIL-releasing calls
    all_calls = calls + s.get("ufunc_small_calls", 0)
    dispatch = measure_call_overhead()  # the GIL-held part of each releasing call
    timer = s.get("timer_overhead", 0.0)
    wrapper = s.get("wrapper_overhead", 0.0)
    # The instrumented step pays a Python wrapper per kernel call and a timer
    # pair per timed call; an uninstrumented step pays neither: remove them.
    step_total = max(1e-12, s["step_time"] - wrapper * all_calls - timer * calls)
    gemm_free = max(0.0, s["gemm_time"] - (timer + dispatch) * s["gemm_calls"])
    ufunc_free = max(0.0, s["ufunc_big_time"] - (timer + dispatch) * s["ufunc_big_calls"])
    numeric = min(step_total, gemm_free + ufunc_free)
    p = numeric / step_total
    durations = s.get("release_durations_us_log2") or []
    handoff_s = mean_handoff(durations, curve) if curve else 0.0
    cal = Calibration(
        p=p,
        p_gemm=min(1.0, gemm_free / step_total),
        step_time=step_total / steps,
        numeric_time=numeric / steps,
        python_time=(step_total - numeric) / steps,
        releases_per_step=calls / steps,
        releases_per_s=calls / step_total,
        handoff_s=handoff_s,
        epochs=m["epochs"],
        fit_time=m["fit_time"],
        epoch_time=plain["fit_time"] / max(1, plain["epochs"]),
        overhead_time=plain["data_time"] + plain["score_time"],
        release_durations_us_log2=list(durations),
    )
    cal["amdahl_2"] = amdahl(p, 2)
    cal["predicted_2"] = cal.prediction(2)
    return cal


def _py_spy():
    import os
    import shutil
    import sys

    # Installed into the same environment as mlpar, which may not be on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("py-spy", path=path)


def py_spy_available():
    """True when the sampling profiler ``py-spy`` is installed (``mlpar[profile]``)."""
    return _py_spy() is not None


def sample_gil(code, *, marker, rate=250, timeout=300):
    """Measure a workload's GIL-free fraction with the sampling profiler py-spy.

    An independent cross-check of :func:`calibrate`: no instrumentation, so it
    works on any Python code. ``code`` runs twice in a fresh interpreter under
    ``py-spy record``: once sampling every non-idle moment, once only moments
    when the thread holds the GIL (``--gil``). Only samples whose stack passes
    through the function named ``marker`` count, so imports and set-up don't.
    ``p = 1 - gil_samples / all_samples``; statistical, so run >= ~1 s.

    Returns
    -------
    dict
        ``p``, ``samples`` (all), ``gil_samples``, ``method``.

    Raises
    ------
    ImportError
        When py-spy is not installed.
    """
    import os
    import subprocess
    import sys
    import tempfile

    if not py_spy_available():
        raise ImportError('the GIL cross-check needs py-spy: pip install "mlpar[profile]"')
    counts = []
    with tempfile.TemporaryDirectory(prefix="mlpar-pyspy-") as tmp:
        script = os.path.join(tmp, "workload.py")
        with open(script, "w") as f:
            f.write(code)
        for extra in ([], ["--gil"]):
            out = os.path.join(tmp, f"samples{len(extra)}.txt")
            cmd = [
                _py_spy(),
                "record",
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                out,
                *extra,
                "--",
                sys.executable,
                script,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not os.path.exists(out):
                raise RuntimeError(
                    f"py-spy failed ({proc.returncode}): "
                    f"{(proc.stderr or proc.stdout).strip()[-300:]}"
                )
            n = 0
            with open(out) as f:
                for line in f:
                    stack, _, count = line.rstrip("\n").rpartition(" ")
                    if f"{marker} (" in stack:
                        n += int(count)
            counts.append(n)
    total, held = counts
    return {
        "p": 1.0 - min(held, total) / total if total else float("nan"),
        "samples": total,
        "gil_samples": held,
        "method": "py-spy record --gil",
    }


def sample_trial_gil(params, *, seed=0, rate=250):
    """:func:`sample_gil` on one trial's training (samples inside ``fit`` only)."""
    import json

    code = (
        "import json\n"
        "from threadpoolctl import threadpool_limits\n"
        "from mlpar.trial import train_mlp\n"
        f"params = json.loads({json.dumps(json.dumps(params, default=_plain))})\n"
        "with threadpool_limits(1):\n"
        f"    train_mlp(params, {int(seed)})\n"
    )
    return sample_gil(code, marker="fit", rate=rate)


def _plain(x):
    # numpy scalars from random search -> Python numbers for JSON.
    return x.item() if hasattr(x, "item") else str(x)
