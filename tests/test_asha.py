"""sweep(halving=) and ASHA: one journal, decisions replayed on resume, every backend."""

import json
import re

import pytest

import mlpar
from mlpar.halving import HalvingResult, successive_halving
from mlpar.halving._rungs import config_key
from mlpar.results import SweepResult, read_journal

HALVING = dict(min_resource=1, max_resource=9, factor=3, metric="score")


def toy(params, seed):
    """Deterministic: better with epochs and x, a little seed noise."""
    e, x = params["epochs"], params["x"]
    return {"score": x * (1 - 1 / (1 + e)) + (seed % 1000) / 1e6, "loss": 1.0 / (1 + x * e)}


class Toy:
    """``toy``, raising KeyboardInterrupt at its ``interrupt_at``-th call."""

    sweep_identity = "toy"

    def __init__(self, interrupt_at=None):
        self.interrupt_at, self.seen = interrupt_at, 0

    def __call__(self, params, seed):
        self.seen += 1
        if self.seen == self.interrupt_at:
            raise KeyboardInterrupt
        return toy(params, seed)


def rows_of(result):
    return [(r.index, r.key, r.rung, r.resource, r.seed, r.metrics) for r in result]


def events(journal):
    lines = [json.loads(line) for line in open(journal)]
    return [line for line in lines if line["type"] == "event"]


def test_sweep_with_halving_gives_rows_with_rungs_and_best_of_the_last_rung():
    result = mlpar.sweep(toy, {"x": list(range(9))}, halving=HALVING)
    assert isinstance(result, SweepResult) and isinstance(result.halving, HalvingResult)
    assert [r.rung for r in result] == [0] * 9 + [1] * 3 + [2]
    assert all(r.params["epochs"] == r.resource for r in result)
    assert result.best("score")["params"] == {"x": 8, "epochs": 9}
    assert result.halving.budget() == (9 + 3 * 3 + 9, 81)
    table = result.halving.rung_table()
    assert [(t["rung"], t["configs"], t["promoted"]) for t in table] == [
        (0, 9, 3),
        (1, 3, 1),
        (2, 1, 0),
    ]
    assert set(result.halving.curves()) == {config_key({"x": x}, "epochs") for x in range(9)}


