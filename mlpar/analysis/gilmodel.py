"""The GIL/BLAS decomposition: how much of a training step holds the GIL.

A training step is Python-level work (the interpreter, NumPy's per-call
dispatch) that holds the GIL, plus numeric kernels (GEMMs, large element-wise
loops) that release it. With ``p`` the GIL-free fraction of a step, ``n``
threads can reach at most Amdahl's ``1 / ((1 - p) + p / n)``.

``p`` is measured serially with the engine's instrumentation: the time inside
GIL-releasing calls, less the GIL-held dispatch part of each call (measured on
an empty call of the same kind). The instrumentation also records how many
calls release the GIL per step and how long each lasts (a histogram): that
makes the step a sequence of Python segments and kernels.

What ``n`` threads achieve over those segments is not a formula of ``p``: a
thread that releases the GIL for a 2 µs kernel may find it taken when the
kernel ends and wait for another thread's whole Python segment (a convoy),
and every release with a waiter costs a wake-up. :func:`predict_threads`
simulates the threads' alternation (:mod:`._handoff_sim`) with this machine's
measured wake-up latency, release cost, kernel contention and switch interval
(:mod:`._machine`); with the GIL off the same simulation predicts a
free-threaded build, and processes' steady state.
"""

from __future__ import annotations

import time

import numpy as np

from ._handoff_sim import segments_from_histogram, simulate
from ._machine import measure_gil_machine

__all__ = [
    "amdahl",
    "predict_threads",
    "predict_mixed",
    "mix_draws",
    "prediction_band",
    "segments",
    "sample_gil",
    "py_spy_available",
    "measure_gil_machine",
    "measure_call_overhead",
    "calibrate",
    "Calibration",
    "PREDICT_N",
]


def amdahl(p, n):
    """Amdahl's ceiling for ``n`` threads when a fraction ``p`` runs without the GIL."""
    p = min(max(float(p), 0.0), 1.0)
    return 1.0 / ((1.0 - p) + p / n)


# Thread counts every calibration predicts: 2 is what a 2-core compare can
# check; 4, 8 and 16 are predictions for machines with that many cores.
PREDICT_N = (2, 4, 8, 16)


def segments(cal):
    """One step of a calibrated workload as ``(python_s, kernel_s)`` segments."""
    return segments_from_histogram(
        cal["python_time"],
        cal["numeric_time"],
        cal.get("release_durations_us_log2") or [],
        cal["releases_per_step"],
    )


def predict_threads(cal, n, *, gil=True, machine=None, cores=None):
    """Predicted speedup of ``n`` threads over serial: the hand-off simulation.

    ``n`` threads run the calibrated step (:func:`segments`) under
    :func:`~mlpar.analysis._handoff_sim.simulate` with this machine's GIL
    constants (``machine``, default the calibration's ``gil_machine``; see
    :func:`~mlpar.analysis._machine.measure_gil_machine`). ``gil=False`` is a
    free-threaded build, and the steady state of ``n`` processes: only the
    kernels' contention remains. Without machine constants, a GIL prediction
    is Amdahl's ceiling.
    """
    if n <= 1:
        return 1.0
    m = cal.get("gil_machine") if machine is None else machine
    if gil and not m:
        return amdahl(cal["p"], n)
    m = m or {}
    return simulate(
        segments(cal),
        n,
        gil=gil,
        wake_s=m.get("wake_samples_s") or m.get("wake_s", 0.0),
        switch_s=m.get("switch_s", 0.005),
        release_cost_s=m.get("release_cost_s", 0.0),
        kernel_contention=m.get("kernel_contention", 0.0),
        cores=cores,
    )["speedup"]


def mix_draws(cal, draws):
    """Make ``cal`` predict for a sweep of several calibrated draws; return it.

    ``draws`` is a list of ``(share, Calibration)``: draw ``k`` stands for the
    trials that take ``share`` of the sweep's serial time. Time adds up: trials
    of share ``w_k`` sped up ``s_k`` take ``w_k / s_k`` of the serial time, so
    the sweep's speedup is the time-weighted harmonic mean ``1 / sum(w_k /
    s_k)``. ``cal`` keeps its own measurements and gets the mixed
    ``predictions``, ``predicted_2``, ``predicted_2_band`` (lows mixed with
    lows, highs with highs) and the draws themselves, for :func:`predict_mixed`.
    """
    total = sum(w for w, _ in draws)
    # Copies, taken before ``cal`` (often one of the draws) is changed below.
    draws = [
        (w / total, {**c, "predictions": {k: dict(v) for k, v in c["predictions"].items()}})
        for w, c in draws
    ]

    def mix(values):
        return 1.0 / sum(w / max(v, 1e-12) for (w, _), v in zip(draws, values))

    for kind in ("threads", "no_gil"):
        cal["predictions"][kind] = {
            n: mix([c["predictions"][kind][n] for _, c in draws]) for n in cal["predictions"][kind]
        }
    cal["predicted_2"] = cal["predictions"]["threads"]["2"]
    bands = [c.get("predicted_2_band") or [c["predicted_2"]] * 2 for _, c in draws]
    cal["predicted_2_band"] = [mix([b[0] for b in bands]), mix([b[1] for b in bands])]
    cal["draws"] = [{"share": w, "calibration": dict(c)} for w, c in draws]
    return cal


