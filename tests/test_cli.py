"""The ``mlpar`` command, through main([...]) and once as a real subprocess."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlpar.cli import main

# The `tiny` config fixture (4 trials on iris) is in conftest.py.


def _only_run_dir(tmp_path, name="tiny"):
    dirs = [d for d in (tmp_path / "runs" / name).iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "compare", "resume", "report", "validate", "info", "advise", "demo"):
        assert cmd in out
    for cmd in ("run", "compare", "resume", "report", "validate", "info", "advise", "demo"):
        assert main([cmd, "--help"]) == 0


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: mlpar" in capsys.readouterr().out


def test_validate_ok(tiny, capsys):
    assert main(["validate", str(tiny)]) == 0
    assert capsys.readouterr().out.strip() == f"{tiny}: ok (grid, 4 trials, backend serial)"


def test_validate_with_overrides_is_checked_like_the_file(tiny, capsys):
    assert main(["validate", str(tiny), "--set", "train.batch_size=-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.batch_size" in err[0] and "-3" in err[0]


def test_missing_config_is_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml" in err and "Traceback" not in err


def test_unknown_backend_is_one_line_exit_2(tiny, capsys):
    assert main(["run", str(tiny), "--backend", "gpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gpu" in err and "Traceback" not in err


def test_bad_usage_is_one_line_exit_2(capsys):
    assert main(["compare", "x.yaml", "--n-jobs", "a,b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "integers" in err
    assert main(["frobnicate"]) == 2


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cores:" in out and "BLAS:" in out and "GIL" in out
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cores"] >= 1 and "gil_enabled" in info and "numpy" in info["versions"]


def test_run_writes_a_complete_run_folder(tiny, tmp_path, capsys):
    rc = main(["run", str(tiny), "--set", "train.epochs=2", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    run_dir = _only_run_dir(tmp_path)
    assert str(run_dir) in out and "best configurations" in out
    for name in ("config.yaml", "environment.json", "results.jsonl", "summary.csv"):
        assert (run_dir / name).is_file(), name
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2  # the override is in the resolved config
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["command"][:2] == ["mlpar", "run"]
    lines = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    trials = [x for x in lines if "status" in x]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
    with open(run_dir / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) >= 1

    # The run can be repeated from its folder alone, and gives the same metrics.
    rc = main(
        ["run", str(run_dir / "config.yaml"), "--run-dir", str(tmp_path / "again"), "--no-progress"]
    )
    assert rc == 0
    again = [json.loads(x) for x in (tmp_path / "again" / "results.jsonl").read_text().splitlines()]
    by_key = {t["key"]: t["metrics"]["val_score"] for t in trials}
    assert {t["key"]: t["metrics"]["val_score"] for t in again if "status" in t} == by_key

    # report
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "## Results" in report and "score_vs_lr.png" in report
    assert (run_dir / "score_vs_lr.png").stat().st_size > 1000


def test_resume_finishes_a_partial_journal(tiny, tmp_path, capsys):
    assert main(["run", str(tiny), "--no-progress"]) == 0
    run_dir = _only_run_dir(tmp_path)
    journal = run_dir / "results.jsonl"
    full = journal.read_text().splitlines()
    # Keep the header and one trial, and tear the next line in half.
    journal.write_text("\n".join(full[:2]) + "\n" + full[2][: len(full[2]) // 2])
    capsys.readouterr()
    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    trials = [r for r in rows if "status" in r]
    assert sorted(t["key"] for t in trials) == sorted(
        json.loads(x)["key"] for x in full if "status" in json.loads(x)
    )
    assert len({t["key"] for t in trials}) == len(trials) == 4


def test_resume_of_a_non_run_folder_is_one_line(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_compare_prints_speedups_and_writes_report(tiny, tmp_path, capsys):
    rc = main(
        [
            "compare",
            str(tiny),
            "--repeats",
            "1",
            "--run-dir",
            str(tmp_path / "cmp"),
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "threads x2 blas1" in out and "p = " in out
    # Not a terminal (as under a pipe or nohup): one line per finished run, with
    # the time so far and an ETA, the last one without.
    runs = re.findall(
        r"repeat 1: .* ok\)  \[(\d+)/(\d+) runs, \d+ s elapsed(, ETA \d+ s)?\]$", out, re.M
    )
    assert len(runs) == int(runs[0][1]) >= 3 and [int(r[0]) for r in runs] == list(
        range(1, len(runs) + 1)
    )
    assert all(r[2] for r in runs[:-1]) and not runs[-1][2]
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    labels = {r["label"] for r in doc["groups"][0]["summary"]}
    assert {"serial x1 blas1", "threads x2 blas1"} <= labels
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Backend comparison" in report and "speedup.png" in report


def test_advise_recommends_a_valid_setting(tiny, capsys):
    assert main(["advise", str(tiny), "--set", "train.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("recommended: backend=")
    assert "p = " in out and "Amdahl" in out


def test_installed_console_script_runs(tiny):
    exe = Path(sys.executable).with_name("mlpar")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlpar"]
    proc = subprocess.run(
        [*cmd, "validate", str(tiny)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok (grid, 4 trials" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "mlpar", "validate", "/nonexistent.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_gil_axis_explains_what_it_needs(tiny, capsys):
    from mlpar.environment import free_threaded_build

    if free_threaded_build():
        pytest.skip("a free-threaded build can run the GIL axis (tested in the freethreaded CI)")
    assert main(["compare", str(tiny), "--gil", "both"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "free-threaded CPython" in err
    assert "experiments/freethreaded/build.sh" in err


# Command-line overrides as the user means them (issue 15).
SHIPPED = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def _backends():
    from mlpar.backends import available_backends

    return available_backends()


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.stem)
def test_every_backend_overrides_every_shipped_config(
    config, backend, tmp_path, monkeypatch, capsys
):
    if backend == "dask":
        pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.chdir(tmp_path)  # output.folder "runs" is relative: checked, never created
    assert main(["validate", str(config), "--backend", backend]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{config}: ok (") and out.rstrip().endswith(f"backend {backend})")
    file_n_jobs = yaml.safe_load(config.read_text())["execution"]["n_jobs"]
    if backend == "serial" and file_n_jobs not in (None, 1):
        assert err.splitlines() == [
            f"mlpar: note: execution.n_jobs {file_n_jobs} from {config} replaced by 1: backend "
            f"serial, set by an override, runs one trial at a time; override execution.n_jobs "
            f"too to choose"
        ]
    else:
        assert err == ""
    assert not (tmp_path / "runs").exists()


def test_backend_serial_on_the_command_line_runs_serially(tiny, tmp_path, capsys):
    tiny.write_text(tiny.read_text().replace("{backend: serial}", "{backend: threads, n_jobs: 2}"))
    assert main(["run", str(tiny), "--backend", "serial", "--set", "train.epochs=1"]) == 0
    err = capsys.readouterr().err
    assert f"mlpar: note: execution.n_jobs 2 from {tiny} replaced by 1" in err
    rows = [
        json.loads(x)
        for x in (_only_run_dir(tmp_path) / "results.jsonl").read_text().splitlines()[1:]
    ]
    assert {(r["backend"], r["n_jobs"]) for r in rows} == {("serial", 1)}


def _error_cases(tmp_path, tiny):
    (tmp_path / "a_file").write_text("")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.jsonl").write_text('{"type": "header"}\n')
    dup = tmp_path / "dup.yaml"
    dup.write_text(tiny.read_text() + "name: again\n")
    serial = (
        "execution.n_jobs must be 1 or null for backend serial, which runs one trial at a "
        "time, got 2 (int); choose backend threads or processes to run trials in parallel"
    )
    return {
        "typed_serial_n_jobs": (["--backend", "serial", "--n-jobs", "2"], f"--n-jobs: {serial}"),
        "set_serial_n_jobs": (
            ["--set", "execution.backend=serial", "--set", "execution.n_jobs=2"],
            f"--set execution.n_jobs: {serial}",
        ),
        "output_under_a_file": (
            ["--set", f"output.folder={tmp_path / 'a_file'}"],
            f"mlpar: cannot create the run folder {tmp_path / 'a_file'}/tiny: "
            f"{tmp_path / 'a_file'} is a file, not a folder",
        ),
        "run_dir_is_a_file": (
            ["--run-dir", str(tmp_path / "a_file")],
            f"mlpar: cannot create the run folder {tmp_path / 'a_file'}: "
            f"{tmp_path / 'a_file'} is a file, not a folder",
        ),
        "run_dir_holds_a_run": (
            ["--run-dir", str(taken)],
            f"mlpar: {taken} already holds a run (results.jsonl); finish it "
            f"with mlpar resume {taken}, or choose another run folder",
        ),
        "duplicate_key": (
            [],
            f"{dup}: line 10: duplicate key name (first at line 1); each key may appear only once",
        ),
    }


ERROR_CASES = [
    "typed_serial_n_jobs",
    "set_serial_n_jobs",
    "output_under_a_file",
    "run_dir_is_a_file",
    "run_dir_holds_a_run",
    "duplicate_key",
]


@pytest.mark.parametrize("case", ERROR_CASES)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_what_can_be_checked_before_a_trial_fails_first_and_leaves_nothing(
    case, command, tiny, tmp_path, capsys
):
    flags, expected = _error_cases(tmp_path, tiny)[case]
    if command == "validate" and "--run-dir" in flags:
        pytest.skip("validate has no --run-dir")
    config = tmp_path / "dup.yaml" if case == "duplicate_key" else tiny
    assert main([command, str(config), *flags]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [expected] and out == ""
    assert not (tmp_path / "runs").exists()


def test_unreachable_dask_scheduler_is_one_line_within_the_connect_timeout(tiny, tmp_path, capsys):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import time

    t0 = time.monotonic()
    assert (
        main(
            [
                "run",
                str(tiny),
                "--backend",
                "dask",
                "--set",
                "execution.address=tcp://127.0.0.1:9",
                "--set",
                "execution.connect_timeout=1",
            ]
        )
        == 2
    )
    assert time.monotonic() - t0 < 10
    assert capsys.readouterr().err.splitlines() == [
        "mlpar: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s; check "
        "execution.address, start a scheduler there (dask scheduler), or raise "
        "execution.connect_timeout"
    ]
    assert not (tmp_path / "runs").exists()


def _failing_sweep(exc, *, after_trials):
    """A sweep_config that creates the journal (and runs the trials, if asked) then raises."""
    import mlpar.experiment as experiment

    real = experiment.sweep_config

    def sweep_config(config, *, journal=None, **kwargs):
        if after_trials:
            real(config, journal=journal, **kwargs)
        else:
            Path(journal).write_text('{"type": "header", "version": 2}\n')
        raise exc

    return sweep_config


@pytest.mark.parametrize(
    "exc, rc", [(ValueError("the backend did not start"), 2), (KeyboardInterrupt(), 130)]
)
def test_a_run_that_fails_before_its_first_trial_leaves_no_folder(
    exc, rc, tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("mlpar.experiment.sweep_config", _failing_sweep(exc, after_trials=False))
    assert main(["run", str(tiny)]) == rc
    assert not (tmp_path / "runs").exists()
    err = capsys.readouterr().err
    assert (
        "interrupted before any trial finished: nothing to resume, and no run folder was "
        "kept" in err
    ) == (rc == 130)
    # A --run-dir that existed keeps what it held, and only that.
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["run", str(tiny), "--run-dir", str(kept)]) == rc
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_once_trials_have_run_the_folder_stays_resumable(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        "mlpar.experiment.sweep_config", _failing_sweep(KeyboardInterrupt(), after_trials=True)
    )
    assert main(["run", str(tiny), "--set", "train.epochs=1"]) == 130
    run_dir = _only_run_dir(tmp_path)
    assert f"finish the run with: mlpar resume {run_dir}" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "summary.csv").is_file()


# Progress on any output (issue 15): bars on a terminal, lines otherwise.
def test_run_prints_progress_lines_when_stderr_is_not_a_terminal(tiny, capsys):
    assert main(["run", str(tiny), "--set", "train.epochs=1"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("sweep: ")]
    assert lines and re.fullmatch(r"sweep: 4/4 trials, \d+ s elapsed", lines[-1]), lines
    assert main(["run", str(tiny), "--set", "train.epochs=1", "--quiet"]) == 0
    assert "sweep: " not in capsys.readouterr().err


def test_run_under_a_pipe_shows_progress(tiny):
    proc = subprocess.run(
        [sys.executable, "-m", "mlpar", "run", str(tiny), "--set", "train.epochs=1"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^sweep: 4/4 trials, \d+ s elapsed$", proc.stderr, re.M), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_with_diverged_trials_is_strict_json_through_resume_and_report(
    tiny, tmp_path, capsys
):
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    over = [
        "--set",
        "train.optimizer=sgd",
        "--set",
        "sweep.params={lr: [0.001, 1.0e+9]}",
        "--quiet",
    ]
    assert main(["run", str(tiny), *over]) == 0
    run_dir = _only_run_dir(tmp_path)
    journal = run_dir / "results.jsonl"
    lines = [json.loads(x, parse_constant=refuse) for x in journal.read_text().splitlines()]
    assert [x.get("status") for x in lines[1:]] == ["ok", "diverged"]
    assert lines[2]["metrics"]["loss"] == "NaN"
    # A resume that has nothing left to run keeps every status and value.
    journal.write_text("\n".join(journal.read_text().splitlines()[:3]) + "\n")
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["status"], r["metric_loss"]) for r in rows][1] == ("diverged", "nan")
    assert main(["report", str(run_dir)]) == 0
    assert "Trial status: 1 diverged, 1 ok" in (run_dir / "report.md").read_text()
