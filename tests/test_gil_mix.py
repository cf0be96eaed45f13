"""A sweep of mixed shapes predicted from several calibrated draws: the mixing rule.

Synthetic calibrations with known predictions, so the answer is closed form;
nothing here depends on the machine's speed.
"""

import pytest

from mlpar.analysis._draws import mix_calibrations, time_shares, workload_weight
from mlpar.analysis.gilmodel import Calibration, mix_draws, predict_mixed
from mlpar.space import expand_space

BASE = {"dataset": "iris", "epochs": 10, "batch_size": 32}


def _cal(s2, s4=None, band=None, epoch_time=1.0):
    threads = {"2": s2, "4": s4 or s2}
    return Calibration(
        p=0.5,
        epoch_time=epoch_time,
        overhead_time=0.0,
        predictions={"threads": dict(threads), "no_gil": {"2": 2.0, "4": 4.0}},
        predicted_2=s2,
        predicted_2_band=band or [s2, s2],
    )


def test_the_mix_is_the_time_weighted_harmonic_mean():
    fast, slow = _cal(2.0, band=[1.8, 2.2]), _cal(0.5, band=[0.4, 0.6])
    cal = mix_draws(fast, [(3.0, fast), (3.0, slow)])  # equal shares of the time
    # Half the time sped up 2x, half slowed to 0.5x: 1 / (0.5/2 + 0.5/0.5).
    assert cal["predicted_2"] == pytest.approx(0.8)
    assert cal.prediction(2) == pytest.approx(0.8)
    assert cal["predicted_2_band"] == pytest.approx(
        [1 / (0.5 / 1.8 + 0.5 / 0.4), 1 / (0.5 / 2.2 + 0.5 / 0.6)]
    )
    assert cal["predictions"]["no_gil"]["2"] == pytest.approx(2.0)
    assert [d["share"] for d in cal["draws"]] == [0.5, 0.5]
    # The draws keep their own predictions, not the mixed ones.
    assert cal["draws"][0]["calibration"]["predicted_2"] == 2.0


def test_one_draw_predicts_as_itself():
    cal = mix_draws(_cal(1.5), [(1.0, _cal(1.5))])
    assert cal["predicted_2"] == pytest.approx(1.5)


def test_predict_mixed_without_draws_is_the_calibrations_own():
    cal = {"p": 0.0, "gil_machine": None}
    # No machine constants: Amdahl's ceiling, 1.0 for a step that never releases.
    assert predict_mixed(cal, 2) == pytest.approx(1.0)


def _trials(widths):
    return expand_space({"hidden": [[w] for w in widths]}, seeds=1, random_state=0)


def test_time_shares_cover_every_trial_once_heaviest_first():
    trials = _trials([4, 8, 16, 32, 64, 128])
    groups = time_shares(trials, BASE, 3)
    seen = [t.key for g in groups for _, t in g]
    assert sorted(seen) == sorted(t.key for t in trials)
    weights = [w for g in groups for w, _ in g]
    assert weights == sorted(weights, reverse=True)
    assert groups[0][0][1].params["hidden"] == [128]
    assert weights[0] == workload_weight({**BASE, "hidden": [128]})


def test_a_uniform_sweep_is_not_mixed_and_a_mixed_one_calibrates_each_shape_once():
    calls = []

    def calibrate_one(trial):
        calls.append(trial.params["hidden"])
        return _cal(0.5)

    uniform = expand_space({"hidden": [[64]], "lr": [0.01, 0.1]}, seeds=2, random_state=0)
    cal = _cal(2.0)
    assert (
        mix_calibrations(cal, uniform[0], uniform, BASE, calibrate_one=calibrate_one, draws=3)
        is cal
    )
    assert "draws" not in cal and calls == []

    mixed = _trials([8, 64, 256])
    probe = max(mixed, key=lambda t: workload_weight({**BASE, **t.params}))
    cal = mix_calibrations(_cal(2.0), probe, mixed, BASE, calibrate_one=calibrate_one, draws=3)
    assert len(calls) == len(set(map(str, calls))) == len(cal["draws"]) - 1
    assert [256] not in calls  # the heaviest is the probe's own calibration
    assert sum(d["share"] for d in cal["draws"]) == pytest.approx(1.0)
    assert 0.5 < cal["predicted_2"] < 2.0
