"""Fault injection: a bad trial is a row, never the end of the sweep.

Every fault is injected by ``faulty`` (module level, so worker processes can
import it) on one trial among healthy ones, on every backend it applies to;
the healthy neighbours must finish ``ok``.
"""

import ctypes
import faulthandler
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mlpar.backends import available_backends
from mlpar.backends._process import ProcessBackend
from mlpar.sweep import sweep

try:
    import resource
except ImportError:  # Windows: the crash tests are skipped there anyway
    resource = None

ALL = ["serial", "threads", "processes", "dask"]
# The fork-started processes backend shares the processes backend's isolation.
PROCESSES = ["processes", "forked"] if "forked" in available_backends() else ["processes"]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and exit codes")
FORKSERVER = pytest.mark.skipif(
    ProcessBackend._launcher != "forkserver", reason="processes starts workers with loky here"
)


def faulty(params, seed):
    """A trial that misbehaves as ``params["kind"]`` says (only once if ``params["once"]`` names a marker file)."""
    kind = params["kind"]
    once = params.get("once")
    if once is not None:
        if os.path.exists(once):
            kind = "ok"
        else:
            open(once, "w").close()
    if kind == "raise":
        raise ValueError(f"bad trial with seed {seed}")
    if kind == "nan":
        return {"loss": float("nan"), "epochs": 3}
    if kind == "inf":
        return {"loss": float("inf")}
    if kind == "flag":
        return {"loss": 1.0, "diverged": True}
    if kind == "hang":
        time.sleep(60)  # ignores its deadline: only killing the worker stops it
    if kind == "late":
        time.sleep(0.8)  # past a 0.3 s timeout, then returns
    if kind == "sleep":
        time.sleep(0.2)
    if kind == "exit":
        os._exit(1)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        # A forked worker inherits pytest's faulthandler, whose "Fatal Python
        # error" dump of every thread would read as a crash in a passing run.
        faulthandler.disable()
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return {"loss": 0.5, "pid": os.getpid()}


def run(request, backend, kinds, **kwargs):
    if backend == "dask":
        kwargs["address"] = request.getfixturevalue("dask_address")
    if backend != "serial":
        kwargs.setdefault("n_jobs", 2)
    space = [{"kind": [kind], "i": [i]} for i, kind in enumerate(kinds)]
    return sweep(faulty, space, backend=backend, progress=False, **kwargs)


def statuses(result):
    return [row.status for row in result]


@pytest.mark.parametrize("backend", ALL)
def test_exception_is_a_failed_row(request, backend):
    # n_jobs=1: the point is the worker-side capture; isolation is tested below.
    result = run(request, backend, ["ok", "raise", "ok"], n_jobs=None if backend == "serial" else 1)
    assert statuses(result) == ["ok", "failed", "ok"]
    row = result[1]
    assert row.error_type == "ValueError"
    assert row.error_message == f"bad trial with seed {row.seed}"
    assert "Traceback" in row.traceback and "in faulty" in row.traceback
    assert row.attempts == 1 and row.wall_time >= 0


@pytest.mark.parametrize("backend", ALL)
def test_nan_inf_or_diverged_flag_is_a_diverged_row(request, backend):
    result = run(
        request, backend, ["nan", "inf", "flag", "ok"], n_jobs=None if backend == "serial" else 1
    )
    assert statuses(result) == ["diverged", "diverged", "diverged", "ok"]
    assert result[0].error_message == "metric 'loss' is nan"
    assert result[0].metrics["epochs"] == 3  # metrics are kept
    assert result[1].error_message == "metric 'loss' is inf"
    assert result[2].error_message == "fn reported diverged=True"
    assert result[2].error_type is None


@pytest.mark.parametrize("backend", ["serial", "threads"])
def test_in_process_timeouts_are_cooperative(request, backend):
    # A thread cannot be killed: the sweep waits, then marks the trial late.
    result = run(request, backend, ["late", "ok"], timeout=0.3)
    assert statuses(result) == ["timeout", "ok"]
    assert result[0].metrics["loss"] == 0.5
    assert "past its timeout of 0.3 s" in result[0].error_message


@POSIX
@pytest.mark.parametrize("backend", PROCESSES)
def test_processes_kill_a_trial_that_ignores_its_timeout(request, backend):
    result = run(request, backend, ["ok", "hang", "sleep", "ok"], timeout=0.5)
    assert statuses(result) == ["ok", "timeout", "ok", "ok"]
    row = result[1]
    assert row.error_type == "TimeoutError"
    assert f"worker process {row.pid} was killed" in row.error_message
    assert not _alive(row.pid)
    assert row.pid not in {r.metrics["pid"] for r in result if r.status == "ok"}


