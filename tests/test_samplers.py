"""Adaptive search with Optuna's samplers on mlpar's backends (issue 16)."""

import builtins
import os
import signal

import pytest
from scipy import stats

optuna = pytest.importorskip("optuna", reason="the optuna extra is not installed")

from mlpar.results import SweepResult  # noqa: E402
from mlpar.samplers import SamplerSource, make_sampler  # noqa: E402
from mlpar.sweep import sweep  # noqa: E402

SPACE = {
    "x": stats.uniform(-2.0, 4.0),
    "lr": stats.loguniform(1e-4, 1e-1),
    "n": stats.randint(1, 5),
    "widths": [[8], [8, 8]],
}


def quadratic(params, seed):
    """A smooth score with its best at x = 0.5, plus the other params' small terms."""
    n, widths = params.get("n", 0), params.get("widths", [])
    score = -((params["x"] - 0.5) ** 2) - 0.01 * n - 0.1 * len(widths)
    return {"val_score": score, "lr": params.get("lr")}


def crash_on_first(params, seed):
    if params["x"] < -1.0 and not os.environ.get("MLPAR_TEST_NO_CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
    return quadratic(params, seed)


def _trials(result):
    return [
        (r.sampler_trial, r.key, r.seed, r.params)
        for r in sorted(result, key=lambda r: r.sampler_trial)
    ]


def test_same_sampler_seed_same_trials_on_every_backend():
    runs = {
        backend: sweep(
            quadratic,
            SPACE,
            backend=backend,
            n_jobs=1,
            n_iter=8,
            sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=3),
            progress=False,
        )
        for backend in ("serial", "threads", "processes")
    }
    first = _trials(runs["serial"])
    assert [t[0] for t in first] == list(range(8))
    assert all(_trials(r) == first for r in runs.values())
    assert all(row.status == "ok" for row in runs["serial"])
    widths = {tuple(row.params["widths"]) for row in runs["serial"]}
    assert widths <= {(8,), (8, 8)}
    assert all(
        1 <= row.params["n"] <= 4 and isinstance(row.params["n"], int) for row in runs["serial"]
    )


def test_parallel_ask_and_tell_keeps_n_jobs_in_flight_and_finishes_n_trials():
    result = sweep(
        quadratic,
        SPACE,
        backend="threads",
        n_jobs=2,
        n_iter=10,
        sampler=make_sampler("tpe", seed=0, n_jobs=2),
        progress=False,
    )
    assert sorted(r.sampler_trial for r in result) == list(range(10))
    assert len({r.key for r in result}) == 10


def test_tpe_samples_near_the_optimum_more_often_than_random():
    def near(sampler):
        result = sweep(
            quadratic, {"x": stats.uniform(-2.0, 4.0)}, n_iter=30, sampler=sampler, progress=False
        )
        rows = sorted(result, key=lambda r: r.sampler_trial)
        assert all(r.status == "ok" for r in rows)
        return sum(abs(r.params["x"] - 0.5) < 0.25 for r in rows[15:])

    tpe = near(optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    assert tpe > near(optuna.samplers.RandomSampler(seed=0)) and tpe >= 4


def test_dask_backend_runs_a_sampler_search():
    pytest.importorskip("distributed")
    result = sweep(
        quadratic,
        SPACE,
        backend="dask",
        n_jobs=2,
        n_iter=6,
        sampler=make_sampler("tpe", seed=1, n_jobs=2),
        progress=False,
    )
    assert sorted(r.sampler_trial for r in result) == list(range(6))
    assert all(r.status == "ok" for r in result)


def test_a_sigkilled_worker_is_crashed_told_fail_and_the_study_goes_on(monkeypatch):
    told = []
    original = SamplerSource.tell

    def spy(self, row):
        original(self, row)
        told.append((row.status, self.study.trials[row.sampler_trial].state))

    monkeypatch.setattr(SamplerSource, "tell", spy)
    result = sweep(
        crash_on_first,
        {"x": [-1.5, 1.0, 0.5], "lr": stats.loguniform(1e-3, 1e-1)},
        backend="processes",
        n_jobs=2,
        n_iter=6,
        sampler=optuna.samplers.RandomSampler(seed=0),
        progress=False,
    )
    statuses = [r.status for r in result]
    assert "crashed" in statuses and "ok" in statuses and len(result) == 6
    fail = optuna.trial.TrialState.FAIL
    assert all(state == fail for status, state in told if status == "crashed")
    assert all(
        state == optuna.trial.TrialState.COMPLETE for status, state in told if status == "ok"
    )


def test_resume_rebuilds_the_study_from_the_journal_and_continues_without_duplicates(tmp_path):
    journal = tmp_path / "j.jsonl"

    def run(n, resume):
        return sweep(
            quadratic,
            SPACE,
            n_iter=n,
            sampler=optuna.samplers.TPESampler(seed=2, n_startup_trials=3),
            journal=journal,
            resume=resume,
            progress=False,
        )

    run(5, False)
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:4]) + "\n")  # header + 3 rows: stopped after 3 trials
    done = run(5, True)
    assert sorted(r.sampler_trial for r in done) == list(range(5))
    assert len({r.key for r in done}) == 5
    again = SweepResult.from_journal(journal)
    assert len(again) == 5


