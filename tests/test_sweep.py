"""sweep(): seeds, rows, options, cooperative timeouts, journal streaming and resume."""

import doctest
import importlib
import json
import math
import os
import re
import threading
import time

import numpy as np
import pytest

import mlpar.results
from mlpar.context import time_left, trial_deadline
from mlpar.space import expand_space, trial_seed
from mlpar.sweep import SweepResult, sweep


def seeded(params, seed):
    """Report the seed; later configurations finish first (reversed completion order)."""
    time.sleep(0.02 * (4 - params["x"]))
    return {"seed": seed, "draw": float(np.random.default_rng(seed).random())}


def work(params, seed):
    rng = np.random.default_rng(seed)
    return {"score": float(rng.normal() + params["x"]), "x2": params["x"] ** 2}


@pytest.mark.parametrize(
    "backend, n_jobs", [("serial", None), ("threads", 4), ("threads", 2), ("processes", 2)]
)
def test_seeds_do_not_depend_on_backend_n_jobs_or_order(backend, n_jobs):
    space = {"x": [0, 1, 2, 3]}
    result = sweep(
        seeded, space, backend=backend, n_jobs=n_jobs, seeds=2, random_state=11, progress=False
    )
    trials = expand_space(space, seeds=2, random_state=11)
    assert [r.key for r in result] == [t.key for t in trials]
    for row, trial in zip(result, trials):
        assert row.seed == row.metrics["seed"] == trial.seed == trial_seed(11, trial.key)
        assert row.metrics["draw"] == np.random.default_rng(trial.seed).random()
    # Repeats of one configuration get different seeds.
    assert result[0].seed != result[1].seed


def test_rows_describe_where_and_how_each_trial_ran():
    result = sweep(work, {"x": [1, 2]}, backend="threads", n_jobs=2, blas_threads=1, progress=False)
    assert isinstance(result, SweepResult)
    for row in result:
        assert row.status == "ok" and row.attempts == 1 and row.error_type is None
        assert row.metrics["x2"] == row.params["x"] ** 2
        assert row.backend == "threads" and row.n_jobs == 2 and row.blas_threads == 1
        assert row.pid == os.getpid()
        assert row.thread_name.startswith("mlpar-trial-") and row.thread_id > 0
        assert row.started_at <= row.ended_at and row.wall_time >= 0 and row.cpu_time >= 0
    assert result.info["backend"] == "threads" and result.info["n_jobs"] == 2
    assert result.wall_time > 0


def test_fn_may_not_mutate_the_rows_params():
    def mutating(params, seed):
        seen = list(params["hidden"])
        params["hidden"].append(99)
        params["x"] = 99
        return {"seen": seen}

    result = sweep(mutating, {"x": [1], "hidden": [[8, 8]]}, seeds=2)
    assert [r.params for r in result] == [{"hidden": [8, 8], "x": 1}] * 2
    # The second repeat saw what the first did: its params were not touched.
    assert [r.metrics["seen"] for r in result] == [[8, 8], [8, 8]]


@pytest.mark.parametrize(
    "returned, message",
    [
        (0.5, "fn must return a dict of metrics, got float"),
        ({"model": object()}, "metric 'model' must be JSON-compatible"),
        ({1: 0.5}, "metric names must be str"),
    ],
)
def test_bad_return_values_fail_the_trial(returned, message):
    row = sweep(lambda params, seed: returned, {"x": [1]})[0]
    assert row.status == "failed" and row.error_type == "TypeError"
    assert message in row.error_message


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"timeout": 0}, ValueError, "timeout must be a positive number of seconds or None, got 0"),
        ({"retries": -1}, ValueError, "retries must be a non-negative integer, got -1"),
        (
            {"error_score": "ignore"},
            ValueError,
            "error_score must be 'raise' or a number, got 'ignore'",
        ),
        ({"blas_threads": 0}, ValueError, "blas_threads must be a positive integer or None, got 0"),
        (
            {"resume": True},
            ValueError,
            "resume=True needs the journal to resume: pass journal=<path>",
        ),
        ({"progress": "yes"}, TypeError, "progress must be True, False or None, got 'yes'"),
        (
            {"random_state": None},
            ValueError,
            "random_state must be a non-negative integer, got None",
        ),
    ],
)
def test_option_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        sweep(work, {"x": [1]}, **kwargs)


