"""The ``mlpar`` command, through main([...]) and once as a real subprocess."""

import csv
import json
import os
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
    rc = main(["run", str(run_dir / "config.yaml"), "--run-dir", str(tmp_path / "again"),
               "--no-progress"])
    assert rc == 0
    again = [json.loads(x) for x in (tmp_path / "again" / "results.jsonl").read_text()
             .splitlines()]
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
        json.loads(x)["key"] for x in full if "status" in json.loads(x))
    assert len({t["key"] for t in trials}) == len(trials) == 4


def test_resume_of_a_non_run_folder_is_one_line(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_compare_prints_speedups_and_writes_report(tiny, tmp_path, capsys):
    rc = main(["compare", str(tiny), "--repeats", "1", "--run-dir", str(tmp_path / "cmp"),
               "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "threads x2 blas1" in out and "p = " in out
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
    proc = subprocess.run([*cmd, "validate", str(tiny)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "ok (grid, 4 trials" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mlpar", "validate", "/nonexistent.yaml"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_gil_axis_explains_what_it_needs(tiny, capsys):
    from mlpar.environment import free_threaded_build

    if free_threaded_build():
        pytest.skip("a free-threaded build can run the GIL axis (tested in the freethreaded CI)")
    assert main(["compare", str(tiny), "--gil", "both"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "free-threaded CPython" in err
    assert "experiments/freethreaded/build.sh" in err
