"""What each entry point imports: a ``sys.modules`` check, never a timing.

A worker that runs ``train_mlp`` needs NumPy, threadpoolctl and mlpar's engine;
scikit-learn and SciPy cost ~2 s and ~140 MB per interpreter, so they must not
ride along. Each check runs in a fresh interpreter, because this test process
has long imported everything.
"""

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("sklearn", "scipy", "pandas", "matplotlib")

PROBE = textwrap.dedent("""
    import json, sys
    HEAVY = {heavy!r}

    def loaded():
        return sorted(m for m in HEAVY if m in sys.modules)
""")


def _python(code, *, cwd=None, timeout=240):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY) + code],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(argv):
    return textwrap.dedent(f"""
        import contextlib, io
        from mlpar.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main({argv!r})
        print(json.dumps({{"rc": rc, "heavy": loaded(),
                          "joblib": "joblib" in sys.modules}}))
    """)


def test_import_mlpar_loads_no_heavy_library_nor_analysis_or_report():
    out = _python(
        textwrap.dedent("""
        import mlpar
        print(json.dumps({"heavy": loaded(), "mlpar": sorted(
            m for m in sys.modules
            if m.startswith(("mlpar.analysis", "mlpar.report", "mlpar.config", "mlpar.halving"))
            or m == "yaml")}))
    """)
    )
    # The config schema (and PyYAML) load with the CLI or a halving search, not for sweep().
    assert out == {"heavy": [], "mlpar": []}


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["info"]])
def test_light_subcommands_import_no_heavy_library(argv):
    out = _python(_cli(argv))
    assert out["rc"] == 0 and out["heavy"] == []


def test_help_does_not_import_joblib():
    assert _python(_cli(["--help"]))["joblib"] is False


def test_validate_imports_scipy_only_for_distributions(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\ndata: {dataset: iris}\nsweep:\n  params: {lr: [0.01, 0.1]}\n")
    rand = tmp_path / "rand.yaml"
    rand.write_text(
        "name: r\ndata: {dataset: iris}\nsweep:\n  n_iter: 3\n"
        "  params: {lr: {loguniform: [0.0001, 0.1]}}\n"
    )
    out = _python(_cli(["validate", str(grid)]))
    assert out["rc"] == 0 and out["heavy"] == []
    out = _python(_cli(["validate", str(rand)]))
    assert out["rc"] == 0 and "scipy" in out["heavy"]


def test_a_second_run_imports_no_scikit_learn_in_the_parent(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "name: tiny\ndata: {dataset: digits}\nmodel: {hidden: [8]}\n"
        "train: {epochs: 1}\nsweep:\n  params: {lr: [0.01, 0.1]}\n"
        "execution: {backend: serial}\n"
        f"output: {{folder: {str(tmp_path / 'runs')!r}}}\n"
    )
    first = _python(_cli(["run", str(cfg), "--no-progress"]))
    second = _python(_cli(["run", str(cfg), "--no-progress"]))
    assert first["rc"] == 0 and second["rc"] == 0
    assert second["heavy"] == []


WORKER = textwrap.dedent("""
    from mlpar import sweep, train_mlp

    def trial(params, seed):
        metrics = train_mlp(params, seed)
        return {{"val_score": metrics["val_score"], "heavy": loaded()}}

    result = sweep(trial, {{"dataset": ["digits"], "hidden": [[8]], "epochs": [1],
                            "lr": [0.01, 0.1]}}, backend={backend!r}, n_jobs=2,
                   blas_threads=1, progress=False)
    rows = [r.to_dict() for r in result]
    print(json.dumps({{"status": [r["status"] for r in rows],
                      "heavy": [r["metrics"].get("heavy") for r in rows],
                      "parent": loaded()}}))
""")


@pytest.mark.parametrize("backend", ["processes", "forked", "dask"])
def test_workers_that_train_import_no_heavy_library(backend):
    if backend == "dask":
        pytest.importorskip("distributed")
    # The data cache is filled by another process first: a cold cache makes
    # this parent import scikit-learn, and forked workers would inherit it.
    _python(
        'from mlpar.trial import prepare_data\nprepare_data([{"dataset": "digits"}])\nprint("{}")'
    )
    out = _python(WORKER.format(backend=backend))
    assert out["status"] == ["ok", "ok"]
    assert out["heavy"] == [[], []]
    assert out["parent"] == []


def test_import_mlpar_loads_no_numpy():
    # `mlpar run` starts its fork server before NumPy loads in its own process.
    out = _python('import mlpar\nprint(json.dumps({"numpy": "numpy" in sys.modules}))')
    assert out == {"numpy": False}


def test_the_fork_servers_preload_imports_no_yaml_nor_heavy_library():
    out = _python(
        "import mlpar.backends._execute, mlpar.trial\n"
        'print(json.dumps({"heavy": loaded(), "yaml": "yaml" in sys.modules}))'
    )
    assert out == {"heavy": [], "yaml": False}


EARLY_SERVER = textwrap.dedent("""
    import contextlib, io
    import mlpar.backends as backends
    from mlpar.backends import _forkserver
    from mlpar.cli import main

    seen = []
    real = backends.prestart

    def prestart(*args, **kwargs):
        seen.append("numpy" in sys.modules)
        return real(*args, **kwargs)

    backends.prestart = prestart
    booted = []
    real_boot = _forkserver.boot

    def boot():
        real_boot()
        booted.append(_forkserver._SERVERS._ahead.process.pid)

    _forkserver.boot = boot
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main({argv!r})
    pids = [s.process.pid for s in _forkserver._SERVERS._servers.values()]
    print(json.dumps({{"rc": rc, "numpy_at_first_prestart": seen[0], "servers": len(pids),
                      "booted_ahead_is_the_server": booted == pids}}))
""")


@pytest.mark.parametrize("blas", [", blas_threads: 1", ""], ids=["blas_threads", "default_blas"])
def test_run_starts_its_fork_server_before_numpy_and_only_one(tmp_path, blas):
    from mlpar.backends._process import ProcessBackend

    if ProcessBackend._launcher != "forkserver":
        pytest.skip("fork servers only")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "name: tiny\ndata: {dataset: iris}\nmodel: {hidden: [4]}\n"
        "train: {epochs: 1}\nsweep:\n  params: {lr: [0.01, 0.1]}\n"
        f"execution: {{backend: processes, n_jobs: 2{blas}}}\n"
        f"output: {{folder: {str(tmp_path / 'runs')!r}}}\n"
    )
    out = _python(EARLY_SERVER.format(argv=["run", str(cfg), "--no-progress"]))
    # The server booted before the file was read, given the file's settings
    # (the default BLAS threads too: cores // n_jobs), is the one the sweep used.
    assert out == {
        "rc": 0,
        "numpy_at_first_prestart": False,
        "servers": 1,
        "booted_ahead_is_the_server": True,
    }


def test_environment_info_names_the_blas_in_a_fresh_interpreter():
    # threadpoolctl sees only loaded libraries: the record must load NumPy's first.
    out = _python(
        "from mlpar.environment import environment_info\n"
        'print(json.dumps({"blas": len(environment_info()["blas"])}))'
    )
    assert out["blas"] >= 1