def test_asha_promotes_as_soon_as_a_top_third_exists():
    result = mlpar.sweep(toy, {"x": list(range(9))}, halving={**HALVING, "mode": "async"})
    rungs = [r.rung for r in result]
    # Three rung-0 results make a top third of one: promoted before rung 0 is done.
    assert rungs[:4] == [0, 0, 0, 1]
    assert rungs.count(0) == 9 and 2 in rungs
    # Every promotion came from the top 1/3 of its rung's results finished before it
    # (serial: completion order is index order).
    for i, row in enumerate(result.rows):
        if row.rung:
            below = [r for r in result.rows[:i] if r.rung == row.rung - 1]
            below.sort(key=lambda r: -r.metrics["score"])
            top = below[: len(below) // 3]
            assert config_key(row.params, "epochs") in {config_key(r.params, "epochs") for r in top}
    assert result.halving.schedule == "async"


def test_asha_journals_every_decision_and_resume_replays_them(tmp_path):
    space, kw = {"x": list(range(9))}, {**HALVING, "mode": "async"}
    whole = mlpar.sweep(Toy(), space, halving=kw, journal=tmp_path / "whole.jsonl")
    decisions = events(tmp_path / "whole.jsonl")
    assert len(decisions) == len(whole)  # one seed: one trial per decision
    assert [e["rung"] for e in decisions] == [r.rung for r in whole]
    cut = tmp_path / "cut.jsonl"
    with pytest.raises(KeyboardInterrupt):
        mlpar.sweep(Toy(interrupt_at=7), space, halving=kw, journal=cut)
    assert len(read_journal(cut)[1]) == 6 and len(events(cut)) == 7
    resumed = mlpar.sweep(Toy(), space, halving=kw, journal=cut, resume=True)
    assert rows_of(resumed) == rows_of(whole)
    assert events(cut) == decisions


def test_a_resumed_journal_must_have_the_same_halving_settings(tmp_path):
    journal = tmp_path / "r.jsonl"
    mlpar.sweep(toy, {"x": [1, 2, 3]}, halving=HALVING, journal=journal)
    with pytest.raises(ValueError, match="belongs to a different sweep: halving is"):
        mlpar.sweep(
            toy, {"x": [1, 2, 3]}, halving={**HALVING, "factor": 2}, journal=journal, resume=True
        )
    again = mlpar.sweep(toy, {"x": [1, 2, 3]}, halving=HALVING, journal=journal, resume=True)
    assert len(again) == 3 + 1 + 1


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_asha_runs_on_parallel_backends(backend):
    result = mlpar.sweep(
        toy,
        {"x": [4, 7, 1, 8, 0, 3, 6, 2, 5]},
        halving={**HALVING, "mode": "async"},
        seeds=2,
        backend=backend,
        n_jobs=2,
    )
    by_rung = {}
    for row in result:
        by_rung.setdefault(row.rung, set()).add(config_key(row.params, "epochs"))
    assert len(by_rung[0]) == 9 and max(by_rung) == 2
    assert by_rung[2] <= by_rung[1] <= by_rung[0]
    assert all(len([r for r in result if r.params == p.params]) == 2 for p in result)
    used, full = result.halving.budget()
    # (In ascending order every new configuration is the best so far and ASHA
    # promotes most of them; in this order it spends about what sync would.)
    assert used <= full / 2


def test_asha_continues_train_mlp_from_checkpoints_and_keeps_only_the_survivors(tmp_path):
    space = {"lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "hidden": [[8]]}
    journal = tmp_path / "r.jsonl"
    result = mlpar.sweep(
        mlpar.train_mlp,
        space,
        halving=dict(min_resource=1, max_resource=4, factor=2, mode="async"),
        journal=journal,
        backend="threads",
        n_jobs=2,
        random_state=2,
    )
    for row in result:
        if row.rung:
            assert row.metrics["epochs_continued_from"] == row.resource // 2
    top = max(r.rung for r in result)
    kept = sorted(p.name for p in (tmp_path / "r.checkpoints").iterdir())
    assert kept == sorted(
        f"{config_key(r.params, 'epochs')}-{r.seed}-rung{top}.npz" for r in result if r.rung == top
    )


def test_a_metric_the_trials_do_not_report_ends_the_sweep_at_the_first_trial(tmp_path):
    journal = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=re.escape("halving metric 'acc' is not reported")):
        mlpar.sweep(toy, {"x": [1, 2, 3]}, halving={**HALVING, "metric": "acc"}, journal=journal)
    assert len(read_journal(journal)[1]) == 1


def test_halving_with_a_sampler_or_an_unknown_key_is_refused():
    with pytest.raises(ValueError, match="sampler and halving do not combine"):
        mlpar.sweep(toy, {"x": [1, 2, 3]}, halving=HALVING, sampler="random")
    with pytest.raises(ValueError, match="halving has no key 'eta'"):
        mlpar.sweep(toy, {"x": [1, 2, 3]}, halving={**HALVING, "eta": 3})


def test_successive_halving_is_the_same_search():
    out = successive_halving(toy, {"x": list(range(9))}, **HALVING)
    assert rows_of(out.result) == rows_of(mlpar.sweep(toy, {"x": list(range(9))}, halving=HALVING))


CONFIG = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "halving.yaml"


def test_the_run_summary_and_report_show_rungs_budget_and_survivors(tmp_path, monkeypatch, capsys):
    from mlpar.cli import main

    monkeypatch.chdir(tmp_path)
    sets = ["sweep.n_iter=6", "execution.backend=threads", "sweep.halving.mode=async"]
    sets += ["sweep.halving.min_resource=1", "sweep.halving.max_resource=3"]
    assert (
        main(["run", str(CONFIG), "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    )
    out = capsys.readouterr().out
    assert "ASHA (async) on epochs, factor 3, ranked by val_score (max):" in out
    assert re.search(r"budget: \d+ epochs summed over trials \(\d+% of a full search's 18", out)
    assert "survivors (last rung, best first):" in out
    (run_dir,) = (tmp_path / "runs" / "halving").iterdir()
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "## Rungs" in report and "| rung | epochs | configs |" in report
    assert "depends on completion order" in report
    assert (run_dir / "rungs.png").stat().st_size > 0


def test_one_halving_key_can_be_set_from_the_command_line(capsys):
    from mlpar.cli import main

    assert main(["validate", str(CONFIG), "--set", "sweep.halving.mode=async"]) == 0
    assert "with ASHA, 27 trials in rung 0, rungs of 2/6/18 epochs" in capsys.readouterr().out
    assert main(["validate", str(CONFIG), "--set", "sweep.halving.factor=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "--set sweep.halving.factor: sweep.halving.factor must be an integer >= 2, got 1 (int)"
    )
    assert main(["validate", str(CONFIG), "--set", "sweep.halving.eta=3"]) == 2
    assert "unknown key sweep.halving.eta" in capsys.readouterr().err


def test_a_resource_that_is_not_a_numeric_trial_parameter_is_refused():
    with pytest.raises(ValueError, match="must be a numeric trial parameter of train_mlp"):
        mlpar.sweep(
            mlpar.train_mlp,
            {"lr": [0.1, 0.01, 0.001]},
            halving=dict(resource="hidden", min_resource=1, max_resource=3),
        )


class Interrupting:
    """train_mlp, with a Ctrl-C at the ``at``-th trial of rung 1 (epochs=3)."""

    sweep_identity = "interrupting"

    def __init__(self, at=None):
        self.at, self.seen = at, 0

    def __call__(self, params, seed):
        if params["epochs"] == 3:
            self.seen += 1
            if self.seen == self.at:
                raise KeyboardInterrupt
        return mlpar.train_mlp(params, seed)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_resumed_run_continues_from_the_checkpoints_on_disk(tmp_path, mode):
    space = {"lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "hidden": [[8]]}
    kw = dict(halving=dict(min_resource=1, max_resource=3, mode=mode), random_state=1)
    whole = mlpar.sweep(Interrupting(), space, journal=tmp_path / "w.jsonl", **kw)
    journal = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        mlpar.sweep(Interrupting(at=2), space, journal=journal, **kw)
    resumed = mlpar.sweep(Interrupting(), space, journal=journal, resume=True, **kw)
    promoted = [row for row in resumed if row.rung == 1]
    assert len(promoted) >= 2  # ASHA may promote more than sync
    assert all(row.metrics["epochs_continued_from"] == 1 for row in promoted)
    keep = ("val_score", "loss", "epochs")
    assert [(r.key, {k: r.metrics[k] for k in keep}) for r in resumed] == [
        (r.key, {k: r.metrics[k] for k in keep}) for r in whole
    ]


def test_compare_runs_a_halving_config_unchanged(tiny, tmp_path):
    from mlpar.cli import main

    run_dir = tmp_path / "cmp"
    halving = "sweep.halving={min_resource: 1, max_resource: 3, factor: 2}"
    args = ["compare", str(tiny), "--repeats", "1", "--run-dir", str(run_dir), "--no-progress"]
    assert main([*args, "--set", halving]) == 0
    journals = sorted((run_dir / "compare").glob("*.jsonl"))
    assert journals
    for journal in journals:
        rows = read_journal(journal)[1]
        assert [r.rung for r in rows] == [0] * 4 + [1] * 2
