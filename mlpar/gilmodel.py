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

import statistics
import threading
import time

import numpy as np

__all__ = [
    "amdahl", "predict_threads", "sample_gil", "py_spy_available", "measure_handoff_cost", "measure_call_overhead", "calibrate", "Calibration",
]


def amdahl(p, n):
    """Amdahl's ceiling for ``n`` threads when a fraction ``p`` runs without the GIL."""
    p = min(max(float(p), 0.0), 1.0)
    return 1.0 / ((1.0 - p) + p / n)


def predict_threads(p, n, *, releases_per_s=0.0, handoff_s=0.0):
    """Predicted speedup of ``n`` threads over serial, Amdahl plus GIL hand-offs.

    Per second of serial work a trial makes ``releases_per_s`` GIL releases;
    with ``n`` threads contending, each costs about ``handoff_s`` of
    serialized time (the next thread's wake-up). With ``handoff_s = 0`` this is
    Amdahl's law.
    """
    if n <= 1:
        return 1.0
    p = min(max(float(p), 0.0), 1.0)
    # Time for n trials of 1 s serial work each, per trial: the GIL-held part
    # serializes across threads, the GIL-free part overlaps, and every
    # contended release adds a hand-off on the serialized path.
    contended = (n - 1) / n
    per_trial = (1.0 - p) + p / n + releases_per_s * handoff_s * contended
    return 1.0 / per_trial


def _release_loop(a, b, out, iters):
    for _ in range(iters):
        np.dot(a, b, out=out)


def measure_handoff_cost(*, n_threads=2, iters=4000, repeats=3):
    """Seconds of serialized time one contended GIL release costs on this machine.

    Two threads each run tiny GIL-releasing ``np.dot`` calls (the kernel is
    negligible, so nearly all time is dispatch plus GIL traffic). The extra wall
    time over running the same calls serially, per release, is the hand-off cost.
    """
    from threadpoolctl import threadpool_limits

    # 32x16 @ 16x16 -> 512 outputs: np.dot releases the GIL, the work is ~1 µs.
    a = np.ones((32, 16), np.float32)
    b = np.ones((16, 16), np.float32)
    outs = [np.empty((32, 16), np.float32) for _ in range(n_threads)]
    costs = []
    with threadpool_limits(1):
        _release_loop(a, b, outs[0], 200)  # warm up
        for _ in range(repeats):
            t0 = time.perf_counter()
            for k in range(n_threads):
                _release_loop(a, b, outs[k], iters)
            serial = time.perf_counter() - t0
            threads = [threading.Thread(target=_release_loop, args=(a, b, outs[k], iters))
                       for k in range(n_threads)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            parallel = time.perf_counter() - t0
            # serial work is all GIL-held dispatch: ideal threaded wall == serial.
            costs.append(max(0.0, parallel - serial) / (n_threads * iters))
    return statistics.median(costs)


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


def calibrate(params, *, seed=0, epochs=None, handoff_s=None):
    """Serially profile one trial's training and return its decomposition.

    Parameters
    ----------
    params : dict
        Flat trial parameters (as for :func:`mlpar.train_mlp`).
    seed : int, default=0
    epochs : int, optional
        Train only this many epochs (a step's mix does not change with epochs).
    handoff_s : float, optional
        Hand-off cost; measured when not given.

    Returns
    -------
    Calibration
        ``p`` (GIL-free fraction), ``p_gemm`` (GEMMs only), ``step_time``,
        ``python_time`` and ``numeric_time`` per step, ``releases_per_s``,
        ``handoff_s``, and the Amdahl and extended predictions for 2 threads.
    """
    from threadpoolctl import threadpool_limits

    from .trial import train_mlp

    params = dict(params)
    if epochs is not None:
        params["epochs"] = epochs
    with threadpool_limits(1):
        train_mlp({**params, "epochs": 1}, seed, instrument=True)  # warm up caches and BLAS
        m = train_mlp(params, seed, instrument=True)
        if handoff_s is None:
            handoff_s = measure_handoff_cost()
    s = {k[len("stats_"):]: v for k, v in m.items() if k.startswith("stats_")}
    steps = max(1, s["n_steps"])
    calls = s["gemm_calls"] + s["ufunc_big_calls"]
    dispatch = measure_call_overhead()  # the GIL-held part of each releasing call
    timer = s.get("timer_overhead", 0.0)
    # The instrumented totals include one timer pair per timed call: remove it.
    step_total = max(1e-12, s["step_time"] - timer * calls)
    gemm_free = max(0.0, s["gemm_time"] - (timer + dispatch) * s["gemm_calls"])
    ufunc_free = max(0.0, s["ufunc_big_time"] - (timer + dispatch) * s["ufunc_big_calls"])
    numeric = min(step_total, gemm_free + ufunc_free)
    p = numeric / step_total
    cal = Calibration(
        p=p, p_gemm=min(1.0, gemm_free / step_total),
        step_time=step_total / steps, numeric_time=numeric / steps,
        python_time=(step_total - numeric) / steps,
        releases_per_step=calls / steps,
        releases_per_s=calls / step_total,
        handoff_s=handoff_s, epochs=m["epochs"], fit_time=m["fit_time"],
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
            cmd = [_py_spy(), "record", "--rate", str(rate), "--format", "raw", "--nonblocking",
                   "-o", out, *extra, "--", sys.executable, script]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not os.path.exists(out):
                raise RuntimeError(f"py-spy failed ({proc.returncode}): "
                                   f"{(proc.stderr or proc.stdout).strip()[-300:]}")
            n = 0
            with open(out) as f:
                for line in f:
                    stack, _, count = line.rstrip("\n").rpartition(" ")
                    if f"{marker} (" in stack:
                        n += int(count)
            counts.append(n)
    total, held = counts
    return {"p": 1.0 - min(held, total) / total if total else float("nan"),
            "samples": total, "gil_samples": held, "method": "py-spy record --gil"}


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
