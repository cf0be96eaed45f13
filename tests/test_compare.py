"""Backend comparison bookkeeping and the advice built on the GIL model."""

import re

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


def test_the_stack_axis_repeats_each_one_thread_setting_stacked():
    s = compare_settings(["serial", "processes"], [2], cores=2, stacks=(1, 16))
    labels = [x.label for x in s]
    assert labels == [
        "serial x1 blas1",
        "serial x1 blas2",
        "processes x2 blas1",
        "serial x1 blas1 stack16",
        "processes x2 blas1 stack16",
    ]
    assert len({x.slug for x in s}) == len(s)  # one journal file each
    assert compare_settings(["serial"], [2], cores=2, stacks=(1,)) == compare_settings(
        ["serial"], [2], cores=2
    )


def _stack_cal():
    """A synthetic calibration: 3 s of Python and 1 s of numerics per step."""
    return Calibration(
        python_time=3.0,
        numeric_time=1.0,
        p=0.25,
        p_gemm=0.25,
        releases_per_step=10.0,
        predictions={"threads": {"2": 1.0}, "no_gil": {"2": 2.0}},
    )


def test_a_stack_pays_the_python_part_of_a_step_once():
    from mlpar.analysis.advice import predict_stacked_options, stacked_speedup

    cal = _stack_cal()
    assert stacked_speedup(cal, 1) == 1.0
    assert stacked_speedup(cal, 4) == pytest.approx(4 * 4 / (3 + 4))
    assert stacked_speedup(cal, 1000) < 4.0  # at most (P + N) / N
    opts = predict_stacked_options(
        cal, 4, cores=2, trial_times=[1.0] * 8, startup_s=0.0, backends=["serial", "processes"]
    )
    assert opts["serial, stack=4"] == pytest.approx(16 / 7)
    # Two stacks of four on two workers: each worker trains one.
    assert opts["processes, n_jobs=2, stack=4"] == pytest.approx(2 * 16 / 7)
    assert not any(label.startswith("threads") for label in opts)
    # A gain measured at one size sets r = P / N: it is reproduced there, and
    # the model gives the others (here r = 2).
    cal["stack_gain"] = {"4": 2.0}
    assert stacked_speedup(cal, 4) == pytest.approx(2.0)
    assert stacked_speedup(cal, 2) == pytest.approx(2 * 3 / 4)
    cal["stack_gain"] = {"4": 0.9}  # measured slower: no gain at any size
    assert stacked_speedup(cal, 8) == pytest.approx(1.0)


def test_stack_gain_is_measured_on_real_stacks():
    from mlpar.analysis.advice import measure_stack_gain

    params = {"dataset": "iris", "hidden": [4], "epochs": 1, "batch_size": 16}
    assert measure_stack_gain(params, 1) == 1.0
    assert measure_stack_gain(params, 3, seed=5) > 0


def test_a_short_stack_timing_is_carried_to_the_trials_epochs():
    from mlpar.analysis._stacking import extrapolated_gain

    # One by one: 1 s fixed + 0.1 s an epoch; stacked: 1 s + 0.025 s an epoch.
    short, long = (2, 1.2, 1.05), (10, 2.0, 1.25)
    assert extrapolated_gain(short, long, epochs=130, k=4) == pytest.approx(14.0 / 4.25)
    assert extrapolated_gain(short, long, epochs=10, k=4) == pytest.approx(2.0 / 1.25)
    assert extrapolated_gain(short, long, epochs=10**6, k=3) == 3.0  # at most k
    # Noise that leaves the stacked slope flat: the longer timing's ratio.
    assert extrapolated_gain((2, 1.2, 1.3), (10, 2.0, 1.25), epochs=130, k=4) == 2.0 / 1.25


def test_compare_measures_stacked_settings_against_unstacked_serial(tiny, tmp_path, capsys):
    import json

    from mlpar.cli import main

    run_dir = tmp_path / "cmp"
    args = [
        "compare",
        str(tiny),
        "--repeats",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--backends",
        "serial",
        "--no-blas-axis",
        "--set",
        "compare.stack=[1, 16]",
    ]
    assert main(args) == 0
    assert "serial x1 blas1 stack16" in capsys.readouterr().out
    doc = json.loads((run_dir / "compare.json").read_text())
    rows = {r["label"]: r for r in doc["groups"][0]["summary"]}
    stacked = rows["serial x1 blas1 stack16"]
    assert stacked["stack"] == 16 and rows["serial x1 blas1"]["stack"] is None
    # The group's 4 trials make one stack of 4: its gain is timed, and kept, at 4.
    assert set(doc["groups"][0]["calibration"]["stack_gain"]) == {"4"}
    assert stacked["ok"] == 4 and stacked["speedup"] > 0
    assert stacked["measured_over_predicted"] == pytest.approx(
        stacked["speedup"] / stacked["predicted"]
    )
    (journal,) = (run_dir / "compare").glob("*-s16-r0.jsonl")
    trials = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert {t["stack_size"] for t in trials if t.get("type", "trial") == "trial"} == {4}


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


