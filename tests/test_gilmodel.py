"""The GIL/BLAS decomposition on workloads with known answers."""

import math

import pytest

from mlpar.gilmodel import (
    amdahl, calibrate, measure_call_overhead, measure_handoff_cost, predict_threads,
    py_spy_available, sample_gil,
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


def test_machine_constants_are_sane():
    c = measure_call_overhead(iters=2000)
    assert 1e-8 < c < 1e-3
    h = measure_handoff_cost(iters=500, repeats=1)
    assert 0.0 <= h < 1e-2


def _engine(hidden, batch):
    return {"dataset": "classification", "n_samples": 2000, "n_features": 32,
            "n_classes": 4, "hidden": hidden, "batch_size": batch, "epochs": 2}


def test_calibration_splits_a_step_and_orders_workloads():
    narrow = calibrate(_engine([8], 16), handoff_s=0.0)
    wide = calibrate(_engine([512, 512], 256), handoff_s=0.0)
    for cal in (narrow, wide):
        assert 0.0 <= cal["p_gemm"] <= cal["p"] <= 1.0
        assert cal["step_time"] == pytest.approx(cal["python_time"] + cal["numeric_time"])
        assert cal["releases_per_step"] > 0
        assert cal["predicted_2"] == pytest.approx(amdahl(cal["p"], 2))
    # A narrow model is Python-bound, a wide one BLAS-bound.
    assert narrow["p"] < 0.5 < wide["p"]
    assert wide["predicted_2"] > narrow["predicted_2"]


PRE = "import numpy as np\nfrom threadpoolctl import threadpool_limits\n"
PURE_PYTHON = PRE + (
    "def work():\n"
    "    s = 0\n"
    "    for i in range(6_000_000):\n"
    "        s += i * i\n"
    "work()\n")
BIG_GEMM = PRE + (
    "a = np.ones((600, 600), np.float32)\n"
    "o = np.empty_like(a)\n"
    "def work():\n"
    "    for _ in range(120):\n"
    "        np.dot(a, a, out=o)\n"
    "with threadpool_limits(1):\n"
    "    work()\n")


@pytest.mark.skipif(not py_spy_available(), reason="py-spy (mlpar[profile]) not installed")
@pytest.mark.parametrize("code, low, high", [(PURE_PYTHON, 0.0, 0.15), (BIG_GEMM, 0.85, 1.0)])
def test_sampling_cross_check_on_known_workloads(code, low, high):
    r = sample_gil(code, marker="work")
    assert r["samples"] > 20
    assert low <= r["p"] <= high, r
    assert not math.isnan(r["p"])
