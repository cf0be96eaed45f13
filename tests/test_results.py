"""Rows, the JSONL journal, summaries and export."""

import csv
import json
import math
import re
import sys
import time

import numpy as np
import pytest

from mlpar.results import JOURNAL_VERSION, Journal, SweepResult, TrialRow, read_journal
from mlpar.space import trial_key

HEADER = {
    "fn": "m.fn",
    "trials": "abc",
    "random_state": 0,
    "seeds": 2,
    "n_iter": None,
    "error_score": math.nan,
}


def make_row(index, params, repeat=0, status="ok", **metrics):
    return TrialRow(
        key=trial_key(params, repeat),
        index=index,
        params=params,
        repeat=repeat,
        seed=index,
        status=status,
        metrics=metrics,
        wall_time=0.1,
        started_at=100.0 + index,
        ended_at=100.5 + index,
        backend="serial",
        n_jobs=1,
        blas_threads=1,
        blas_threads_seen=1,
    )


@pytest.fixture
def result():
    rows = [
        make_row(0, {"lr": 0.1}, 0, acc=0.8, loss=0.5),
        make_row(1, {"lr": 0.1}, 1, acc=0.6, loss=0.7),
        make_row(2, {"lr": 0.2}, 0, acc=0.9, loss=0.2),
        make_row(3, {"lr": 0.2}, 1, acc=0.9, loss=0.4),
        make_row(4, {"lr": 0.3, "extra": "x"}, 0, acc=1.0, loss=0.1),
        make_row(5, {"lr": 0.3, "extra": "x"}, 1, status="failed"),
    ]
    # Given out of order: the result sorts by index.
    return SweepResult(rows[::-1], info={"error_score": math.nan}, wall_time=2.0)


def test_row_round_trips_through_json():
    row = make_row(3, {"a": [1, 2]}, 1, status="diverged", loss=math.nan)
    back = TrialRow.from_dict(json.loads(json.dumps(row.to_dict())))
    assert back.key == row.key and back.params == row.params and back.status == "diverged"
    assert math.isnan(back.metrics["loss"])
    assert TrialRow.from_dict({**row.to_dict(), "future_field": 1}).index == 3


def test_result_is_ordered_and_sized(result):
    assert [r.index for r in result] == list(range(6))
    assert len(result) == 6
    assert result[2].params == {"lr": 0.2}
    assert repr(result) == "SweepResult(6 trials: 5 ok, 1 failed, wall_time=2s)"
    assert [r.index for r in result.failures()] == [5]


def test_summary_aggregates_repeats(result):
    s = result.summary(mode={"loss": "min"})
    assert s["params"] == [{"lr": 0.1}, {"lr": 0.2}, {"extra": "x", "lr": 0.3}]
    assert s["param_lr"] == [0.1, 0.2, 0.3]
    assert s["param_extra"] == [None, None, "x"]
    assert s["n_trials"] == [2, 2, 2]
    assert s["n_ok"] == [2, 2, 1]
    assert s["keys"][0] == [result[0].key, result[1].key]
    assert s["mean_acc"][:2] == pytest.approx([0.7, 0.9])
    assert s["std_acc"][:2] == pytest.approx([0.1, 0.0])
    # A failed repeat counts as error_score=nan: the config ranks last.
    assert math.isnan(s["mean_acc"][2])
    assert s["rank_acc"] == [2, 1, 3]
    assert s["mean_loss"][:2] == pytest.approx([0.6, 0.3])
    assert s["rank_loss"] == [2, 1, 3]
    assert result.summary(mode="min")["rank_acc"] == [1, 2, 3]


def test_summary_uses_a_numeric_error_score(result):
    result.info["error_score"] = 0.0
    s = result.summary()
    assert s["mean_acc"][2] == pytest.approx(0.5)
    assert s["rank_acc"] == [2, 1, 3]


def test_ties_share_the_lower_rank():
    rows = [make_row(i, {"x": i}, acc=v) for i, v in enumerate([0.5, 0.9, 0.5, 0.1])]
    assert SweepResult(rows).summary()["rank_acc"] == [2, 1, 2, 4]


