"""Backends: registry, every backend against serial, thread budget, Dask wiring."""

import os
import re
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlpar import backends
from mlpar.backends import (
    ThreadBackend,
    available_backends,
    effective_n_jobs,
    make_backend,
    register_backend,
)
from mlpar.backends._execute import TrialRunner
from mlpar.backends._process import _THREAD_ENV_VARS, ProcessBackend
from mlpar.space import Trial, trial_seed
from mlpar.sweep import sweep

# The process that imported this module: a fork server preloads it, so its
# workers report the server's pid here, not their own.
IMPORTED_IN = os.getpid()
FORKSERVER = pytest.mark.skipif(
    ProcessBackend._launcher != "forkserver", reason="processes starts workers with loky here"
)

# "forked" (the processes backend started by fork) exists where os.fork does.
PARALLEL = ["threads", "processes", "dask", *(["forked"] if hasattr(os, "fork") else [])]
SPACE = {"n": [8, 32, 64], "lr": [0.01, 0.05]}


def lstsq_trial(params, seed):
    """Real seeded NumPy work: gradient descent on a random least-squares problem."""
    rng = np.random.default_rng(seed)
    n = params["n"]
    a = rng.standard_normal((3 * n, n))
    b = rng.standard_normal(3 * n)
    w = np.zeros(n)
    for _ in range(30):
        w -= params["lr"] * (a.T @ (a @ w - b)) / len(b)
    return {"loss": float(np.mean((a @ w - b) ** 2)), "w0": float(w[0]), "pid": os.getpid()}


def run(request, backend, fn=lstsq_trial, space=SPACE, **kwargs):
    """sweep() on ``backend``; Dask uses the module's cluster."""
    if backend == "dask":
        kwargs["address"] = request.getfixturevalue("dask_address")
    if backend != "serial":
        kwargs.setdefault("n_jobs", 2)
    return sweep(fn, space, backend=backend, progress=False, **kwargs)


def comparable(result):
    return [(r.key, r.index, r.seed, r.status, r.metrics["loss"], r.metrics["w0"]) for r in result]


# ----------------------------------------------------------------- registry


def test_builtin_backends_are_registered():
    assert {"serial", "threads", "processes", "dask"} <= set(available_backends())


def test_unknown_backend_lists_the_available_ones():
    message = "unknown backend 'gpu'; available: " + ", ".join(available_backends())
    with pytest.raises(ValueError, match=re.escape(message)):
        make_backend("gpu")
    with pytest.raises(ValueError, match=re.escape("unknown backend 'gpu'")):
        sweep(lstsq_trial, SPACE, backend="gpu")


def test_register_a_new_backend(monkeypatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))

    class ThreeThreads(ThreadBackend):
        default_n_jobs = 3

    register_backend("three-threads", ThreeThreads)
    assert "three-threads" in available_backends()
    result = sweep(lstsq_trial, SPACE, backend="three-threads", progress=False)
    assert {r.backend for r in result} == {"three-threads"}
    assert {r.n_jobs for r in result} == {3}
    assert {r.thread_name for r in result} <= {"mlpar-trial-0", "mlpar-trial-1", "mlpar-trial-2"}

    register_backend("broken", lambda **kwargs: object())
    with pytest.raises(TypeError, match="returned object, not a mlpar.backends.Backend"):
        make_backend("broken")
    with pytest.raises(TypeError, match="factory must be callable"):
        register_backend("x", 3)


def test_dask_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "mlpar.backends._dask", raising=False)
    with pytest.raises(ImportError, match=re.escape('pip install "mlpar[dask]"')):
        make_backend("dask")


