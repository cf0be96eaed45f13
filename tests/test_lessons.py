"""Tests of mlpar.lessons: each lesson's logic at small sizes, and its result objects.

Speeds are never asserted: the lessons measure them, the tests check what the
measurements are of and that the results are right.
"""

import json
import math
import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mlpar.lessons import (
    LESSONS,
    LessonResult,
    _common,
    _cpu,
    _io,
    _pymlp,
    _race,
    format_summary,
    run_all,
    run_lesson,
)

# ---------------------------------------------------------------------------
# The four lessons, run once for the whole module (quick size, 1 repeat).
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("lessons")
    results = run_all(n_jobs=2, repeats=1, size="quick", out_dir=out_dir)
    return out_dir, {r.name: r for r in results}


def test_run_all_runs_every_lesson_in_order(all_results):
    _, results = all_results
    assert list(results) == list(LESSONS) == ["cpu", "io", "race", "processes"]


@pytest.mark.parametrize("name", list(LESSONS))
def test_result_is_well_formed(all_results, name):
    out_dir, results = all_results
    r = results[name]
    assert isinstance(r, LessonResult)
    assert r.name == name
    assert r.claim == LESSONS[name]
    assert r.headline and r.explanation and r.setup
    assert r.options == {**r.options, "n_jobs": 2, "repeats": 1, "size": "quick", "random_state": 0}
    assert {"cpu_count", "python", "gil_enabled", "free_threaded_build", "usable_cpus"} <= set(
        r.environment
    )
    for row in r.rows:
        assert {"setting", "workers", "speedup"} <= set(row)
        assert row["median_s"] > 0
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert len(row["times_s"]) == 1

    table = r.format_table().splitlines()
    assert len(table) == 2 + len(r.rows)
    for row, line in zip(r.rows, table[2:]):
        assert line.startswith(row["setting"])
    markdown = r.format_markdown_table().splitlines()
    assert len(markdown) == 2 + len(r.rows)
    assert all(line.startswith("| ") and line.endswith(" |") for line in markdown)
    report = r.format_report()
    assert r.headline in report and r.format_table() in report
    flat = " ".join(report.split())  # the claim and explanation are wrapped
    assert r.claim in flat and " ".join(r.explanation.split()) in flat

    # Files: JSON equal to to_dict(), markdown linking the PNG, a real PNG.
    assert json.loads((out_dir / f"{name}.json").read_text()) == json.loads(json.dumps(r.to_dict()))
    assert r.png == str(out_dir / f"{name}.png")
    assert (out_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"({name}.png)" in (out_dir / f"{name}.md").read_text()


def test_run_all_writes_summary(all_results):
    out_dir, results = all_results
    saved = json.loads((out_dir / "lessons.json").read_text())
    assert [lesson["name"] for lesson in saved["lessons"]] == list(LESSONS)
    assert saved["environment"]["gil_enabled"] == _common.gil_enabled()
    summary = (out_dir / "lessons.md").read_text()
    for r in results.values():
        assert r.headline in summary
        assert f"`mlpar demo {r.name} --quick`" in summary
    assert format_summary(list(results.values())) in summary


def test_cpu_lesson_threads_return_serial_results(all_results):
    r = all_results[1]["cpu"]
    assert [row["setting"] for row in r.rows] == ["serial", "threads 2"]
    assert all(row["same_as_serial"] for row in r.rows)
    assert r.rows[0]["speedup"] == 1.0
    assert f"{r.rows[-1]['speedup']:.2f}x" in r.headline


def test_io_lesson_loads_identical_data(all_results):
    r = all_results[1]["io"]
    assert [row["workers"] for row in r.rows] == [1, 2, 4, 8, 16, 1]
    assert all(row["identical"] for row in r.rows)
    assert "identical in every mode" in r.headline
    assert "SIMULATED" in r.setup


def test_race_lesson_counts_lost_updates(all_results):
    r = all_results[1]["race"]
    rows = {row["setting"]: row for row in r.rows}
    for variant in ("tally", "hogwild"):
        assert rows[f"{variant}: serial"]["lost"] == 0
        assert rows[f"{variant}: 2 threads, no lock"]["lost_min"] > 0
        assert rows[f"{variant}: 2 threads + lock"]["lost_max"] == 0
    assert rows["tally: 2 threads + lock"]["best_correct"]
    assert "with a lock: 0 lost" in r.headline


def test_processes_lesson_returns_serial_results(all_results):
    r = all_results[1]["processes"]
    timed = [row for row in r.rows if row["speedup"] is not None]
    assert [row["setting"] for row in timed] == [
        "serial (this process)",
        "processes 2, warm pool",
        "processes 2, cold (start, run, shut down)",
    ]
    assert all(row["same_as_serial"] for row in timed)
    send, receive = r.rows[-2:]
    assert send["payload"] > receive["payload"] > 0
    bare, imports = r.rows[-4:-2]
    assert (
        bare["setting"].strip().startswith("one interpreter")
        and "import mlpar" in imports["setting"]
    )
    assert r.options["start_method"] == "spawn"


# ---------------------------------------------------------------------------
# Lesson 1 and 4's workload: the pure-Python MLP.
# ---------------------------------------------------------------------------


def _numpy_loss_and_grads(params, X, y):
    """Reference: the same network, written with NumPy arrays."""
    W1, b1 = np.array(params["W1"]), np.array(params["b1"])
    W2, b2 = np.array(params["W2"]), np.array(params["b2"])
    X, y = np.array(X), np.array(y)
    z1 = X @ W1.T + b1
    h = np.maximum(z1, 0.0)
    logits = h @ W2.T + b2
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    n = len(X)
    loss = -np.log(p[np.arange(n), y]).mean()
    d_logits = p.copy()
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    d_h = (d_logits @ W2) * (z1 > 0)
    return loss, {"W1": d_h.T @ X, "b1": d_h.sum(0), "W2": d_logits.T @ h, "b2": d_logits.sum(0)}


@pytest.fixture
def small_batch():
    rng = np.random.default_rng(3)
    params = _pymlp.init_params(7, 5, 4, random_state=1)
    params["b1"] = rng.normal(0, 0.1, 5).tolist()  # non-zero biases exercise their gradients
    params["b2"] = rng.normal(0, 0.1, 4).tolist()
    X = rng.normal(size=(6, 7)).tolist()
    y = rng.integers(0, 4, 6).tolist()
    return params, X, y


def test_forward_backward_matches_numpy(small_batch):
    params, X, y = small_batch
    loss, grads = _pymlp.forward_backward(params, X, y)
    ref_loss, ref_grads = _numpy_loss_and_grads(params, X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for key, ref in ref_grads.items():
        np.testing.assert_allclose(np.array(grads[key]), ref, rtol=1e-10, atol=1e-13, err_msg=key)


def test_gradients_match_finite_differences(small_batch):
    params, X, y = small_batch
    _, grads = _pymlp.forward_backward(params, X, y)
    eps = 1e-6
    for key, index in [("W1", (2, 3)), ("W1", (4, 0)), ("b1", (1,)), ("W2", (3, 2)), ("b2", (0,))]:
        container = params[key] if len(index) == 1 else params[key][index[0]]
        i = index[-1]
        original = container[i]
        container[i] = original + eps
        up = _pymlp.forward_backward(params, X, y)[0]
        container[i] = original - eps
        down = _pymlp.forward_backward(params, X, y)[0]
        container[i] = original
        analytic = grads[key][index[0]][index[1]] if len(index) == 2 else grads[key][i]
        assert analytic == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8), (key, index)


def test_training_reduces_loss():
    (task,) = _pymlp.make_tasks(
        1, n_samples=128, n_hidden=16, n_steps=80, batch_size=32, learning_rate=0.2, random_state=0
    )
    result = _pymlp.run_task(task)
    assert len(result.losses) == 80
    before = _pymlp.init_params(64, 16, 10, random_state=task.seed)
    loss_before = _pymlp.forward_backward(before, task.X, task.y)[0]
    loss_after = _pymlp.forward_backward(result.params, task.X, task.y)[0]
    assert loss_before == pytest.approx(math.log(10), rel=0.3)
    assert loss_after < 0.7 * loss_before
    assert np.mean(result.losses[-8:]) < np.mean(result.losses[:8])


def test_tasks_are_reproducible_and_distinct():
    kwargs = dict(n_samples=32, n_hidden=4, n_steps=3, batch_size=8, learning_rate=0.1)
    first = _pymlp.make_tasks(3, random_state=5, **kwargs)
    assert first == _pymlp.make_tasks(3, random_state=5, **kwargs)
    assert len({t.seed for t in first}) == 3 and first[0].X != first[1].X
    assert _pymlp.run_task(first[0]) == _pymlp.run_task(first[0])


# ---------------------------------------------------------------------------
# Lesson 2: shards.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [None, 4])
def test_shards_load_back_to_the_source(tmp_path, n_threads):
    shards, source = _io.write_shards(tmp_path, n_shards=7)
    assert len(shards) == 7 and len(list(tmp_path.glob("*.npy"))) == 14
    X, y = _io.load_dataset(shards, latency_s=0.001, n_threads=n_threads)
    digits = load_digits()
    np.testing.assert_array_equal(X, digits.data)
    np.testing.assert_array_equal(y, digits.target)
    assert _io.checksum(X, y) == source


def test_checksum_sees_a_changed_value():
    X, y = np.zeros((3, 2)), np.arange(3)
    changed = X.copy()
    changed[1, 1] = 1e-300
    assert _io.checksum(X, y) != _io.checksum(changed, y)
    assert _io.checksum(X, y) != _io.checksum(X.astype(np.float32), y)


# ---------------------------------------------------------------------------
# Lesson 3: races.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions():
    return _race.make_predictions(random_state=0)


def test_tally_without_lock_loses_updates(predictions):
    y_val, preds = predictions
    for _ in range(3):
        out = _race.tally_race(2, 500, lock=False, y_val=y_val, predictions=preds)
        assert out["expected"] == 1000
        assert out["observed"] < out["expected"]


def test_tally_with_lock_loses_nothing(predictions):
    y_val, preds = predictions
    for n_threads in (2, 4):
        out = _race.tally_race(n_threads, 300, lock=True, y_val=y_val, predictions=preds)
        assert out["observed"] == out["expected"] == n_threads * 300
        assert out["best"] == out["true_best"]


def test_hogwild_without_lock_loses_updates_with_lock_none():
    X, Y, batches = _race.make_hogwild_data(2, 150, random_state=0)
    for _ in range(3):
        unlocked = _race.hogwild_race(2, lock=False, X=X, Y=Y, batches=batches)
        assert unlocked["observed"] < unlocked["expected"] == 300
    locked = _race.hogwild_race(2, lock=True, X=X, Y=Y, batches=batches)
    serial = _race.hogwild_race(2, lock=False, X=X, Y=Y, batches=batches, serial=True)
    assert locked["observed"] == serial["observed"] == 300
    # Training works: the loss falls well below that of the zero weights, log(10).
    assert serial["final_loss"] < 0.5 * math.log(10)
    assert locked["final_loss"] < 0.5 * math.log(10)


def test_softmax_gradient_matches_finite_differences():
    X, Y, _ = _race.make_hogwild_data(1, 1, random_state=0)
    X, Y = X[:20], Y[:20]
    W = np.random.default_rng(0).normal(0, 0.1, (X.shape[1], Y.shape[1]))
    g = _race.softmax_gradient(W, X, Y)
    eps = 1e-6
    for i, j in [(0, 0), (10, 3), (64, 9)]:
        up, down = W.copy(), W.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (_race.softmax_loss(up, X, Y) - _race.softmax_loss(down, X, Y)) / (2 * eps)
        assert g[i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_counter_race_counts_every_increment_it_keeps():
    out = _race.counter_race(2, 1000)
    # Whether a bare += loses anything depends on the interpreter (see the
    # lesson's explanation); only the bookkeeping is asserted.
    assert out["expected"] == 2000
    assert 0 < out["observed"] <= 2000


# ---------------------------------------------------------------------------
# Shared machinery.
# ---------------------------------------------------------------------------


def test_time_interleaved_runs_round_robin_after_warmup():
    calls = []
    settings = [(name, lambda name=name: calls.append(name) or name) for name in "abc"]
    timings = _common.time_interleaved(settings, repeats=2)
    assert "".join(calls) == "abc" * 3
    assert all(len(timings[n].wall) == 2 and timings[n].outputs == [n, n] for n in "abc")
    calls.clear()
    _common.time_interleaved(settings, repeats=1, warmup=False)
    assert "".join(calls) == "abc"


@pytest.mark.parametrize("n_jobs, expected", [(2, [2]), (3, [2, 3]), (16, [2, 16])])
def test_worker_counts(n_jobs, expected):
    assert _common.worker_counts(n_jobs) == expected


@pytest.mark.parametrize(
    "seconds, text",
    [(2.5, "2.50 s"), (0.0123, "12.3 ms"), (0.000456, "456 us"), (0.25, "250 ms")],
)
def test_format_seconds(seconds, text):
    assert _common.format_seconds(seconds) == text


def test_missing_values_render_as_dash():
    row = {"setting": "x", "median_s": 0.5, "min_s": 0.25, "max_s": 1.5}
    assert _common.format_cell("speedup", row) == "-"
    assert _common.format_cell("spread", row) == "0.25-1.50 s"
    assert _common.format_cell("lost_range", row) == "-"
    assert _common.format_cell("payload", {"payload": 2048}) == "2.00 kB"


def test_noise_note_flags_wide_spreads_only():
    steady = {
        "setting": "a",
        "speedup": 1.0,
        "median_s": 1.0,
        "min_s": 0.9,
        "max_s": 1.1,
        "times_s": [0.9, 1.0, 1.1],
    }
    noisy = {**steady, "setting": "b", "max_s": 2.0, "times_s": [0.9, 1.0, 2.0]}
    cost = {**noisy, "setting": "c", "speedup": None}  # not compared with serial: ignored
    assert _common.noise_note([steady, cost]) is None
    note = _common.noise_note([steady, noisy])
    assert "'b' varied by 110% of their median" in note


def test_cpu_explanation_follows_the_build():
    rows = [
        {"workers": 1, "speedup": 1.0, "cores_busy": 1.0, "same_as_serial": True},
        {"workers": 2, "speedup": 1.9, "cores_busy": 1.95, "same_as_serial": True},
    ]
    free = _cpu._explain(rows, gil=False)
    assert "free-threaded" in free and "1.90x" in free and "faster than serial" in free
    with_gil = _cpu._explain(rows, gil=True)
    assert "free-threaded" not in with_gil and "only one thread executes bytecode" in with_gil


def test_missing_matplotlib_skips_the_plot_with_a_note(tmp_path, monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = run_lesson("cpu", n_jobs=2, repeats=1, size="quick", out_dir=tmp_path)
    assert r.png is None and not list(tmp_path.glob("*.png"))
    assert any("mlpar[plot]" in note for note in r.notes)
    assert "mlpar[plot]" in (tmp_path / "cpu.md").read_text()


def test_without_out_dir_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    r = run_lesson("cpu", n_jobs=2, repeats=1, size="quick", verbose=1)
    assert r.png is None and not list(tmp_path.iterdir())
    assert r.format_table() in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"name": "gil"}, ValueError, "unknown lesson 'gil'; available: cpu, io, race, processes"),
        ({"size": "huge"}, ValueError, "size must be one of 'quick', 'normal', got 'huge'"),
        ({"repeats": 0}, ValueError, "repeats must be at least 1, got 0"),
        ({"repeats": 2.0}, TypeError, "repeats must be an integer, got 2.0 (float)"),
        ({"n_jobs": 1}, ValueError, "n_jobs must be None, -1 or an integer >= 2"),
        ({"n_jobs": -2}, ValueError, "got -2"),
        ({"n_jobs": "2"}, TypeError, "n_jobs must be an integer or None, got '2' (str)"),
    ],
)
def test_invalid_options(kwargs, error, message):
    kwargs = {"name": "cpu", "size": "quick", "repeats": 1, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        run_lesson(kwargs.pop("name"), **kwargs)