def test_fn_must_be_callable():
    with pytest.raises(
        TypeError, match=re.escape("fn must be callable as fn(params, seed), got str")
    ):
        sweep("work", {"x": [1]})


def test_unpicklable_fn_is_refused_before_anything_runs(tmp_path):
    lock = threading.Lock()

    def locked(params, seed):
        with lock:
            return {"x": params["x"]}

    journal = tmp_path / "j.jsonl"
    message = "fn 'test_unpicklable_fn_is_refused_before_anything_runs.<locals>.locked' cannot be sent to the worker processes of backend 'processes'"
    with pytest.raises(TypeError, match=re.escape(message)) as info:
        sweep(locked, {"x": [1]}, backend="processes", journal=journal)
    assert "Define fn at module level" in str(info.value)
    assert "lock" in str(info.value)
    assert not journal.exists()
    # The same function is fine on threads, and a plain lambda travels to processes.
    assert sweep(locked, {"x": [1]}, backend="threads")[0].status == "ok"
    result = sweep(lambda p, s: {"y": p["x"] + 1}, {"x": [1, 2]}, backend="processes", n_jobs=1)
    assert [r.metrics["y"] for r in result] == [2, 3]


# ------------------------------------------------------------- timeouts


def cooperative(params, seed):
    """Train until the deadline: stop early ('polite') or overrun it ('late')."""
    deadline = trial_deadline()
    epochs = 0
    margin = 0.1 if params["mode"] == "polite" else -0.05
    while deadline is not None and time.monotonic() < deadline - margin:
        time.sleep(0.01)
        epochs += 1
    return {"epochs": epochs, "had_deadline": deadline is not None}


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_cooperative_timeout(backend):
    result = sweep(
        cooperative, {"mode": ["polite", "late"]}, backend=backend, timeout=0.4, progress=False
    )
    polite, late = result
    assert polite.status == "ok" and polite.metrics["had_deadline"] and polite.metrics["epochs"] > 0
    assert late.status == "timeout" and late.error_type == "TimeoutError"
    assert "past its timeout of 0.4 s" in late.error_message
    assert late.metrics["epochs"] > 0  # metrics of a late trial are kept


def test_no_deadline_outside_trials_or_without_timeout():
    assert trial_deadline() is None and time_left() is None
    assert sweep(cooperative, {"mode": ["polite"]})[0].metrics["had_deadline"] is False


# ------------------------------------------------------ journal and resume


def journal_reader(params, seed):
    """Serial only: how many trial rows the journal holds when this trial starts."""
    with open(params["journal"]) as f:
        return {"rows_on_disk": sum(json.loads(line)["type"] == "trial" for line in f)}


def test_rows_reach_the_journal_as_trials_finish(tmp_path):
    journal = tmp_path / "j.jsonl"
    result = sweep(journal_reader, {"journal": [str(journal)], "i": [0, 1, 2, 3]}, journal=journal)
    assert [r.metrics["rows_on_disk"] for r in result] == [0, 1, 2, 3]
    assert SweepResult.from_journal(journal).rows == result.rows


def interruptible(params, seed):
    """Raises KeyboardInterrupt (Ctrl-C) at configuration 3 while the marker file is absent."""
    if params["x"] == 3 and not os.path.exists(params["marker"]):
        open(params["marker"], "w").close()
        raise KeyboardInterrupt
    return work(params, seed)


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path):
    space = {"x": [0, 1, 2, 3, 4, 5], "marker": [str(tmp_path / "interrupted")]}
    journal = tmp_path / "j.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sweep(interruptible, space, journal=journal, seeds=2)
    header, rows = mlpar.results.read_journal(journal)
    assert [r.index for r in rows] == [0, 1, 2, 3, 4, 5]  # every finished trial, nothing else

    resumed = sweep(interruptible, space, journal=journal, seeds=2, resume=True)
    uninterrupted = sweep(interruptible, space, seeds=2)
    assert [(r.key, r.seed, r.status, r.metrics) for r in resumed] == [
        (r.key, r.seed, r.status, r.metrics) for r in uninterrupted
    ]
    keys = [json.loads(line).get("key") for line in journal.read_text().splitlines()[1:]]
    assert len(keys) == 12 and len(set(keys)) == 12
    # A finished sweep resumes to the same result without running anything.
    again = sweep(interruptible, space, journal=journal, seeds=2, resume=True)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in resumed]