def test_failed_and_diverged_trials_are_told_fail():
    source = SamplerSource(
        SPACE,
        optuna.samplers.RandomSampler(seed=0),
        n_trials=3,
        metric="val_score",
        mode="max",
        random_state=0,
    )
    source.resume([])
    asked = source.ask(3)
    assert len(asked) == 3 and source.ask(1) == []

    class Row:
        def __init__(self, key, status, metrics):
            self.key, self.status, self.metrics = key, status, metrics

    source.tell(Row(asked[0][1].key, "diverged", {"val_score": 1.0}))
    source.tell(Row(asked[1][1].key, "ok", {"val_score": float("nan")}))
    source.tell(Row(asked[2][1].key, "ok", {"val_score": 0.25}))
    states = [t.state for t in source.study.trials]
    fail, complete = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE
    assert states == [fail, fail, complete] and source.study.best_value == 0.25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_iter": None}, "n_trials"),
        ({"n_iter": 0}, "n_trials must be >= 1"),
        ({"space": {"x": [1, 2]}}, "grid only"),
        ({"space": [{"x": stats.uniform(0, 1)}]}, "one space"),
        ({"space": {"x": stats.norm(0, 1)}}, "unbounded"),
        ({"seeds": 2}, "seeds must be 1"),
    ],
)
def test_bad_sampler_input_is_one_line(kwargs, message):
    args = {"space": SPACE, "n_iter": 4, **kwargs}
    space = args.pop("space")
    with pytest.raises(ValueError, match=message) as info:
        sweep(quadratic, space, sampler=optuna.samplers.TPESampler(seed=0), progress=False, **args)
    assert "\n" not in str(info.value)


def test_grid_space_is_fine_for_random_sampler():
    result = sweep(
        quadratic,
        {"x": [0.0, 0.5], "n": [1], "widths": [[8]], "lr": [0.01]},
        n_iter=3,
        sampler=optuna.samplers.RandomSampler(seed=0),
        progress=False,
    )
    assert len(result) == 3 and len({r.key for r in result}) == 3


def test_unknown_sampler_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="tpe, gp, cmaes, random, auto"):
        make_sampler("hyperband")


def test_auto_is_gp_for_numeric_serial_and_tpe_otherwise():
    assert type(make_sampler("auto")).__name__ == "GPSampler"
    auto = make_sampler("auto", n_jobs=2)
    assert type(auto).__name__ == "TPESampler" and auto._constant_liar


def test_without_optuna_a_sampler_is_one_line_naming_the_extra(monkeypatch):
    real = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(ImportError, match=r"mlpar\[optuna\]") as info:
        sweep(quadratic, SPACE, n_iter=2, sampler="tpe-object", progress=False)
    assert "\n" not in str(info.value)


def test_yaml_sampler_section_runs_tpe_and_records_the_study(tmp_path):
    from mlpar.config import config_from_dict
    from mlpar.experiment import sweep_config

    config = config_from_dict(
        {
            "name": "t",
            "data": {"dataset": "digits"},
            "model": {"hidden": [8]},
            "train": {"epochs": 1},
            "sweep": {
                "params": {"lr": {"loguniform": [1e-3, 1e-1]}, "batch_size": {"choice": [32, 64]}},
                "sampler": {"name": "tpe", "n_trials": 4, "seed": 0},
            },
        }
    )
    assert config.to_dict()["sweep"]["sampler"]["n_trials"] == 4
    journal = tmp_path / "j.jsonl"
    result = sweep_config(config, journal=journal, progress=False, backend="serial")
    assert sorted(r.sampler_trial for r in result) == list(range(4))
    assert all(r.status == "ok" and r.params["batch_size"] in (32, 64) for r in result)
    again = sweep_config(config, journal=journal, resume=True, progress=False, backend="serial")
    assert len(again) == 4


def test_a_yaml_space_of_choices_only_runs_with_a_model_based_sampler():
    """YAML's choice is categorical (unlike a Python list, which means a grid)."""
    from mlpar.config import config_from_dict
    from mlpar.experiment import sweep_config

    config = config_from_dict(
        {
            "name": "t",
            "data": {"dataset": "digits"},
            "train": {"epochs": 1},
            "sweep": {
                "params": {"units": {"choice": [8, 16]}, "batch_size": {"choice": [32, 64]}},
                "sampler": {"name": "tpe", "n_trials": 3, "seed": 0},
            },
        }
    )
    result = sweep_config(config, progress=False, backend="serial")
    assert len(result) == 3 and all(r.status == "ok" for r in result)


def test_report_section_draws_optunas_plots_from_the_journal(tmp_path):
    pytest.importorskip("matplotlib")
    from mlpar.report._optuna import optuna_section

    journal = tmp_path / "j.jsonl"
    sweep(
        quadratic,
        SPACE,
        n_iter=6,
        sampler=optuna.samplers.RandomSampler(seed=0),
        journal=journal,
        progress=False,
    )
    md = optuna_section(SweepResult.from_journal(journal), tmp_path)
    assert md[0].startswith("## Optuna: RandomSampler on val_score (6 trials)")
    assert (tmp_path / "optuna_history.png").stat().st_size > 1000
    assert (tmp_path / "optuna_importance.png").stat().st_size > 1000
    plain = sweep(quadratic, {"x": [0.0]}, journal=tmp_path / "k.jsonl", progress=False)
    assert optuna_section(SweepResult.from_journal(tmp_path / "k.jsonl"), tmp_path) == []
    assert plain[0].sampler_trial is None