@pytest.mark.parametrize(
    "n_jobs, expected",
    [(None, 7), (1, 1), (3, 3), (-1, joblib.cpu_count()), (-joblib.cpu_count() - 5, 1)],
)
def test_effective_n_jobs(n_jobs, expected):
    assert effective_n_jobs(n_jobs, default=7) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"backend": "threads", "n_jobs": 0},
            "n_jobs must be a positive integer, -1 for all cores, or None, got 0",
        ),
        ({"backend": "processes", "n_jobs": 1.5}, "n_jobs must be a positive integer"),
        (
            {"backend": "serial", "n_jobs": 2},
            "backend 'serial' runs one trial at a time; n_jobs must be 1 or None, got 2",
        ),
        (
            {"backend": "threads", "address": "tcp://127.0.0.1:1"},
            "address='tcp://127.0.0.1:1' is only used by backend='dask'",
        ),
    ],
)
def test_backend_option_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep(lstsq_trial, SPACE, progress=False, **kwargs)


@pytest.mark.parametrize("limit", [None, "1", "64"])
def test_cpu_count_is_joblibs_without_importing_it(monkeypatch, limit):
    from mlpar.environment import cpu_count

    if limit is not None:
        monkeypatch.setenv("LOKY_MAX_CPU_COUNT", limit)
    assert cpu_count() == joblib.cpu_count()


def test_installed_versions_are_importlib_metadatas():
    import importlib.metadata

    from mlpar.environment import installed_version

    for name in ("numpy", "scikit-learn", "joblib", "threadpoolctl", "PyYAML", "mlpar"):
        assert installed_version(name) == importlib.metadata.version(name)
    assert installed_version("no-such-distribution-here") is None


def test_default_n_jobs():
    assert sweep(lstsq_trial, {"n": [8], "lr": [0.01]})[0].n_jobs == 1
    assert (
        sweep(lstsq_trial, {"n": [8], "lr": [0.01]}, backend="threads")[0].n_jobs
        == joblib.cpu_count()
    )


# ------------------------------------------------------ every backend vs serial


@pytest.mark.parametrize("backend", PARALLEL)
def test_bit_identical_to_serial(request, backend):
    expected = comparable(run(request, "serial", seeds=2, random_state=3, blas_threads=1))
    result = run(request, backend, seeds=2, random_state=3, blas_threads=1)
    assert comparable(result) == expected
    for row in result:
        assert row.seed == trial_seed(3, row.key)
        assert row.backend == backend and row.n_jobs == 2 and row.status == "ok"
    if backend != "threads":
        assert os.getpid() not in {r.metrics["pid"] for r in result}


SCRIPT = """
from mlpar.sweep import sweep
offset = 10
# No `if __name__ == "__main__":` guard, and a lambda from __main__: workers
# must neither re-run this script nor need to import it.
result = sweep(lambda params, seed: {"y": params["x"] + offset}, {"x": [1, 2, 3]},
               backend="processes", n_jobs=2, progress=False)
print([row.metrics["y"] for row in result], [row.status for row in result])
"""