def test_best(result):
    best = result.best("acc")
    assert best["params"] == {"lr": 0.2}
    assert best["mean_acc"] == pytest.approx(0.9)
    assert result.best("loss", mode="min")["params"] == {"lr": 0.2}
    assert result.best("acc", mode="min")["params"] == {"lr": 0.1}


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda r: r.best("nope"),
            "no trial reported metric 'nope'; the metrics are ['acc', 'loss']",
        ),
        (lambda r: r.best("acc", mode="up"), "mode must be 'max' or 'min', got 'up'"),
        (lambda r: r.summary(mode={"nope": "min"}), "mode names unknown metrics ['nope']"),
        (lambda r: r.summary(mode="best"), "mode must be 'max' or 'min', got 'best'"),
    ],
)
def test_summary_errors(result, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(result)


def test_best_without_any_finite_mean():
    rows = [make_row(0, {"x": 1}, acc=0.5), make_row(1, {"x": 1}, 1, status="crashed")]
    with pytest.raises(ValueError, match="no configuration has a finite mean 'acc'"):
        SweepResult(rows).best("acc")


def test_to_pandas(result):
    pytest.importorskip("pandas", reason="pandas (in the dev extra) is not installed")
    frame = result.to_pandas()
    assert len(frame) == 6
    assert list(frame.columns[:5]) == ["key", "index", "repeat", "seed", "status"]
    assert {"param_lr", "param_extra", "metric_acc", "metric_loss", "blas_threads_seen"} <= set(
        frame.columns
    )
    assert frame["metric_acc"].iloc[2] == 0.9


def test_to_pandas_without_pandas(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=re.escape("install it with: pip install pandas")):
        result.to_pandas()


def test_to_csv_is_complete_and_atomic(result, tmp_path):
    path = result.to_csv(tmp_path / "out" / "rows.csv")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    assert table[4]["param_extra"] == "x" and table[0]["param_extra"] == ""
    assert float(table[2]["metric_acc"]) == 0.9
    assert table[5]["status"] == "failed"
    assert [p.name for p in path.parent.iterdir()] == ["rows.csv"]  # no temp file left


def test_to_csv_keeps_the_old_file_when_writing_fails(result, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("old")
    result.rows[0].metrics["bad"] = {"nested": {1, 2}}  # not writable as JSON
    with pytest.raises(TypeError):
        result.to_csv(path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_journal_writes_header_and_rows(tmp_path):
    path = tmp_path / "sub" / "j.jsonl"
    journal, done = Journal.open(path, HEADER)
    assert done == []
    rows = [make_row(i, {"i": i}, acc=i / 10) for i in range(3)]
    with journal:
        for row in rows:
            journal.append(row)
            # Flushed at once: readable before the journal is closed.
            assert len(path.read_text().splitlines()) == row.index + 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["version"] == JOURNAL_VERSION == 2
    assert lines[0]["fn"] == "m.fn"
    assert [line["type"] for line in lines[1:]] == ["trial"] * 3
    header, back = read_journal(path)
    assert header["seeds"] == 2
    assert [r.to_dict() for r in back] == [r.to_dict() for r in rows]


def test_journal_is_never_overwritten(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal.open(path, HEADER)[0].close()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        Journal.open(path, HEADER)


def test_resume_returns_rows_and_appends(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER)[0] as journal:
        journal.append(make_row(0, {"i": 0}))
    journal, done = Journal.open(path, {**HEADER, "n_jobs": 4}, resume=True)
    assert [r.index for r in done] == [0]
    with journal:
        journal.append(make_row(1, {"i": 1}))
    assert [r.index for r in read_journal(path)[1]] == [0, 1]


def test_resume_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER)[0] as journal:
        journal.append(make_row(0, {"i": 0}))
    with open(path, "ab") as f:
        f.write(b'{"type": "trial", "key": "abc", "ind')  # killed mid-write
    with pytest.warns(RuntimeWarning, match="torn last line"):
        journal, done = Journal.open(path, HEADER, resume=True)
    assert [r.index for r in done] == [0]
    with journal:
        journal.append(make_row(1, {"i": 1}))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER)[0] as journal:
        journal.append(make_row(0, {"i": 0}))
        journal._file.write(b"garbage\n")
        journal.append(make_row(1, {"i": 1}))
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: not a JSON object")):
        read_journal(path)


@pytest.mark.parametrize(
    "field, value", [("fn", "m.other"), ("trials", "xyz"), ("random_state", 1), ("seeds", 3)]
)
def test_resume_refuses_another_sweep(tmp_path, field, value):
    path = tmp_path / "j.jsonl"
    Journal.open(path, HEADER)[0].close()
    with pytest.raises(ValueError, match=re.escape(f"belongs to a different sweep: {field} is")):
        Journal.open(path, {**HEADER, field: value}, resume=True)


def test_not_a_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"type": "trial"}\n')
    with pytest.raises(ValueError, match="is not an mlpar journal"):
        read_journal(path)


def test_duplicate_keys_keep_the_later_row(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER)[0] as journal:
        journal.append(make_row(0, {"i": 0}, status="failed"))
        journal.append(make_row(0, {"i": 0}, status="ok"))
    with pytest.warns(RuntimeWarning, match="appears twice"):
        rows = read_journal(path)[1]
    assert [r.status for r in rows] == ["ok"]


def test_from_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER)[0] as journal:
        for i in (2, 0, 1):
            journal.append(make_row(i, {"i": i}, acc=float(i)))
    result = SweepResult.from_journal(path)
    assert [r.index for r in result] == [0, 1, 2]
    assert result.info["fn"] == "m.fn"
    assert result.wall_time == pytest.approx(2.5)
    assert result.best("acc")["params"] == {"i": 2}
    assert np.isnan(result.info["error_score"])


