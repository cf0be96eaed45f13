"""Successive halving (sync): rungs, promotion, determinism across backends, resume."""

import math
import re

import pytest

import mlpar
from mlpar.halving import rung_resources, successive_halving
from mlpar.halving._rungs import config_key, rank_configurations
from mlpar.results import TrialRow, read_journal


def toy(params, seed):
    """A deterministic trial: improves with epochs, depends on x, a little on the seed."""
    e, x = params["epochs"], params["x"]
    noise = (seed % 1000) / 1e6
    return {"score": x * (1 - 1 / (1 + e)) + noise, "loss": 1.0 / (1 + x * e)}


def comparable(out):
    return [
        (
            r.rung,
            r.resource,
            [(row.key, row.params, row.seed, row.status, row.metrics) for row in r.result],
            r.promoted,
        )
        for r in out.rungs
    ]


def test_rung_resources_are_powers_of_factor_up_to_the_maximum():
    assert rung_resources(2, 18, 3) == [2, 6, 18]
    assert rung_resources(1, 10, 3) == [1, 3, 9]
    assert rung_resources(4, 4, 2) == [4]
    assert rung_resources(0.5, 2.0, 2) == [0.5, 1.0, 2.0]


def test_rungs_keep_the_best_third_and_multiply_the_resource():
    out = successive_halving(
        toy, {"x": list(range(9))}, min_resource=1, max_resource=9, metric="score"
    )
    assert out.resources == [1, 3, 9]
    assert [len(r.result) for r in out.rungs] == [9, 3, 1]
    assert out.rungs[0].promoted == [{"x": 8}, {"x": 7}, {"x": 6}]
    assert out.survivors == [{"x": 8}]
    assert all(row.params["epochs"] == r.resource for r in out.rungs for row in r.result)
    assert out.best()["params"] == {"x": 8, "epochs": 9}
    assert out.budget() == (9 * 1 + 3 * 3 + 1 * 9, 9 * 9)


def test_mode_min_and_the_known_direction_of_loss():
    out = successive_halving(
        toy, {"x": [1, 2, 3, 4]}, min_resource=1, max_resource=2, factor=2, metric="loss"
    )
    assert out.mode == "min"
    assert out.rungs[0].promoted == [{"x": 4}, {"x": 3}]
    flipped = successive_halving(
        toy,
        {"x": [1, 2, 3, 4]},
        min_resource=1,
        max_resource=2,
        factor=2,
        metric="loss",
        metric_mode="max",
    )
    assert flipped.rungs[0].promoted == [{"x": 1}, {"x": 2}]


def _row(params, value, status="ok", key="k"):
    return TrialRow(
        key=key, index=0, params=params, repeat=0, seed=0, status=status, metrics={"m": value}
    )


def test_ties_are_broken_by_configuration_key_and_failures_rank_last():
    rows = [_row({"x": x, "epochs": 1}, 1.0) for x in range(5)]
    rows.append(_row({"x": 9, "epochs": 1}, 5.0, status="crashed"))
    ranked = rank_configurations(rows, resource="epochs", metric="m", mode="max")
    keys = [k for k, _, _ in ranked]
    assert keys[:5] == sorted(config_key({"x": x}, "epochs") for x in range(5))
    assert ranked[-1][1] == {"x": 9} and math.isnan(ranked[-1][2])


def test_a_configuration_is_ranked_by_its_mean_over_seeds():
    rows = [_row({"x": 1}, 0.9), _row({"x": 1}, 0.1), _row({"x": 2}, 0.6), _row({"x": 2}, 0.5)]
    ranked = rank_configurations(rows, resource="epochs", metric="m", mode="max")
    assert [p for _, p, _ in ranked] == [{"x": 2}, {"x": 1}]


def test_seeds_repeat_every_configuration_in_every_rung():
    out = successive_halving(
        toy, {"x": [1, 2, 3]}, min_resource=1, max_resource=3, metric="score", seeds=2
    )
    assert [len(r.result) for r in out.rungs] == [6, 2]


def test_random_search_samples_the_configurations_once():
    from scipy.stats import uniform

    out = successive_halving(
        toy,
        {"x": uniform(0, 1)},
        n_iter=9,
        min_resource=1,
        max_resource=9,
        metric="score",
        random_state=3,
    )
    assert [len(r.result) for r in out.rungs] == [9, 3, 1]
    again = successive_halving(
        toy,
        {"x": uniform(0, 1)},
        n_iter=9,
        min_resource=1,
        max_resource=9,
        metric="score",
        random_state=3,
    )
    assert comparable(out) == comparable(again)


def _crash_big(params, seed):
    if params["x"] == 3 and params["epochs"] > 1:
        raise RuntimeError("boom")
    return toy(params, seed)


def test_a_failing_trial_is_demoted_not_fatal():
    out = successive_halving(
        _crash_big,
        {"x": [1, 2, 3, 4, 5, 6]},
        min_resource=1,
        max_resource=4,
        factor=2,
        metric="score",
    )
    assert out.rungs[0].promoted == [{"x": 6}, {"x": 5}, {"x": 4}]
    assert out.rungs[1].result.failures() == []
    assert out.survivors == [{"x": 6}]