def predict_mixed(cal, n, *, gil=True, machine=None):
    """:func:`predict_threads` of a calibration, mixed over its draws (:func:`mix_draws`)."""
    draws = cal.get("draws")
    if not draws:
        return predict_threads(cal, n, gil=gil, machine=machine)
    return 1.0 / sum(
        d["share"] / max(predict_threads(d["calibration"], n, gil=gil, machine=machine), 1e-12)
        for d in draws
    )


def prediction_band(cal, n=2):
    """``[low, high]`` of the threads prediction over the machine probe's rounds.

    Each round of :func:`~mlpar.analysis._machine.measure_gil_machine` gives
    its own wake-up latency, release cost and contention; the band is the
    range of the predictions they and the pooled constants give. A wide band
    means a noisy machine.
    """
    m = cal.get("gil_machine")
    preds = [predict_mixed(cal, n)]
    for r in (m or {}).get("rounds") or ():
        preds.append(predict_mixed(cal, n, machine={"switch_s": m.get("switch_s", 0.005), **r}))
    return [min(preds), max(preds)]


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

    def prediction(self, n, *, gil=True):
        """Predicted speedup of ``n`` threads (:func:`predict_threads`), cached."""
        if n <= 1:
            return 1.0
        key = "threads" if gil else "no_gil"
        cached = self.get("predictions", {}).get(key, {}).get(str(n))
        return cached if cached is not None else predict_mixed(self, n, gil=gil)


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


def calibrate(params, *, seed=0, epochs=None, machine=None, gil=True):
    """Serially profile one trial's training and return its decomposition.

    Parameters
    ----------
    params : dict
        Flat trial parameters (as for :func:`mlpar.train_mlp`).
    seed : int, default=0
    epochs : int, optional
        Train only this many epochs (a step's mix does not change with epochs).
    machine : dict or False, optional
        This machine's GIL constants (measured when not given, see
        :func:`~mlpar.analysis._machine.measure_gil_machine`); ``False``: none,
        and the GIL predictions are Amdahl's ceiling.
    gil : bool, default=True
        Whether threads in this interpreter contend for a GIL (False on a
        free-threaded build run without it: threads predict like ``no_gil``).

    Returns
    -------
    Calibration
        ``p`` (GIL-free fraction), ``p_gemm`` (GEMMs only), ``step_time``,
        ``python_time`` and ``numeric_time`` per step, ``releases_per_step``,
        the release histogram, ``gil_machine``, ``amdahl_2``, and
        ``predictions``: ``threads`` and ``no_gil`` (free-threaded, or
        processes without start-up) for each of :data:`PREDICT_N`, with
        ``predicted_2`` and its ``predicted_2_band``.
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
    if machine is None:
        machine = measure_gil_machine()
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
    cal = Calibration(
        p=p,
        p_gemm=min(1.0, gemm_free / step_total),
        step_time=step_total / steps,
        numeric_time=numeric / steps,
        python_time=(step_total - numeric) / steps,
        releases_per_step=calls / steps,
        releases_per_s=calls / step_total,
        epochs=m["epochs"],
        fit_time=m["fit_time"],
        epoch_time=plain["fit_time"] / max(1, plain["epochs"]),
        overhead_time=plain["data_time"] + plain["score_time"],
        release_durations_us_log2=list(s.get("release_durations_us_log2") or []),
        gil_machine=machine or None,
    )
    no_gil = {str(n): predict_threads(cal, n, gil=False) for n in PREDICT_N}
    threads = {str(n): predict_threads(cal, n) for n in PREDICT_N} if gil else dict(no_gil)
    cal["predictions"] = {"threads": threads, "no_gil": no_gil}
    cal["amdahl_2"] = amdahl(p, 2)
    cal["predicted_2"] = threads["2"]
    cal["predicted_2_band"] = prediction_band(cal, 2) if gil else [no_gil["2"]] * 2
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