# Strict JSON (issue 15): JSON has no NaN, and jq, JavaScript and databases refuse it.
def _refuse(token):
    raise ValueError(f"not strict JSON: {token}")


def strict_lines(path):
    return [json.loads(line, parse_constant=_refuse) for line in path.read_text().splitlines()]


def non_finite_trial(params, seed):
    if params["kind"] == "raise":
        raise RuntimeError("boom")
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "ok": 0.5}[params["kind"]]
    return {"loss": value, "curve": [0.5, value], "note": "NaN"}


KINDS = {"kind": ["ok", "nan", "inf", "-inf", "raise"]}


def check_non_finite_rows(result):
    by_kind = {row.params["kind"]: row for row in result}
    assert {k: r.status for k, r in by_kind.items()} == {
        "ok": "ok",
        "nan": "diverged",
        "inf": "diverged",
        "-inf": "diverged",
        "raise": "failed",
    }
    assert math.isnan(by_kind["nan"].metrics["loss"])
    assert by_kind["inf"].metrics["loss"] == math.inf
    assert by_kind["-inf"].metrics["curve"] == [0.5, -math.inf]
    assert math.isnan(result.info["error_score"])
    summary = result.summary()
    assert summary["mean_loss"][0] == 0.5 and all(math.isnan(m) for m in summary["mean_loss"][1:])


def test_every_journal_line_is_strict_json_and_non_finite_values_round_trip(tmp_path):
    from mlpar.sweep import sweep

    path = tmp_path / "j.jsonl"
    ran = sweep(non_finite_trial, KINDS, journal=path, progress=False)
    lines = strict_lines(path)
    assert lines[0]["error_score"] == "NaN"
    assert [line["metrics"].get("loss") for line in lines[1:]] == [
        0.5,
        "NaN",
        "Infinity",
        "-Infinity",
        None,
    ]
    check_non_finite_rows(ran)
    check_non_finite_rows(SweepResult.from_journal(path))
    # Resuming a finished journal runs nothing and reads the same rows back.
    resumed = sweep(non_finite_trial, KINDS, journal=path, resume=True, progress=False)
    check_non_finite_rows(resumed)
    assert [r.to_dict()["status"] for r in resumed] == [r.status for r in ran]


def test_text_fields_are_never_read_as_floats(tmp_path):
    path = tmp_path / "j.jsonl"
    row = make_row(0, {"i": 0}, status="failed")
    row.error_message = row.error_type = "NaN"
    with Journal.open(path, HEADER)[0] as journal:
        journal.append(row)
    back = read_journal(path)[1][0]
    assert (back.error_type, back.error_message) == ("NaN", "NaN")


def write_version_1(path, rows):
    """A journal as mlpar wrote it before strict JSON: bare NaN and Infinity."""
    lines = [
        {"type": "header", "version": 1, "created_at": "2026-01-01T00:00:00+00:00", **HEADER}
    ] + [{"type": "trial", **row.to_dict()} for row in rows]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()


