"""Interrupt a real ``mlpar run`` (SIGINT, then SIGKILL) and resume it.

The results after ``mlpar resume`` must equal an uninterrupted run's: the
same trial keys, each exactly once, with bit-identical metrics
(``blas_threads: 1`` makes the training deterministic).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpar.cli import main

CONFIG = """\
name: interrupt
data: {{dataset: digits}}
model: {{hidden: [64]}}
train: {{epochs: {epochs}, batch_size: 32}}
sweep:
  params: {{lr: [0.001, 0.002, 0.003, 0.004], alpha: [0.0001, 0.001]}}
execution: {{backend: {backend}, n_jobs: {n_jobs}, blas_threads: 1}}
output: {{folder: {out}}}
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _trials(journal):
    rows = []
    for line in Path(journal).read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if "status" in rec:
            rows.append(rec)
    return rows


def _write_config(tmp_path, backend, n_jobs, epochs=12):
    path = tmp_path / f"{backend}.yaml"
    path.write_text(
        CONFIG.format(backend=backend, n_jobs=n_jobs, epochs=epochs, out=tmp_path / "runs")
    )
    return path


def _start(config, run_dir):
    # The installed console script, as a user runs it; stdin closed like CI.
    exe = Path(sys.executable).with_name("mlpar")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlpar"]
    return subprocess.Popen(
        [*cmd, "run", str(config), "--run-dir", str(run_dir), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _wait_for_trials(journal, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists() and len(_trials(journal)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("no trial completed in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: key -> metrics."""
    tmp = tmp_path_factory.mktemp("reference")
    config = _write_config(tmp, "serial", 1)
    assert main(["run", str(config), "--run-dir", str(tmp / "run"), "--no-progress"]) == 0
    rows = _trials(tmp / "run" / "results.jsonl")
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    return {r["key"]: r["metrics"] for r in rows}


def _comparable(metrics):
    return {k: v for k, v in metrics.items() if not k.endswith(("_time", "_per_s"))}


def _resume_and_check(run_dir, reference):
    exe = Path(sys.executable).with_name("mlpar")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlpar"]
    proc = subprocess.run(
        [*cmd, "resume", str(run_dir), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    rows = _trials(run_dir / "results.jsonl")
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 8, "every trial exactly once"
    assert set(keys) == set(reference)
    for r in rows:
        assert r["status"] == "ok"
        assert _comparable(r["metrics"]) == _comparable(reference[r["key"]])


@pytest.mark.parametrize("backend, n_jobs", [("serial", 1), ("processes", 2)])
def test_sigint_exits_130_and_resume_equals_uninterrupted(tmp_path, reference, backend, n_jobs):
    config = _write_config(tmp_path, backend, n_jobs)
    run_dir = tmp_path / "run"
    proc = _start(config, run_dir)
    _wait_for_trials(run_dir / "results.jsonl", 2, proc)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"mlpar resume {run_dir}" in err
    done = _trials(run_dir / "results.jsonl")
    keys = [r["key"] for r in done]
    assert len(keys) == len(set(keys)) >= 2, "completed trials are on disk, each once"
    assert len(keys) < 8, "the run was interrupted before the end"
    _resume_and_check(run_dir, reference)


def test_sigkill_leaves_a_resumable_journal(tmp_path, reference):
    config = _write_config(tmp_path, "processes", 2)
    run_dir = tmp_path / "run"
    proc = _start(config, run_dir)
    _wait_for_trials(run_dir / "results.jsonl", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers: no clean-up
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # Simulate the worst case too: the kill cut the last line in half.
    journal = run_dir / "results.jsonl"
    text = journal.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    journal.write_text(text.rstrip("\n")[: -(len(last) // 2)])
    _resume_and_check(run_dir, reference)
