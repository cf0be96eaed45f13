"""Stress tests of the threads backend: no trial lost, duplicated or corrupted.

Many short trials run on many threads, and every result is checked against a
serial run of the same sweep: each trial exactly once in the result and in the
journal, every journal line valid JSON and equal to its row, every metric
equal to the serial one.

The tests are valid on every build. Their main purpose is the free-threaded
one (CPython 3.13t run with ``PYTHON_GIL=0``, see
``experiments/freethreaded/ci.sh``), where the trials' Python code really runs
in parallel and shared state that the GIL used to protect by accident (the
journal writer, the result queues, module-level caches) is exercised for real.
"""

import json
import math
import os
import subprocess
import sys
import sysconfig
import textwrap
import threading

import numpy as np
import pytest

from mlpar.data import load_dataset
from mlpar.results import SweepResult
from mlpar.sweep import sweep
from mlpar.trial import train_mlp

FREE_THREADED_BUILD = sysconfig.get_config_var("Py_GIL_DISABLED") == 1

# The stress sweeps run more threads than this machine may have cores, on
# purpose (contention is the point); the sweep warns about oversubscription.
pytestmark = pytest.mark.filterwarnings("ignore:n_jobs x blas_threads:RuntimeWarning")


class TinyTrial:
    """A trial of a few microseconds of NumPy work on a shared, cached dataset.

    With a ``barrier``, each call first waits until ``barrier.parties`` calls
    are inside ``fn`` at once: the threads backend then runs a full wave of
    trials simultaneously, the worst case for shared state.
    """

    def __init__(self, barrier=None):
        self.barrier = barrier

    def __call__(self, params, seed):
        if self.barrier is not None:
            self.barrier.wait()
        rng = np.random.default_rng(seed)
        # Cached by mlpar.data (functools.lru_cache) and shared read-only by
        # every thread: concurrent first calls race on the cache.
        X = load_dataset("iris").X
        rows = rng.choice(X.shape[0], size=16, replace=False)
        w = rng.standard_normal((X.shape[1], 3))
        z = np.tanh(np.dot(X[rows], w) * params["scale"])
        return {
            # Echoes: a trial handed another trial's params or seed shows here.
            "i": params["i"],
            "seed": seed,
            "sum": float(z.sum()),
            "sq": float(np.dot(z.ravel(), z.ravel())),
            "argmax": z.argmax(axis=1).tolist(),
        }


def mlp_trial(params, seed):
    """train_mlp, with instrumentation chosen by the ``instrument`` parameter."""
    params = dict(params)
    instrument = params.pop("instrument")
    return train_mlp(params, seed, instrument=instrument)


# Metrics of train_mlp that do not depend on timing: equal across runs with
# the same seed and BLAS thread count, bit for bit.
MLP_DETERMINISTIC = (
    "val_score",
    "test_score",
    "loss",
    "best_loss",
    "epochs",
    "stop_reason",
    "diverged",
    "n_params",
)
# Counts from instrumented fits, equally deterministic.
MLP_STATS_COUNTS = (
    "stats_gemm_calls",
    "stats_ufunc_big_calls",
    "stats_ufunc_small_calls",
    "stats_n_steps",
)

TINY_SPACE = {"i": list(range(100)), "scale": [0.5, 2.0]}
TINY_SEEDS = 2  # 100 x 2 x 2 = 400 trials
N_THREADS = 8  # 400 is a multiple: every barrier wave is full


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _roundtrip(row):
    """A row as its journal line's JSON decodes (tuples become lists...)."""
    return json.loads(json.dumps({"type": "trial", **row.to_dict()}))


