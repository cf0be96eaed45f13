"""The GIL/BLAS decomposition on workloads with known answers."""

import math
import threading

import pytest

from mlpar.analysis._machine import (
    _clamp,
    _contention_of,
    _iq_mean,
    _per_release,
    _queued_s,
    _trim_wakes,
)
from mlpar.analysis.gilmodel import (
    PREDICT_N,
    amdahl,
    calibrate,
    measure_blas_speedup,
    measure_call_overhead,
    measure_gil_machine,
    predict_threads,
    prediction_band,
    py_spy_available,
    sample_gil,
)


def test_amdahl_limits():
    assert amdahl(0.0, 8) == pytest.approx(1.0)
    assert amdahl(1.0, 8) == pytest.approx(8.0)
    assert amdahl(0.5, 2) == pytest.approx(1 / 0.75)
    assert amdahl(1.7, 2) == pytest.approx(2.0)  # clipped to [0, 1]


def test_machine_constants_are_measured():
    # Structure, not speed: positive, finite, one sample set per round.
    c = measure_call_overhead(iters=2000)
    assert c > 0 and math.isfinite(c)
    m = measure_gil_machine(rounds=1)
    assert len(m["rounds"]) == 1 and m["wake_samples_s"]
    assert all(x > 0 and math.isfinite(x) for x in m["wake_samples_s"])
    assert m["release_cost_s"] >= 0.0 and 0.0 <= m["kernel_contention"] <= 1.0
    assert m["switch_s"] > 0
    assert m["release_cost_samples"] >= 0 and m["kernel_contention_samples"] >= 0
    assert m["probe_s"] > 0
    assert m["other_load"] is None or 0.0 <= m["other_load"] <= 1.0
    m["rounds"].clear()  # a copy: the cached measurement is untouched
    assert len(measure_gil_machine(rounds=1)["rounds"]) == 1


def test_release_probe_counts_the_pairs_throughput_and_skips_preemptions():
    # Two threads' iteration ends, alternating every 2 us (each thread every
    # 4 us): the pair's throughput is 2 us an iteration. A 5 ms hole with no
    # iteration ending (a preemption) is left out, not averaged in.
    a = [i * 4e-6 for i in range(500)]
    b = [2e-6 + i * 4e-6 for i in range(500)]
    assert _per_release([a, b], 0.0, 1.0) == pytest.approx(2e-6)
    a_gap = a[:250] + [t + 5e-3 for t in a[250:]]
    b_gap = b[:250] + [t + 5e-3 for t in b[250:]]
    assert _per_release([a_gap, b_gap], 0.0, 1.0) == pytest.approx(2e-6, rel=1e-3)
    # Only iterations inside the window count; too few give NaN.
    assert math.isnan(_per_release([a], 0.0, 100e-6))


def test_robust_statistics_of_the_machine_probes():
    # A wake-up over 3x the median is a preemption, not a latency.
    assert _trim_wakes([30e-6, 40e-6, 50e-6, 1e-3]) == [30e-6, 40e-6, 50e-6]
    # The interquartile mean ignores a wild value either side.
    assert _iq_mean([-9.0, 1.0, 2.0, 3.0, 4.0, 99.0, math.nan]) == pytest.approx(2.5)
    assert _iq_mean([2.0, 4.0]) == pytest.approx(3.0)
    assert math.isnan(_iq_mean([]))
    # Contention is a slow-down: within [0, 1], NaN stays NaN (no sample).
    assert _clamp(-0.1) == 0.0 and _clamp(3.0) == 1.0 and _clamp(0.2) == 0.2
    assert math.isnan(_clamp(math.nan))
    # Contention: spells of a shared host core (slow-downs over 0.5) as a
    # minority do not move it; as the majority they are the machine.
    assert _contention_of([0.0, 0.01, 0.02, 0.9, 0.92]) == (pytest.approx(0.01), 0.4)
    assert _contention_of([0.01, 0.8, 0.9, 0.92])[0] == pytest.approx(0.85)
    assert _contention_of([0.1, 3.0, -1.0])[0] == pytest.approx(0.05)  # clamped: 0.1, 1, 0
    c, shared = _contention_of([])
    assert math.isnan(c) and shared == 0.0
    # The scheduler's queueing count: a thread that does not exist queued 0 s.
    assert _queued_s([2**31 - 1]) == 0.0 and _queued_s([threading.get_native_id()]) >= 0.0