def test_processes_run_functions_from_an_unguarded_main_script(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[11, 12, 13] ['ok', 'ok', 'ok']"


# ------------------------------------------------------------ thread budget


@pytest.mark.parametrize("backend", ["serial", *PARALLEL])
def test_rows_report_the_blas_threads_seen(request, backend):
    before = threadpool_info()
    result = run(request, backend, blas_threads=1)
    assert {(r.blas_threads, r.blas_threads_seen) for r in result} == {(1, 1)}
    # The in-process limit is lifted after the sweep.
    assert threadpool_info() == before


def worker_report(params, seed):
    """What a worker process has: its BLAS threads, thread variables, parent, imports."""
    if params.get("say"):
        print(params["say"], flush=True)
    blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    return {
        "blas": sorted(blas),
        "env": sorted({os.environ.get(v) for v in _THREAD_ENV_VARS}),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "imported_in": IMPORTED_IN,
    }


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_a_worker_has_the_sweeps_blas_threads_before_any_limit(blas_threads):
    if blas_threads > joblib.cpu_count():
        pytest.skip("needs 2 cores to give a worker 2 BLAS threads")
    backend = make_backend("processes", n_jobs=1)
    backend.open()
    # limit_threads=False: what the worker has on its own, without the
    # threadpoolctl limit the sweep applies around each trial.
    runner = TrialRunner(worker_report, blas_threads=blas_threads, limit_threads=False)
    backend.start(runner, blas_threads=blas_threads)
    try:
        backend.submit(0, Trial(key="k", params={}, repeat=0, seed=0))
        [(job_id, outcome)] = backend.wait()
    finally:
        backend.close()
    assert outcome["status"] == "ok", outcome["traceback"]
    assert outcome["metrics"]["blas"] == [blas_threads]
    # ... and libraries that load later find the same count in the environment.
    assert outcome["metrics"]["env"] == [str(blas_threads)]


@FORKSERVER
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads threads from /proc")
def test_processes_workers_fork_from_one_preloaded_server_per_environment(request):
    first = run(request, "processes", fn=worker_report, space={"x": [1, 2, 3]}, blas_threads=1)
    again = run(request, "processes", fn=worker_report, space={"x": [1, 2]}, blas_threads=1)
    servers = {r.metrics["ppid"] for r in [*first, *again]}
    assert len(servers) == 1, "one server, reused by the next sweep"
    server = servers.pop()
    assert server != os.getpid(), "workers are not forked from the sweep's process"
    assert {r.metrics["imported_in"] for r in first} == {server}, "fn's module was preloaded"
    # Single-threaded (with one BLAS thread, not even an OpenBLAS pool).
    assert len(os.listdir(f"/proc/{server}/task")) == 1
    # Another thread count is another environment: BLAS loads under it in its own server.
    other = run(request, "processes", fn=worker_report, space={"x": [1]}, n_jobs=1, blas_threads=2)
    assert other[0].metrics["ppid"] not in (server, os.getpid())


def test_processes_workers_print_to_the_sweeps_stdout(request, capfd):
    run(request, "processes", fn=worker_report, space={"say": ["hello from a worker"]})
    assert "hello from a worker" in capfd.readouterr().out


@pytest.mark.skipif(joblib.cpu_count() < 2, reason="needs 2 cores to give a worker 2 BLAS threads")
def test_worker_blas_threads_follow_the_budget(request):
    result = run(request, "processes", n_jobs=1, blas_threads=2)
    assert {r.blas_threads_seen for r in result} == {2}
    result = run(request, "processes", n_jobs=2)  # default: cpu_count // n_jobs
    assert {r.blas_threads_seen for r in result} == {max(1, joblib.cpu_count() // 2)}


def test_oversubscription_warns(request):
    with pytest.warns(RuntimeWarning, match="exceeds the .* available cores"):
        run(request, "threads", n_jobs=joblib.cpu_count(), blas_threads=2)


# ------------------------------------------------------------ dask own cluster


def _listening_sockets(pids):
    """(local address hex, pid) of the TCP sockets in LISTEN state owned by ``pids``."""
    inodes = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    found.append(fields[1].split(":")[0])
    return found


def _descendants(pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                children += [int(entry), *_descendants(int(entry))]
    return children


def lstsq_and_sockets(params, seed):
    """lstsq_trial, plus the listening sockets of the whole cluster (workers' parent and its tree)."""
    metrics = lstsq_trial(params, seed)
    parent = os.getppid()
    metrics["listening"] = _listening_sockets([parent, *_descendants(parent)])
    return metrics


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")
def test_dask_own_cluster_is_loopback_only_and_closed(request):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    expected = comparable(run(request, "serial", blas_threads=1))
    result = sweep(
        lstsq_and_sockets, SPACE, backend="dask", n_jobs=2, blas_threads=1, progress=False
    )
    assert comparable(result) == expected
    assert {r.blas_threads_seen for r in result} == {1}
    listening = result[0].metrics["listening"]
    # Scheduler, its dashboard, 2 nannies and 2 workers at least.
    assert len(listening) >= 6
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    assert set(listening) <= loopback, listening
    # The cluster is closed afterwards: its worker processes are gone.
    time.sleep(0.5)
    for pid in {r.metrics["pid"] for r in result}:
        assert (
            not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        )


PRESTART = """
import json
from mlpar import sweep
from mlpar.backends import _forkserver, prestart

def trial(params, seed):
    return {"x": 1.0}

prestart("processes", n_jobs=2, blas_threads=1)
started = len(_forkserver._SERVERS._servers)
result = sweep(trial, {"a": [1, 2, 3]}, backend="processes", n_jobs=2, blas_threads=1,
               progress=False)
print(json.dumps({"started": started, "servers": len(_forkserver._SERVERS._servers),
                  "status": [r.status for r in result]}))
"""


@pytest.mark.skipif(ProcessBackend._launcher != "forkserver", reason="fork servers only")
def test_prestart_boots_the_server_the_sweep_then_uses():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PRESTART], capture_output=True, text=True, timeout=120, check=True
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc == {"started": 1, "servers": 1, "status": ["ok"] * 3}


BOOT_AHEAD = """
import json, os, sys, time
from mlpar import sweep
from mlpar.backends import _forkserver, boot_ahead

def trial(params, seed):
    return {"pid": float(os.getpid()), "ppid": float(os.getppid())}

boot_ahead()
ahead = _forkserver._SERVERS._ahead.process
if sys.argv[1] == "python-var":
    os.environ["PYTHONHASHSEED"] = "7"  # read at start-up: the booted server cannot take it
result = sweep(trial, {"a": [1, 2, 3]}, backend="processes", n_jobs=2, blas_threads=1,
               progress=False)
servers = list(_forkserver._SERVERS._servers.values())
if sys.argv[1] == "python-var":
    ahead.wait(30)  # closed when it could not be taken
print(json.dumps({"ahead": ahead.pid, "servers": [s.process.pid for s in servers],
                  "parents": sorted({r.metrics["ppid"] for r in result}),
                  "ahead_exit": ahead.poll(), "status": [r.status for r in result]}))
"""


def _boot_ahead(mode):
    import json

    out = subprocess.run(
        [sys.executable, "-c", BOOT_AHEAD, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(ProcessBackend._launcher != "forkserver", reason="fork servers only")
def test_a_server_booted_ahead_becomes_the_sweeps_server():
    doc = _boot_ahead("same")
    assert doc["status"] == ["ok"] * 3
    # One server, the one booted before the sweep knew its BLAS threads, and
    # every worker is its child.
    assert doc["servers"] == [doc["ahead"]]
    assert doc["parents"] == [float(doc["ahead"])]
    assert doc["ahead_exit"] is None


@pytest.mark.skipif(ProcessBackend._launcher != "forkserver", reason="fork servers only")
def test_a_server_booted_in_another_python_environment_is_not_used():
    doc = _boot_ahead("python-var")
    assert doc["status"] == ["ok"] * 3
    assert len(doc["servers"]) == 1 and doc["servers"] != [doc["ahead"]]
    assert doc["parents"] == [float(doc["servers"][0])]
    assert doc["ahead_exit"] == 0  # it never imported anything, and exited


def test_what_a_server_booted_ahead_may_take():
    from mlpar.backends._forkserver import _Server

    server = _Server.__new__(_Server)  # no process: can_take reads env alone
    server.env = {"PATH": "/bin", "PYTHONPATH": "/x", "LD_LIBRARY_PATH": "/l"}
    base = dict(server.env)
    assert server.can_take({**base, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert server.can_take({**base, "KMP_DUPLICATE_LIB_OK": "True", "PYTEST_CURRENT_TEST": "t"})
    assert not server.can_take({**base, "PYTHONPATH": "/y"})
    assert not server.can_take({k: v for k, v in base.items() if k != "PYTHONPATH"})
    assert not server.can_take({**base, "PYTHON_GIL": "0"})
    assert not server.can_take({**base, "LD_PRELOAD": "/lib.so"})
    assert not server.can_take({**base, "DYLD_LIBRARY_PATH": "/d"})
