"""Backend comparison bookkeeping and the advice built on the GIL model."""

import pytest

from mlpar.analysis.advice import option_setting, predict_options, trial_time_estimates
from mlpar.analysis.compare import CompareSetting, compare_settings, split_groups
from mlpar.analysis.gilmodel import Calibration
from mlpar.analysis.summary import group_table, summarize


def test_settings_share_one_thread_budget():
    s = compare_settings(["serial", "threads", "processes"], [1, 2, -1], cores=4)
    labels = [x.label for x in s]
    assert labels[:2] == ["serial x1 blas1", "serial x1 blas4"]
    assert "threads x4 blas1" in labels and "processes x2 blas1" in labels
    assert all(x.blas_threads == 1 for x in s if x.backend != "serial")
    assert len(labels) == len(set(labels))  # -1 == 4 cores is not run twice
    assert (
        compare_settings(["threads"], [2], cores=2, blas_axis=False)[0].label == "serial x1 blas1"
    )


def test_split_groups_by_swept_values():
    groups = split_groups({"units": [8, 64], "lr": [0.1, 0.2]}, ["units"])
    assert [label for label, _ in groups] == [{"units": 8}, {"units": 64}]
    assert groups[0][1] == {"units": [8], "lr": [0.1, 0.2]}
    grids = [{"units": [8], "epochs": [100]}, {"units": [64], "epochs": [10]}]
    assert [sub for _, sub in split_groups(grids, ["units"])] == grids
    assert split_groups({"lr": [0.1]}, []) == [({}, {"lr": [0.1]})]
    with pytest.raises(ValueError, match="compare.group_by: width must be swept"):
        split_groups({"lr": [0.1]}, ["width"])


def _run(backend, n_jobs, repeat, wall, trial_wall, workers):
    return {
        "backend": backend,
        "n_jobs": n_jobs,
        "blas_threads": 1,
        "repeat": repeat,
        "wall_time": wall,
        "n_trials": len(trial_wall),
        "n_ok": len(trial_wall),
        "trial_wall": trial_wall,
        "trial_cpu": trial_wall,
        "workers": workers,
    }


def test_summarize_pairs_repeats_and_measures_overheads():
    serial, threads = CompareSetting("serial", 1, 1), CompareSetting("threads", 2, 1)
    records = [
        _run("serial", 1, 0, 4.0, [1.0] * 4, ["a"] * 4),
        _run("threads", 2, 0, 2.5, [1.2] * 4, ["a", "b", "a", "b"]),
        _run("serial", 1, 1, 8.0, [2.0] * 4, ["a"] * 4),  # a slow repeat for both
        _run("threads", 2, 1, 5.0, [2.4] * 4, ["a", "b", "a", "b"]),
    ]
    rows = {r["label"]: r for r in summarize(records, [serial, threads])}
    t = rows["threads x2 blas1"]
    assert t["speedup"] == pytest.approx(1.6)  # median of 4/2.5 and 8/5
    assert t["efficiency"] == pytest.approx(0.8)
    assert t["inflation"] == pytest.approx(1.8 / 1.5)  # median trial time vs serial's
    # wall - the busiest worker's trial time: median of 2.5 - 2.4 and 5.0 - 4.8
    assert t["overhead"] == pytest.approx(0.15)
    assert rows["serial x1 blas1"]["speedup"] == pytest.approx(1.0)


def _cal(p=0.9, releases=1000.0, handoff=2e-6):
    return Calibration(
        p=p,
        p_gemm=p * 0.8,
        releases_per_s=releases,
        handoff_s=handoff,
        epoch_time=0.1,
        overhead_time=0.01,
    )


def test_advice_prefers_processes_for_long_python_bound_trials():
    opts = predict_options(_cal(p=0.1), cores=2, trial_times=[10.0] * 8, startup_s=1.0)
    assert max(opts, key=opts.get) == "processes, n_jobs=2"
    assert opts["threads, n_jobs=2"] < 1.1


def test_advice_prefers_threads_for_blas_bound_short_sweeps():
    opts = predict_options(
        _cal(p=0.98, releases=100.0), cores=2, trial_times=[0.3] * 4, startup_s=1.2
    )
    assert max(opts, key=opts.get) == "threads, n_jobs=2"
    assert opts["processes, n_jobs=2"] < 1.0  # start-up outweighs 1.2 s of work


def test_one_trial_cannot_be_parallelized_across_trials():
    opts = predict_options(_cal(), cores=2, trial_times=[5.0], startup_s=0.0)
    assert opts["threads, n_jobs=2"] == 1.0
    assert opts["processes, n_jobs=2"] == pytest.approx(1.0)


def test_option_labels_map_to_settings():
    assert option_setting("serial", 8) == ("serial", 1, 1)
    assert option_setting("serial, blas_threads=8", 8) == ("serial", 1, 8)
    assert option_setting("threads, n_jobs=8", 8) == ("threads", 8, 1)


def test_trial_time_estimates_scale_with_size_and_epochs():
    cal = _cal()
    probe = {"hidden": [256], "epochs": 10}
    small, same, longer = trial_time_estimates(
        cal, [{"hidden": [16], "epochs": 10}, probe, {"hidden": [256], "epochs": 20}], probe
    )
    assert same == pytest.approx(0.01 + 0.1 * 10)
    assert longer == pytest.approx(0.01 + 0.1 * 20)
    assert small < same / 5


def test_group_table_reports_prediction_error_and_advice():
    doc = {
        "cores": 2,
        "groups": [
            {
                "group": {"units": 8},
                "calibration": {"p": 0.5, "p_check": 0.45},
                "advice": {"setting": ["serial", 1, 1]},
                "summary": [
                    {
                        "backend": "serial",
                        "n_jobs": 1,
                        "blas_threads": 1,
                        "label": "serial x1 blas1",
                        "speedup": 1.0,
                    },
                    {
                        "backend": "threads",
                        "n_jobs": 2,
                        "blas_threads": 1,
                        "label": "threads x2 blas1",
                        "speedup": 0.6,
                        "predicted": 0.54,
                        "amdahl": 1.33,
                    },
                    {
                        "backend": "processes",
                        "n_jobs": 2,
                        "blas_threads": 1,
                        "label": "processes x2 blas1",
                        "speedup": 0.9,
                    },
                ],
            }
        ],
    }
    (row,) = group_table(doc)
    assert row["group"] == "units=8" and row["threads"] == 0.6
    assert row["error"] == pytest.approx(-0.1)
    assert row["best"] == "serial x1 blas1" and row["advised"] == "serial x1 blas1"
    assert row["advised_vs_best"] == pytest.approx(1.0)