# Made-up machine constants: the advice's mechanics, not this machine's speed.
_MACHINE = {"wake_s": 20e-6, "release_cost_s": 1e-6, "kernel_contention": 0.0, "switch_s": 0.005}


def _cal(p=0.9, releases=1000.0, step_s=0.01):
    # A step of ``step_s``: ``p`` of it in kernels, ``releases`` per second of it.
    return Calibration(
        p=p,
        p_gemm=p * 0.8,
        step_time=step_s,
        python_time=(1.0 - p) * step_s,
        numeric_time=p * step_s,
        releases_per_step=releases * step_s,
        releases_per_s=releases,
        gil_machine=_MACHINE,
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


def test_a_stack_runs_the_same_python_around_longer_kernels():
    from mlpar.analysis._stacking import stacked_calibration
    from mlpar.analysis.advice import predict_stacked_options

    cal = _cal(p=0.2)  # a 10 ms step: 8 ms of Python, 2 ms of kernels
    cal["stack_gain"] = {"4": 2.5}
    k4 = stacked_calibration(cal, 4)
    # Four models stacked: 4 x 10 ms / 2.5 = 16 ms a step, still 8 ms of it
    # Python, released as often; the kernels do the rest.
    assert k4["python_time"] == cal["python_time"]
    assert k4["numeric_time"] == pytest.approx(0.008)
    assert k4["p"] == pytest.approx(0.5)
    assert k4["releases_per_step"] == cal["releases_per_step"]
    assert stacked_calibration(cal, 1)["numeric_time"] == cal["numeric_time"]
    # More of the stacked step runs without the GIL: threads gain more on it.
    assert cal.prediction(2) < k4.prediction(2) <= 2.0
    opts = predict_stacked_options(
        cal,
        4,
        cores=2,
        trial_times=[1.0] * 8,
        startup_s=0.0,
        backends=["serial", "threads", "processes"],
    )
    # Two stacks of four, one per thread.
    assert opts["threads, n_jobs=2, stack=4"] == pytest.approx(2.5 * k4.prediction(2))
    # A point: the machine probe's band is the single step's, not the stack's.
    from mlpar.analysis.advice import option_bands

    s = opts["threads, n_jobs=2, stack=4"]
    assert option_bands(cal, opts, 2, 8)["threads, n_jobs=2, stack=4"] == [s, s]


def test_forked_is_advised_only_where_its_start_up_gains_more_than_five_percent():
    from mlpar.analysis.advice import best_option

    close = {"serial": 1.0, "processes, n_jobs=2": 1.90, "forked, n_jobs=2": 1.98}
    assert best_option(close) == "processes, n_jobs=2"
    far = {"serial": 1.0, "processes, n_jobs=2": 1.20, "forked, n_jobs=2": 1.80}
    assert best_option(far) == "forked, n_jobs=2"
    stacked = {"processes, n_jobs=2, stack=4": 3.0, "forked, n_jobs=2, stack=4": 3.1}
    assert best_option(stacked) == "processes, n_jobs=2, stack=4"
    # No processes twin measured: forked it is.
    assert best_option({"serial": 1.0, "forked, n_jobs=2": 1.5}) == "forked, n_jobs=2"
    assert best_option({"threads, n_jobs=2": 1.5, "processes, n_jobs=2": 1.4}) == (
        "threads, n_jobs=2"
    )


def test_one_trial_cannot_be_parallelized_across_trials():
    opts = predict_options(_cal(), cores=2, trial_times=[5.0], startup_s=0.0)
    assert opts["threads, n_jobs=2"] == 1.0
    assert opts["processes, n_jobs=2"] == pytest.approx(1.0)


def test_option_labels_map_to_settings():
    assert option_setting("serial", 8) == ("serial", 1, 1)
    assert option_setting("serial, blas_threads=8", 8) == ("serial", 1, 8)
    assert option_setting("threads, n_jobs=8", 8) == ("threads", 8, 1)
    from mlpar.analysis.advice import option_stack

    assert option_setting("processes, n_jobs=2, stack=16", 8) == ("processes", 2, 1)
    assert option_setting("serial, stack=4", 8) == ("serial", 1, 1)
    assert option_stack("serial, stack=4") == 4 and option_stack("serial") is None


def test_advise_offers_stacks_only_for_trials_that_share_one_and_measured_faster(
    monkeypatch,
):
    from mlpar.analysis import advice
    from mlpar.config import config_from_dict

    def config(params):
        return config_from_dict(
            {"name": "s", "data": {"dataset": "iris"}, "sweep": {"params": params}}
        )

    cal = _stack_cal()
    gains = iter([3.0, 0.9])
    monkeypatch.setattr(advice, "measure_stack_gain", lambda *a, **k: next(gains))
    from mlpar.space import expand_space

    same = {"lr": [0.01, 0.1], "alpha": [1e-4, 1e-3]}
    trials = expand_space(same, seeds=1, random_state=0)
    args = (cal, 2, [1.0] * 4, {"processes": 0.0}, ["serial", "processes"])
    opts = advice._stack_options(config(same), trials, trials[0], *args)
    assert set(opts) == {"serial, stack=4", "processes, n_jobs=2, stack=4"}
    assert cal["stack_gain"] == {"4": 3.0}
    assert advice._stack_options(config(same), trials, trials[0], *args) == {}  # 0.9: slower
    numeric = Calibration({**cal, "python_time": 0.01, "numeric_time": 1.0})
    assert advice._stack_options(config(same), trials, trials[0], numeric, *args[1:]) == {}
    mixed = {"hidden": [[8], [16]]}
    trials = expand_space(mixed, seeds=2, random_state=0)
    assert advice._stack_options(config(mixed), trials, trials[0], *args) == {}


def test_advice_names_its_stack():
    from mlpar.analysis.advice import Advice

    rec = Advice(
        "processes", 2, 1, 7.5, {"processes, n_jobs=2, stack=16": 7.5}, {}, "why", stack=16
    )
    assert rec.format().startswith(
        "recommended: backend=processes n_jobs=2 blas_threads=1 stack=16"
    )


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


def test_every_compare_checks_the_model_in_strict_json(tiny, tmp_path, capsys):
    import json

    from mlpar.cli import main

    run_dir = tmp_path / "cmp"
    args = ["compare", str(tiny), "--repeats", "1", "--run-dir", str(run_dir), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "measured/predicted" in out
    assert re.search(r"Measured / predicted: .*threads x2 blas1 \d+\.\d\d", out)

    def refuse(name):
        raise AssertionError(f"compare.json holds a bare {name}")

    doc = json.loads((run_dir / "compare.json").read_text(), parse_constant=refuse)
    (group,) = doc["groups"]
    rows = {r["label"]: r for r in group["summary"]}
    th = rows["threads x2 blas1"]
    assert th["measured_over_predicted"] == pytest.approx(th["speedup"] / th["predicted"])
    lo, hi = th["predicted_band"]
    assert lo <= th["predicted"] <= hi
    cal = group["calibration"]
    assert set(cal["predictions"]["threads"]) == {"2", "4", "8", "16"}
    assert doc["gil_machine"]["rounds"] and "undecided" in group["advice"]


def test_advice_says_when_the_band_is_too_wide_to_decide():
    from mlpar.analysis.advice import Advice, option_bands, undecided_options

    opts = {"threads, n_jobs=2": 1.3, "processes, n_jobs=2": 1.2, "serial": 1.0}
    cal = {"predicted_2_band": [1.1, 1.5]}
    bands = option_bands(cal, opts, 2, 8)
    assert bands["threads, n_jobs=2"] == [1.1, 1.5] and bands["serial"] == [1.0, 1.0]
    # 1.2 lies inside the threads band: too close to call; serial does not.
    assert undecided_options(opts, bands) == ("processes, n_jobs=2",)
    text = Advice(
        backend="threads",
        n_jobs=2,
        blas_threads=1,
        predicted_speedup=1.3,
        options=opts,
        calibration={},
        explanation="",
        bands=bands,
        undecided=undecided_options(opts, bands),
    ).format()
    assert "Too close to decide" in text and "(band 1.10-1.50x)" in text
    # A narrow band decides.
    narrow = option_bands({"predicted_2_band": [1.28, 1.32]}, opts, 2, 8)
    assert undecided_options(opts, narrow) == ()


def test_compare_predicts_processes_with_a_warm_fork_servers_start_up(
    tiny, tmp_path, monkeypatch, capsys
):
    import json

    from mlpar.analysis import _startup
    from mlpar.cli import main
    from mlpar.environment import cpu_count

    if cpu_count() < 2:
        pytest.skip("one core: compare predicts no parallel setting")
    # The first start-up includes the fork server's; compare's runs reuse it.
    starts = iter([0.5, 0.01])
    monkeypatch.setattr(_startup, "measure_process_startup", lambda n, backend: next(starts))
    run_dir = tmp_path / "cmp"
    args = ["compare", str(tiny), "--repeats", "1", "--run-dir", str(run_dir), "--no-progress",
            "--backends", "serial,processes", "--no-blas-axis"]  # fmt: skip
    assert main(args) == 0
    doc = json.loads((run_dir / "compare.json").read_text())
    assert doc["process_startup_s"] == {"processes": 0.01}