def _journal_records(path):
    """Return (header, trial records) of a journal, checking every line is JSON."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the journal's last line is not terminated"
    lines = data[:-1].split(b"\n")
    # The header is read with Python's json: it may hold error_score=NaN,
    # which Python writes as the non-standard token NaN.
    header = json.loads(lines[0])
    assert header["type"] == "header"
    # Trial lines must be strict JSON: these sweeps' metrics are all finite,
    # so a NaN or Infinity token there would be a corrupted value.
    records = [json.loads(line, parse_constant=_reject_constant) for line in lines[1:]]
    assert all(isinstance(r, dict) and r.get("type") == "trial" for r in records)
    return header, records


def _check_against_serial(result, reference, journal, *, n_jobs, metrics=None):
    """Assert that a threads sweep's result and journal match the serial reference."""
    keys = [row.key for row in result]
    assert len(result) == len(reference)
    assert len(set(keys)) == len(keys), "a trial appears twice in the result"
    # The result is in the space's order, whatever the completion order.
    assert keys == [row.key for row in reference]

    for row, ref in zip(result, reference):
        assert row.status == "ok", (row.key, row.error_type, row.error_message, row.traceback)
        assert (row.index, row.params, row.repeat, row.seed) == (
            ref.index,
            ref.params,
            ref.repeat,
            ref.seed,
        )
        assert (row.backend, row.n_jobs, row.blas_threads, row.attempts) == (
            "threads",
            n_jobs,
            1,
            1,
        )
        assert row.pid == os.getpid()
        names = metrics if metrics is not None else ref.metrics.keys()
        got = {name: row.metrics[name] for name in names}
        want = {name: ref.metrics[name] for name in names}
        assert got == want, f"trial {row.key} {row.params}: metrics differ from the serial run"

    header, records = _journal_records(journal)
    assert header["n_trials"] == len(reference)
    assert header["backend"] == "threads"
    journal_keys = [r["key"] for r in records]
    assert len(set(journal_keys)) == len(journal_keys), "a trial appears twice in the journal"
    assert set(journal_keys) == set(keys), "the journal and the result hold different trials"
    by_key = {row.key: row for row in result}
    for record in records:
        assert record == _roundtrip(by_key[record["key"]]), (
            f"journal line of trial {record['key']} differs from its row"
        )

    # And mlpar's own reader sees the same sweep.
    reread = SweepResult.from_journal(journal)
    assert [_roundtrip(r) for r in reread] == [_roundtrip(r) for r in result]


def test_tiny_trials_on_threads_match_serial(tmp_path):
    reference = sweep(TinyTrial(), TINY_SPACE, backend="serial", seeds=TINY_SEEDS, blas_threads=1)
    assert len(reference) == 400
    assert all(row.status == "ok" for row in reference)

    journal = tmp_path / "tiny.jsonl"
    # A generous timeout: a barrier that never fills (a backend running fewer
    # trials at once than it has threads) fails the trials instead of hanging.
    barrier = threading.Barrier(N_THREADS, timeout=60.0)
    result = sweep(
        TinyTrial(barrier),
        TINY_SPACE,
        backend="threads",
        n_jobs=N_THREADS,
        seeds=TINY_SEEDS,
        blas_threads=1,
        journal=journal,
    )

    _check_against_serial(result, reference, journal, n_jobs=N_THREADS)
    # Every wave met at the barrier, so every worker thread ran trials.
    assert len({row.thread_name for row in result}) == N_THREADS
    assert len({row.thread_id for row in result}) == N_THREADS


