"""The GIL/BLAS decomposition on workloads with known answers."""

import math

import pytest

from mlpar.analysis.gilmodel import (
    amdahl,
    calibrate,
    handoff_at,
    mean_handoff,
    measure_blas_speedup,
    measure_call_overhead,
    measure_handoff_cost,
    predict_threads,
    py_spy_available,
    sample_gil,
)


def test_amdahl_limits():
    assert amdahl(0.0, 8) == pytest.approx(1.0)
    assert amdahl(1.0, 8) == pytest.approx(8.0)
    assert amdahl(0.5, 2) == pytest.approx(1 / 0.75)
    assert amdahl(1.7, 2) == pytest.approx(2.0)  # clipped to [0, 1]


def test_prediction_is_amdahl_without_handoffs_and_lower_with_them():
    for p in (0.0, 0.3, 0.9):
        assert predict_threads(p, 2) == pytest.approx(amdahl(p, 2))
        assert predict_threads(p, 2, releases_per_s=1e5, handoff_s=2e-6) < amdahl(p, 2)
    assert predict_threads(0.5, 1, releases_per_s=1e5, handoff_s=1e-5) == 1.0


def test_machine_constants_are_measured():
    # Structure, not speed: positive, finite, and the one ordering with a wide
    # margin (16x the flops) measured in the same run.
    c = measure_call_overhead(iters=2000)
    assert c > 0 and math.isfinite(c)
    short = measure_handoff_cost(m=64, k=32, budget_s=0.02, repeats=1)
    long = measure_handoff_cost(m=128, k=128, budget_s=0.02, repeats=1)
    assert 0 < short[0] < long[0]  # bigger operands, longer kernels
    for kernel_s, handoff_s in (short, long):
        assert math.isfinite(kernel_s) and math.isfinite(handoff_s) and handoff_s >= 0.0


def test_handoff_interpolation_and_histogram_average():
    curve = ((1e-6, 1e-6), (1e-5, 3e-6))
    assert handoff_at(1e-7, curve) == 1e-6  # clamped below
    assert handoff_at(1e-3, curve) == 3e-6  # clamped above
    assert handoff_at(10**-5.5, curve) == pytest.approx(2e-6)  # halfway in log scale
    assert mean_handoff([0, 0, 0], curve) == 0.0
    # bucket 0 (< 1 µs) costs the short end, bucket 6 (32-64 µs) the long end
    assert mean_handoff([1, 0, 0, 0, 0, 0, 1], curve) == pytest.approx(2e-6)


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
    narrow = calibrate(_engine([8], 16), curve=())
    wide = calibrate(_engine([512, 512], 256), curve=())
    for cal in (narrow, wide):
        assert 0.0 <= cal["p_gemm"] <= cal["p"] <= 1.0
        assert cal["step_time"] == pytest.approx(cal["python_time"] + cal["numeric_time"])
        assert cal["releases_per_step"] > 0
        assert cal["predicted_2"] == pytest.approx(amdahl(cal["p"], 2))
    # A narrow model is more Python-bound than a wide one (same run: the
    # 4000x difference in flops per step leaves a wide margin on any machine).
    assert narrow["p"] < wide["p"]
    assert wide["predicted_2"] > narrow["predicted_2"]

    # Release durations are recorded: wide GEMMs last longer than narrow ones.
    def mean_bucket(c):
        h = c["release_durations_us_log2"]
        return sum(b * n for b, n in enumerate(h)) / sum(h)

    assert mean_bucket(wide) > mean_bucket(narrow)


def test_hand_offs_lower_the_prediction_below_amdahl():
    curve = ((1e-6, 2e-6), (1e-4, 4e-6))
    cal = calibrate(_engine([16], 16), curve=curve)
    assert cal["handoff_s"] > 0
    assert cal.prediction(2) < cal["amdahl_2"]


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