@POSIX
@pytest.mark.parametrize("backend", [*PROCESSES, "dask"])
@pytest.mark.parametrize(
    "kind, processes_says",
    [("exit", "exit code 1"), ("sigkill", "killed by SIGKILL"), ("segfault", "killed by SIGSEGV")],
)
def test_a_dying_worker_costs_only_its_trial(request, backend, kind, processes_says):
    result = run(request, backend, ["sleep", kind, "ok", "ok"])
    assert statuses(result) == ["ok", "crashed", "ok", "ok"]
    row = result[1]
    assert row.error_type == "WorkerCrashed"
    if backend in PROCESSES:
        assert processes_says in row.error_message
        assert not _alive(row.pid)
    else:
        assert "the Dask worker running the trial died" in row.error_message


@pytest.mark.parametrize("backend", ALL)
def test_retries_rerun_a_flaky_trial(request, tmp_path, backend):
    kwargs = {"address": request.getfixturevalue("dask_address")} if backend == "dask" else {}
    flaky = {"kind": ["raise"], "once": [str(tmp_path / "failed-once")]}
    result = sweep(
        faulty, [flaky, {"kind": ["ok"]}], backend=backend, retries=1, progress=False, **kwargs
    )
    assert statuses(result) == ["ok", "ok"]
    assert [r.attempts for r in result] == [2, 1]


@POSIX
def test_retries_rerun_crashed_and_killed_trials(tmp_path):
    space = [
        {"kind": [kind], "once": [str(tmp_path / f"{kind}-once")]}
        for kind in ("exit", "segfault", "hang")
    ]
    result = sweep(
        faulty,
        space + [{"kind": ["ok"]}],
        backend="processes",
        n_jobs=2,
        retries=1,
        timeout=0.5,
        progress=False,
    )
    assert statuses(result) == ["ok", "ok", "ok", "ok"]
    assert [r.attempts for r in result] == [2, 2, 2, 1]


def test_retries_are_bounded():
    result = sweep(faulty, {"kind": ["raise"]}, retries=2)
    assert statuses(result) == ["failed"] and result[0].attempts == 3


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX SIGINT")
def test_ctrl_c_stops_the_workers_and_resume_finishes(tmp_path):
    journal = tmp_path / "j.jsonl"
    # 24 trials of 0.2 s on 2 workers: >= 2 s left after the second row, so a
    # presser thread slowed by a loaded machine still presses mid-sweep.
    space = {"kind": ["sleep"], "i": list(range(24))}

    def press_ctrl_c_after_two_rows():
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            if journal.exists() and journal.read_text().count('"type": "trial"') >= 2:
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_after_two_rows, daemon=True)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        sweep(faulty, space, backend="processes", n_jobs=2, journal=journal, progress=False)
    presser.join()

    rows = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert 2 <= len(rows) < 24
    assert len({r["key"] for r in rows}) == len(rows)  # each finished trial once
    assert all(r["status"] == "ok" for r in rows)
    time.sleep(0.2)
    assert not any(_alive(r["pid"]) for r in rows)  # workers were stopped

    result = sweep(
        faulty, space, backend="processes", n_jobs=2, journal=journal, resume=True, progress=False
    )
    assert statuses(result) == ["ok"] * 24
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()[1:]]
    assert sorted(keys) == sorted(r.key for r in result)


@POSIX
def test_dask_own_cluster_kills_hung_trials_and_survives_crashes():
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    kinds = ["ok", "hang", "exit", "raise", "sleep", "ok"]
    space = [{"kind": [kind], "i": [i]} for i, kind in enumerate(kinds)]
    result = sweep(faulty, space, backend="dask", n_jobs=2, timeout=1.0, progress=False)
    assert statuses(result) == ["ok", "timeout", "crashed", "failed", "ok", "ok"]
    assert "was killed" in result[1].error_message