OLD_ROWS = [
    make_row(0, {"i": 0}, status="diverged", loss=math.nan),
    make_row(1, {"i": 1}, status="diverged", loss=math.inf),
    make_row(2, {"i": 2}, acc=0.5, loss=0.1),
]


def test_version_1_journals_with_bare_nan_are_still_read(tmp_path):
    path = tmp_path / "old.jsonl"
    write_version_1(path, OLD_ROWS)
    header, rows = read_journal(path)
    assert header["version"] == 1 and math.isnan(header["error_score"])
    assert [r.status for r in rows] == ["diverged", "diverged", "ok"]
    assert math.isnan(rows[0].metrics["loss"]) and rows[1].metrics["loss"] == math.inf
    assert SweepResult.from_journal(path).summary()["n_ok"] == [0, 0, 1]


def test_resuming_a_version_1_journal_rewrites_it_strict(tmp_path):
    path = tmp_path / "old.jsonl"
    write_version_1(path, OLD_ROWS)
    journal, done = Journal.open(path, HEADER, resume=True)
    assert [r.status for r in done] == ["diverged", "diverged", "ok"]
    with journal:
        journal.append(make_row(3, {"i": 3}, status="diverged", loss=-math.inf))
    lines = strict_lines(path)
    assert lines[0]["version"] == 2 and lines[0]["created_at"] == "2026-01-01T00:00:00+00:00"
    assert [line["metrics"]["loss"] for line in lines[1:]] == ["NaN", "Infinity", 0.1, "-Infinity"]
    rows = read_journal(path)[1]
    assert rows[1:3] == OLD_ROWS[1:3] and rows[0].key == OLD_ROWS[0].key
    assert math.isnan(rows[0].metrics["loss"]) and rows[3].metrics["loss"] == -math.inf


def test_a_journal_of_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.jsonl"
    path.write_text(json.dumps({"type": "header", "version": 3, **HEADER}, default=str) + "\n")
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{path}: journal version 3 is not supported (this mlpar reads versions 1, 2); "
            f"it was written by a newer mlpar"
        ),
    ):
        read_journal(path)


def test_summary_csv_keeps_nan_and_inf_as_pandas_reads_them(tmp_path):
    from mlpar.sweep import sweep

    path = tmp_path / "j.jsonl"
    sweep(non_finite_trial, KINDS, journal=path, progress=False)
    out = SweepResult.from_journal(path).to_csv(tmp_path / "summary.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["metric_loss"] for r in rows] == ["0.5", "nan", "inf", "-inf", ""]
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(out)
    assert frame["metric_loss"].isna().tolist() == [False, True, False, False, True]
    assert frame["metric_loss"].tolist()[2:4] == [math.inf, -math.inf]


def test_journal_follower_reports_rows_as_they_land(tmp_path):
    from mlpar.results import JournalFollower

    (tmp_path / "old").mkdir()
    path = tmp_path / "old" / "j.jsonl"
    journal, _ = Journal.open(path, {**HEADER, "n_trials": 4})
    journal.append(make_row(0, {"i": 0}))
    seen = []
    with JournalFollower(tmp_path, seen.append, interval=0.05) as follower:
        assert follower.progress().done == 1 and follower.progress().new == 0
        journal.append(make_row(1, {"i": 1}, status="failed"))
        journal._file.write(b'{"type": "trial", "key": "half')  # a line being written
        journal._file.flush()
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    journal.close()
    last = seen[-1]
    assert (last.done, last.not_ok, last.total, last.new) == (2, 1, 4, 1)
    assert last.eta is not None and last.last["key"] == make_row(1, {"i": 1}).key
    assert re.fullmatch(r"sweep: 2/4 trials, 1 not ok, \d+ s elapsed, ETA \d+ s", last.line())


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")]
)
def test_durations_read_as_people_write_them(seconds, text):
    from mlpar.results import duration

    assert duration(seconds) == text


def test_a_progress_line_before_the_journal_header_says_preparing():
    from mlpar.results import Progress

    line = Progress(done=0, not_ok=0, total=0, new=0, elapsed=1.2, eta=None).line()
    assert re.fullmatch(r"sweep: preparing, \d+ s elapsed", line), line