def test_resume_after_a_torn_write(tmp_path):
    journal = tmp_path / "j.jsonl"
    full = sweep(work, {"x": [1, 2, 3]}, journal=journal)
    lines = journal.read_text().splitlines(keepends=True)
    # A crash mid-write: the last row half on disk.
    journal.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    with pytest.warns(RuntimeWarning, match="torn last line"):
        resumed = sweep(work, {"x": [1, 2, 3]}, journal=journal, resume=True)
    assert [r.metrics for r in resumed] == [r.metrics for r in full]
    assert len(journal.read_text().splitlines()) == 4


def test_resume_refuses_a_journal_of_another_sweep(tmp_path):
    journal = tmp_path / "j.jsonl"
    sweep(work, {"x": [1, 2]}, journal=journal)
    with pytest.raises(ValueError, match=re.escape("belongs to a different sweep: trials is")):
        sweep(work, {"x": [1, 3]}, journal=journal, resume=True)
    with pytest.raises(
        ValueError,
        match=r"belongs to a different sweep: fn is '\S*test_sweep\.work' there but '\S*test_sweep\.seeded' here",
    ):
        sweep(seeded, {"x": [1, 2]}, journal=journal, resume=True)
    with pytest.raises(ValueError, match=re.escape("random_state is 0 there but 1 here")):
        sweep(work, {"x": [1, 2]}, journal=journal, resume=True, random_state=1)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        sweep(work, {"x": [1, 2]}, journal=journal)


def test_resume_without_a_journal_starts_afresh(tmp_path):
    result = sweep(work, {"x": [1, 2]}, journal=tmp_path / "new.jsonl", resume=True)
    assert len(result) == 2 and (tmp_path / "new.jsonl").exists()


# ------------------------------------------------------------ error_score


def picky(params, seed):
    if params["x"] == 2:
        raise ValueError(f"x={params['x']} is not allowed")
    return {"score": float(params["x"])}


def test_error_score_raise_reraises_in_process(tmp_path):
    journal = tmp_path / "j.jsonl"
    with pytest.raises(ValueError, match="x=2 is not allowed"):
        sweep(picky, {"x": [1, 2, 3]}, error_score="raise", journal=journal)
    rows = mlpar.results.read_journal(journal)[1]
    assert [r.status for r in rows] == ["ok", "failed"]


def test_error_score_raise_from_worker_processes():
    with pytest.raises(
        RuntimeError,
        match=r"ended 'failed': ValueError: x=2 is not allowed(.|\n)*Traceback in the worker(.|\n)*in picky",
    ):
        sweep(picky, {"x": [1, 2, 3]}, backend="processes", n_jobs=1, error_score="raise")


def test_error_score_value_feeds_the_summary():
    result = sweep(picky, {"x": [1, 2, 3]}, error_score=-1.0)
    assert result.summary()["mean_score"] == [1.0, -1.0, 3.0]
    means = sweep(picky, {"x": [1, 2]}).summary()["mean_score"]  # default error_score=nan
    assert means[0] == 1.0 and math.isnan(means[1])


# ------------------------------------------------------------ progress


def test_progress_bar(capsys):
    sweep(work, {"x": [1, 2, 3]}, progress=True)
    err = capsys.readouterr().err
    assert "sweep" in err and "3/3" in err and "failed=0" in err
    sweep(work, {"x": [1, 2, 3]})  # stderr is not a terminal here: no bar
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["mlpar.context", "mlpar.space", "mlpar.sweep", "mlpar.backends"])
def test_docstring_examples(name, monkeypatch):
    # By name: mlpar.sweep the attribute is the function, not the module.
    module = importlib.import_module(name)
    # The registry example registers a backend: keep it out of the real registry.
    registry = importlib.import_module("mlpar.backends")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    failures, tested = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tested > 0 and failures == 0