def test_resume_on_threads_completes_each_trial_once(tmp_path):
    reference = sweep(TinyTrial(), TINY_SPACE, backend="serial", seeds=TINY_SEEDS, blas_threads=1)
    journal = tmp_path / "resume.jsonl"
    first = sweep(
        TinyTrial(),
        TINY_SPACE,
        backend="threads",
        n_jobs=6,
        seeds=TINY_SEEDS,
        blas_threads=1,
        journal=journal,
    )
    assert len(first) == 400

    # Keep the header and 150 trials, then half a line: a sweep killed mid-write.
    lines = journal.read_bytes().split(b"\n")
    kept = lines[:151]
    journal.write_bytes(b"\n".join(kept) + b"\n" + lines[151][: len(lines[151]) // 2])
    kept_keys = {json.loads(line)["key"] for line in kept[1:]}

    with pytest.warns(RuntimeWarning, match="torn last line"):
        resumed = sweep(
            TinyTrial(),
            TINY_SPACE,
            backend="threads",
            n_jobs=6,
            seeds=TINY_SEEDS,
            blas_threads=1,
            journal=journal,
            resume=True,
        )

    _check_against_serial(resumed, reference, journal, n_jobs=6)
    # The kept rows were not run again: they are the first sweep's rows.
    first_by_key = {row.key: row for row in first}
    for row in resumed:
        if row.key in kept_keys:
            assert _roundtrip(row) == _roundtrip(first_by_key[row.key])
    assert len(kept_keys) == 150


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer:Warning")
def test_mlp_trials_on_threads_match_serial(tmp_path):
    space = {
        "dataset": ["iris", "digits"],
        "hidden": [[8], [16, 8]],
        "instrument": [False, True],
        "epochs": [6],
        "batch_size": [32],
        "lr": [0.01],
    }
    reference = sweep(mlp_trial, space, backend="serial", seeds=3, blas_threads=1)
    assert len(reference) == 24
    assert all(row.status == "ok" for row in reference)
    assert not any(row.metrics["diverged"] for row in reference)

    journal = tmp_path / "mlp.jsonl"
    result = sweep(
        mlp_trial, space, backend="threads", n_jobs=4, seeds=3, blas_threads=1, journal=journal
    )

    _check_against_serial(result, reference, journal, n_jobs=4, metrics=MLP_DETERMINISTIC)
    for row, ref in zip(result, reference):
        if row.params["instrument"]:
            got = {name: row.metrics[name] for name in MLP_STATS_COUNTS}
            want = {name: ref.metrics[name] for name in MLP_STATS_COUNTS}
            assert got == want, f"trial {row.key}: kernel call counts differ from serial"
            assert all(
                math.isfinite(row.metrics[n]) and row.metrics[n] >= 0
                for n in ("stats_gemm_time", "stats_other_time")
            )
        else:
            assert not any(name.startswith("stats_") for name in row.metrics)


@pytest.mark.skipif(
    not FREE_THREADED_BUILD,
    reason="only a free-threaded CPython build (3.13t) can run without the GIL",
)
def test_stack_imports_without_enabling_the_gil():
    # Without PYTHON_GIL, a free-threaded interpreter turns the GIL back on
    # (with a RuntimeWarning) when it loads an extension module that does not
    # declare free-threading support. Under PYTHON_GIL=0 it would stay off,
    # which is only safe if no such module is loaded: check that none is.
    code = textwrap.dedent("""
        import sys, warnings
        # The warning that announces the GIL coming back becomes an error
        # naming the module.
        warnings.filterwarnings("error", message="The global interpreter lock",
                                category=RuntimeWarning)
        import numpy, scipy.special, scipy.stats, sklearn.datasets, sklearn.model_selection
        import threadpoolctl, yaml, joblib
        import mlpar.config, mlpar.sweep, mlpar.trial, mlpar.data, mlpar.results
        import importlib.util
        if importlib.util.find_spec("matplotlib"):  # optional: the plots of reports, lessons
            import matplotlib.figure, matplotlib.backends.backend_agg
        # Modules imported lazily, inside functions, load during a trial.
        warnings.filterwarnings("ignore", message="Stochastic Optimizer")
        mlpar.trial.train_mlp({"dataset": "iris", "epochs": 1}, 0)
        print(sys._is_gil_enabled())
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.skipif(
    not FREE_THREADED_BUILD,
    reason="only a free-threaded CPython build (3.13t) can run without the GIL",
)
def test_gil_state_follows_python_gil():
    # The comparison this build exists for: one binary, only the GIL switched.
    for value, enabled in (("0", "False"), ("1", "True")):
        env = {**os.environ, "PYTHON_GIL": value}
        proc = subprocess.run(
            [sys.executable, "-c", "import sys, numpy; print(sys._is_gil_enabled())"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == enabled, f"PYTHON_GIL={value}"
    # experiments/freethreaded/ci.sh sets PYTHON_GIL=0: the stress tests above
    # are a no-GIL check only if the GIL is really off in this process.
    if os.environ.get("PYTHON_GIL") == "0":
        assert not sys._is_gil_enabled()