@pytest.mark.parametrize("backend", ["threads", "processes", "forked"])
def test_identical_rows_on_every_backend(backend):
    space = {"x": [0.5, 1.5, 1.0, 2.0, 3.0, 2.5]}
    kw = dict(min_resource=1, max_resource=4, factor=2, metric="score", seeds=2)
    serial = successive_halving(toy, space, **kw)
    other = successive_halving(toy, space, backend=backend, n_jobs=2, **kw)
    assert comparable(other) == comparable(serial)


def test_identical_rows_with_train_mlp_on_serial_threads_and_processes():
    space = {"lr": [0.001, 0.01, 0.05], "hidden": [[8], [16]]}
    kw = dict(min_resource=1, max_resource=3, metric="val_score", random_state=1)
    keep = ("val_score", "loss", "epochs")

    def rows(out):
        return [
            (
                r.rung,
                [(row.key, row.seed, {k: row.metrics[k] for k in keep}) for row in r.result],
                r.promoted,
            )
            for r in out.rungs
        ]

    serial = successive_halving(mlpar.train_mlp, space, **kw)
    assert [len(r.result) for r in serial.rungs] == [6, 2]
    for backend in ("threads", "processes"):
        assert rows(
            successive_halving(mlpar.train_mlp, space, backend=backend, n_jobs=2, **kw)
        ) == rows(serial)


def test_n_samples_can_be_the_resource():
    space = {"lr": [0.001, 0.01, 0.1]}
    base = {"dataset": "moons", "epochs": 2, "hidden": [8], "batch_size": 16}
    out = successive_halving(
        mlpar.MLPTrial(base), space, resource="n_samples", min_resource=100, max_resource=300
    )
    assert out.resources == [100, 300]
    assert [row.params["n_samples"] for row in out.rungs[1].result] == [300]


class Toy:
    """``toy``, with a Ctrl-C at the ``interrupt_at``-th trial of ``epochs=3``."""

    sweep_identity = "toy"  # the same sweep with or without the interrupt

    def __init__(self, interrupt_at=None):
        self.interrupt_at, self.seen = interrupt_at, 0

    def __call__(self, params, seed):
        if params["epochs"] == 3:
            self.seen += 1
            if self.seen == self.interrupt_at:
                raise KeyboardInterrupt
        return toy(params, seed)


def test_resume_mid_rung_gives_the_same_rows(tmp_path):
    space = {"x": list(range(9))}
    kw = dict(min_resource=1, max_resource=9, metric="score")
    whole = successive_halving(Toy(), space, journal=tmp_path / "whole.jsonl", **kw)
    cut = tmp_path / "cut.jsonl"
    with pytest.raises(KeyboardInterrupt):  # mid-rung 1, after one of its trials
        successive_halving(Toy(interrupt_at=2), space, journal=cut, **kw)
    _, done = read_journal(cut)
    assert [row.rung for row in done] == [0] * 9 + [1]
    resumed = successive_halving(Toy(), space, journal=cut, resume=True, **kw)
    assert comparable(resumed) == comparable(whole)
    with pytest.raises(FileExistsError):
        successive_halving(Toy(), space, journal=cut, **kw)


@pytest.mark.parametrize(
    "options, kind, message",
    [
        (dict(factor=1), ValueError, "halving factor must be an integer >= 2"),
        (
            dict(min_resource=10, max_resource=3),
            ValueError,
            "halving min_resource must be at most max_resource (3), got 10",
        ),
        (dict(min_resource=0), ValueError, "min_resource must be a positive number, got 0"),
        (dict(metric_mode="up"), ValueError, "metric_mode must be 'max' or 'min', got 'up'"),
        (dict(mode="fast"), ValueError, "halving mode must be 'sync' or 'async' (ASHA)"),
        (dict(resource=3), TypeError, "resource must be the name of a numeric trial parameter"),
        (dict(resource="x"), ValueError, "resource 'x' must not be swept in the space"),
        (
            dict(metric="acc"),
            ValueError,
            "metric 'acc' is not reported by the trials; they report loss, score",
        ),
        (dict(resume=True), ValueError, "resume=True needs the journal"),
        (dict(stack=4), ValueError, "stack=4 does not combine with halving"),
    ],
)
def test_bad_options_say_what_is_wrong(options, kind, message):
    kw = {**dict(min_resource=1, max_resource=3, metric="score"), **options}
    with pytest.raises(kind, match=re.escape(message)):
        successive_halving(toy, {"x": [1, 2, 3]}, **kw)


def test_n_iter_below_factor_is_refused():
    from scipy.stats import uniform

    with pytest.raises(
        ValueError, match=re.escape("n_iter must be at least the halving factor (3)")
    ):
        successive_halving(
            toy, {"x": uniform(0, 1)}, n_iter=2, min_resource=1, max_resource=3, metric="score"
        )