def _alive(pid):
    """True if ``pid`` runs (a zombie awaiting its parent counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a null signal
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


class LoadsOnlyHere:
    """A callable that pickles fine but fails to load in any other process."""

    def __init__(self, how):
        self.how = how
        self.pid = os.getpid()

    def __call__(self, params, seed):
        return {}

    def __setstate__(self, state):
        if os.getpid() != state["pid"]:
            if state["how"] == "die":
                os._exit(3)
            raise ImportError("simulated: fn's module is missing in the worker")
        self.__dict__.update(state)


def test_fn_that_cannot_load_in_workers_stops_the_sweep_with_the_reason():
    with pytest.raises(
        RuntimeError,
        match="a worker process could not load fn(.|\n)*simulated: fn's module is missing",
    ):
        sweep(LoadsOnlyHere("raise"), {"x": [1, 2]}, backend="processes", n_jobs=1)


@POSIX
def test_workers_dying_on_start_up_stop_the_sweep():
    with pytest.raises(
        RuntimeError, match="5 worker processes in a row died before running a trial"
    ):
        sweep(LoadsOnlyHere("die"), {"x": [1, 2]}, backend="processes", n_jobs=1)


# ------------------------------------------------ the processes fork server

# A module of fn that misbehaves only in the fork server, whose parent is the
# sweep's process; workers (children of the server) import it fine.
SERVER_FAULTS = {
    "raises": "raise ImportError('simulated: fails in the fork server')",
    "crashes": "os._exit(7)",
    "starts-a-thread": "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
}
FN_MODULE = """
import os, threading, time
if os.getppid() == {sweep_pid}:
    {fault}
IMPORTED_IN = os.getpid()

def trial(params, seed):
    return {{"imported_in": IMPORTED_IN, "pid": os.getpid(), "version": {version}}}
"""


def _fn_module(tmp_path, monkeypatch, name, fault="pass", version=1):
    (tmp_path / f"{name}.py").write_text(
        FN_MODULE.format(sweep_pid=os.getpid(), fault=fault, version=version)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


@FORKSERVER
@pytest.mark.parametrize("fault", SERVER_FAULTS)
def test_a_fn_module_failing_in_the_fork_server_is_imported_by_each_worker(
    tmp_path, monkeypatch, fault
):
    name = f"fn_{fault.replace('-', '_')}"
    module = _fn_module(tmp_path, monkeypatch, name, SERVER_FAULTS[fault])
    result = sweep(module.trial, {"x": [1, 2, 3]}, backend="processes", n_jobs=2, progress=False)
    assert statuses(result) == ["ok", "ok", "ok"]
    assert all(r.metrics["imported_in"] == r.metrics["pid"] for r in result)
    # Never preloaded again: the next sweep does not crash or taint a server.
    again = sweep(module.trial, {"x": [1]}, backend="processes", n_jobs=1, progress=False)
    assert statuses(again) == ["ok"]


@FORKSERVER
def test_an_edited_fn_module_never_runs_stale_in_workers(tmp_path, monkeypatch):
    module = _fn_module(tmp_path, monkeypatch, "fn_edited", version=1)
    first = sweep(module.trial, {"x": [1]}, backend="processes", n_jobs=1, progress=False)
    assert first[0].metrics["version"] == 1
    assert first[0].metrics["imported_in"] != first[0].metrics["pid"], "preloaded by the server"
    module = _fn_module(tmp_path, monkeypatch, "fn_edited", version=22)  # edited and reloaded
    second = sweep(module.trial, {"x": [1]}, backend="processes", n_jobs=1, progress=False)
    assert second[0].metrics["version"] == 22


ORPHAN_SCRIPT = """
import os, sys, time
from mlpar.sweep import sweep

def hang(params, seed):
    # One write(2) of under PIPE_BUF bytes is atomic: two workers' lines
    # cannot interleave into one ("1871818719"), as print's writes could.
    os.write(1, b"%d\\n" % os.getpid())
    time.sleep(60)
    return {}

sweep(hang, {"x": [1, 2]}, backend=sys.argv[1], n_jobs=2, progress=False)
"""


@POSIX
@pytest.mark.parametrize("backend", PROCESSES)
def test_workers_exit_when_the_sweeps_process_is_killed(tmp_path, backend):
    script = tmp_path / "orphans.py"
    script.write_text(ORPHAN_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), backend],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        # Only the workers' pid lines count: anything else on stdout is skipped.
        pids = []
        while len(pids) < 2:
            line = proc.stdout.readline()
            if not line:
                break  # the script ended early: the assertions below say so
            if line.strip().isdigit():
                pids.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone: no clean-up runs
        proc.wait()
    give_up = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < give_up:
        time.sleep(0.05)
    assert len(pids) == 2, "the workers never reported their pids"
    assert not any(_alive(pid) for pid in pids), "orphaned workers still run"
    proc.stdout.close()