def _engine(hidden, batch):
    return {
        "dataset": "classification",
        "n_samples": 2000,
        "n_features": 32,
        "n_classes": 4,
        "hidden": hidden,
        "batch_size": batch,
        "epochs": 2,
    }


def test_calibration_splits_a_step_and_orders_workloads():
    narrow = calibrate(_engine([8], 16), machine=False)
    wide = calibrate(_engine([512, 512], 256), machine=False)
    for cal in (narrow, wide):
        assert 0.0 <= cal["p_gemm"] <= cal["p"] <= 1.0
        assert cal["step_time"] == pytest.approx(cal["python_time"] + cal["numeric_time"])
        assert cal["releases_per_step"] > 0
        # Without machine constants the GIL prediction is Amdahl's ceiling.
        assert cal["predicted_2"] == pytest.approx(amdahl(cal["p"], 2))
        assert set(cal["predictions"]["threads"]) == {str(n) for n in PREDICT_N}
        # No GIL and no measured contention: n threads give n.
        assert cal["predictions"]["no_gil"]["16"] == pytest.approx(16.0)
    # A narrow model is more Python-bound than a wide one (same run: the
    # 4000x difference in flops per step leaves a wide margin on any machine).
    assert narrow["p"] < wide["p"]
    assert wide["predicted_2"] > narrow["predicted_2"]

    # Release durations are recorded: wide GEMMs last longer than narrow ones.
    def mean_bucket(c):
        h = c["release_durations_us_log2"]
        return sum(b * n for b, n in enumerate(h)) / sum(h)

    assert mean_bucket(wide) > mean_bucket(narrow)


# Made-up machine constants: the model's mechanics, not this machine's speed.
MACHINE = {
    "wake_s": 20e-6,
    "wake_samples_s": [20e-6],
    "release_cost_s": 1e-6,
    "kernel_contention": 0.0,
    "switch_s": 0.005,
    "rounds": [
        {"wake_s": 20e-6, "release_cost_s": 0.5e-6, "kernel_contention": 0.0},
        {"wake_s": 20e-6, "release_cost_s": 2e-6, "kernel_contention": 0.0},
    ],
}


def test_release_costs_lower_the_prediction_below_amdahl_and_give_a_band():
    cal = calibrate(_engine([16], 16), machine=MACHINE)
    assert cal["gil_machine"] == MACHINE
    assert cal.prediction(2) < cal["amdahl_2"]
    lo, hi = cal["predicted_2_band"]
    # The rounds' costly round predicts less, the cheap one more: a real band.
    assert lo < cal["predicted_2"] < hi
    assert prediction_band(cal, 2) == pytest.approx([lo, hi])
    # The prediction is a function of the calibration: the same twice.
    assert cal.prediction(4) == predict_threads(cal, 4)


def test_blas_speedup_is_measured():
    s = measure_blas_speedup(_engine([64], 64), threads=2, epochs=1, repeats=1)
    assert s > 0 and math.isfinite(s)


PRE = "import numpy as np\nfrom threadpoolctl import threadpool_limits\n"
PURE_PYTHON = PRE + (
    "def work():\n    s = 0\n    for i in range(12_000_000):\n        s += i * i\nwork()\n"
)
BIG_GEMM = PRE + (
    "a = np.ones((600, 600), np.float32)\n"
    "o = np.empty_like(a)\n"
    "def work():\n"
    "    for _ in range(120):\n"
    "        np.dot(a, a, out=o)\n"
    "with threadpool_limits(1):\n"
    "    work()\n"
)


@pytest.mark.skipif(not py_spy_available(), reason="py-spy (mlpar[profile]) not installed")
# Known answers, not speeds: pure Python holds the GIL in (nearly) every sample,
# a big GEMM in (nearly) none; the bounds leave room for a busy machine.
@pytest.mark.parametrize("code, low, high", [(PURE_PYTHON, 0.0, 0.4), (BIG_GEMM, 0.6, 1.0)])
def test_sampling_cross_check_on_known_workloads(code, low, high):
    r = sample_gil(code, marker="work")
    assert r["samples"] > 20
    assert low <= r["p"] <= high, r
    assert not math.isnan(r["p"])