def test_exported_lazily_from_the_package():
    assert mlpar.successive_halving is successive_halving
    assert "successive_halving" in mlpar.__all__


def test_identical_rows_on_dask():
    pytest.importorskip("distributed")
    space = {"x": [0.5, 1.5, 1.0, 2.0]}
    kw = dict(min_resource=1, max_resource=2, factor=2, metric="score")
    serial = successive_halving(toy, space, **kw)
    assert comparable(successive_halving(toy, space, backend="dask", n_jobs=2, **kw)) == comparable(
        serial
    )


def test_a_halving_config_runs_and_resumes_from_the_cli(tmp_path, monkeypatch):
    from pathlib import Path

    from mlpar.cli import main
    from mlpar.config import load_config

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "halving.yaml"
    sets = [
        "--set",
        "sweep.n_iter=6",
        "--set",
        "execution.backend=threads",
        "--set",
        "sweep.halving={min_resource: 1, max_resource: 3}",
    ]
    assert main(["run", str(config), *sets]) == 0
    (run_dir,) = (tmp_path / "runs" / "halving").iterdir()
    _, rows = read_journal(run_dir / "results.jsonl")
    assert [row.rung for row in rows] == [0] * 6 + [1] * 2
    assert len(list((run_dir / "results.checkpoints").iterdir())) == 2
    assert load_config(run_dir / "config.yaml").sweep.halving.max_resource == 3
    header = (run_dir / "summary.csv").read_text().splitlines()[0]
    assert header.startswith("rung,resource,key")
    assert len((run_dir / "summary.csv").read_text().splitlines()) == 1 + 6 + 2
    assert main(["resume", str(run_dir)]) == 0


def test_a_bad_halving_override_is_one_line(capsys):
    from pathlib import Path

    from mlpar.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "halving.yaml"
    assert (
        main(
            [
                "validate",
                str(config),
                "--set",
                "sweep.halving={min_resource: 1, max_resource: 3, factor: 1}",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "--set sweep.halving: sweep.halving.factor must be an integer >= 2, got 1 (int)"
    )


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_promoted_trials_continue_from_their_checkpoints(tmp_path, backend):
    space = {"lr": [0.001, 0.01, 0.05], "hidden": [[8], [16]]}
    kw = dict(min_resource=1, max_resource=3, metric="val_score", random_state=1)
    out = successive_halving(
        mlpar.train_mlp,
        space,
        journal=tmp_path / f"{backend}.jsonl",
        backend=backend,
        n_jobs=2 if backend != "serial" else None,
        **kw,
    )
    assert all("epochs_continued_from" not in row.metrics for row in out.rungs[0].result)
    for row in out.rungs[1].result:
        assert row.metrics["epochs_continued_from"] == 1
        assert row.metrics["epochs"] == 3 and row.metrics["epochs_trained"] == 2
    kept = sorted(p.name for p in (tmp_path / f"{backend}.checkpoints").iterdir())
    survivors = [row for row in out.rungs[1].result]
    assert kept == sorted(
        f"{config_key(row.params, 'epochs')}-{row.seed}-rung1.npz" for row in survivors
    )
    if backend == "processes":
        serial = successive_halving(mlpar.train_mlp, space, journal=tmp_path / "s.jsonl", **kw)
        keep = ("val_score", "loss", "epochs")
        assert [[{k: row.metrics[k] for k in keep} for row in r.result] for r in out.rungs] == [
            [{k: row.metrics[k] for k in keep} for row in r.result] for r in serial.rungs
        ]


def test_without_continuation_a_promoted_trial_restarts(tmp_path):
    space = {"lr": [0.001, 0.01, 0.05]}
    out = successive_halving(
        mlpar.train_mlp,
        space,
        min_resource=1,
        max_resource=3,
        journal=tmp_path / "r.jsonl",
        checkpoints=False,
    )
    (row,) = out.rungs[1].result
    assert row.metrics["epochs"] == 3 and "epochs_continued_from" not in row.metrics
    assert not (tmp_path / "r.checkpoints").exists()


def test_a_checkpoint_continues_adams_moments_and_step_count(tmp_path):
    import numpy as np

    from mlpar.nn import fit_mlp
    from mlpar.nn._checkpoint import load_checkpoint, save_checkpoint

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = (X[:, 0] > 0).astype(int)
    kw = dict(task="classification", hidden_layer_sizes=(16,), random_state=3, warn_max_iter=False)
    first = fit_mlp(X, y, max_iter=2, **kw)
    save_checkpoint(tmp_path / "c.npz", first, epochs=2)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.epochs == 2 and ckpt.state["optimizer"]["t"] == first._optimizer.t
    np.testing.assert_array_equal(ckpt.state["optimizer"]["m"], first._optimizer.m)
    going_on = fit_mlp(X, y, max_iter=4, init=ckpt.init, **kw)
    full = fit_mlp(X, y, max_iter=6, **kw)
    assert going_on._optimizer.t == full._optimizer.t
    assert len(going_on.loss_curve) == 6
    assert abs(going_on.loss - full.loss) < 1e-3
