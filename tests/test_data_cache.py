"""The shared data cache: load_splits, prepare_splits and cache_dir."""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mlpar.data import _cache as data
from mlpar.data import cache_dir, load_dataset, load_splits, make_splits, prepare_splits

PARTS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """An empty cache folder of its own for every test, and an empty memo."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MLPAR_CACHE", str(folder))
    data._memo.clear()
    yield folder
    data._memo.clear()


def entries(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def only_entry(folder):
    (entry,) = entries(folder)
    return entry


def assert_same_splits(got, want):
    assert got.task == want.task
    for part in PARTS:
        a, b = getattr(got, part), getattr(want, part)
        assert a.dtype == b.dtype and a.shape == b.shape, part
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), part


def run_python(code, **kwargs):
    # A fresh interpreter that inherits MLPAR_CACHE through os.environ.
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        **kwargs,
    )


CASES = [
    ("digits", {}, {}),
    ("classification", {"n_samples": 300, "n_features": 8, "n_classes": 3}, {}),
    ("regression", {"n_samples": 200, "n_features": 5, "noise": 3.0}, {}),
    ("moons", {"n_samples": 150}, {"val_fraction": 0.1, "test_fraction": 0.3, "random_state": 7}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, params, split", CASES, ids=[c[0] for c in CASES])
def test_cached_splits_are_bit_identical_to_make_splits(name, params, split, dtype):
    rs = split.get("random_state", 0)
    want = make_splits(
        load_dataset(name, **params, random_state=rs),
        dtype=dtype,
        val_fraction=split.get("val_fraction", 0.2),
        test_fraction=split.get("test_fraction", 0.2),
        random_state=rs,
    )
    built = load_splits(name, **params, **split, dtype=dtype)  # a miss: builds the entry
    assert_same_splits(built, want)
    data._memo.clear()
    hit = load_splits(name, **params, **split, dtype=dtype)  # read back from disk
    assert_same_splits(hit, want)
    assert_same_splits(prepare_splits(name, **params, **split, dtype=dtype), want)


def test_hit_returns_read_only_memory_maps_shared_in_the_process(cache):
    first = prepare_splits("iris")
    again = load_splits("iris")
    assert again is first  # the per-process memo: threads share one set of arrays
    for part in PARTS:
        a = getattr(again, part)
        assert isinstance(a, np.memmap) and not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 0
        assert Path(a.filename).parent == only_entry(cache)


def test_entry_layout_and_meta(cache):
    prepare_splits("wine", random_state=2)
    entry = only_entry(cache)
    assert re.fullmatch(r"wine-[0-9a-f]{64}", entry.name)
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [f"{p}.npy" for p in PARTS] + ["meta.json"]
    )
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["task"] == "classification"
    assert meta["request"]["dataset"] == "wine" and meta["request"]["random_state"] == 2
    for part in PARTS:
        path = entry / f"{part}.npy"
        record = meta["files"][path.name]
        assert record["bytes"] == path.stat().st_size
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary left


def test_import_and_cache_hit_load_neither_sklearn_nor_scipy(cache):
    prepare_splits("digits")
    prepare_splits("regression", n_samples=100, n_features=4)
    code = (
        "import sys\n"
        "import mlpar.data as d\n"
        "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))\n"
        "assert not heavy(), ('import', heavy()[:5])\n"
        "d.load_splits('digits')\n"
        "d.load_splits('regression', n_samples=100, n_features=4)\n"
        "assert not heavy(), ('hit', heavy()[:5])\n"
        "print('ok')\n"
    )
    done = run_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def flip_bytes(path):
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        f.seek(-8, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in tail))


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)


DAMAGE = [
    # (what is done to the entry, the function that meets it, the warning names)
    (
        lambda e: flip_bytes(e / "X_train.npy"),
        prepare_splits,
        "X_train.npy does not match its sha256 in meta.json",
    ),
    (lambda e: truncate(e / "y_test.npy"), load_splits, "y_test.npy has "),
    (lambda e: truncate(e / "X_val.npy"), prepare_splits, "X_val.npy has "),
    (lambda e: (e / "meta.json").write_text("{not json"), load_splits, "meta.json is unreadable"),
    (lambda e: (e / "meta.json").unlink(), load_splits, "meta.json is missing"),
    (lambda e: (e / "y_val.npy").unlink(), load_splits, "y_val.npy is missing"),
    (
        lambda e: (e / "X_test.npy").write_bytes(b"\0" * (e / "X_test.npy").stat().st_size),
        load_splits,
        "X_test.npy does not load",
    ),
]


@pytest.mark.parametrize("damage, meet, problem", DAMAGE)
def test_damaged_entry_is_detected_rebuilt_and_reported_in_one_line(cache, damage, meet, problem):
    want = make_splits(load_dataset("digits"))
    prepare_splits("digits")
    entry = only_entry(cache)
    data._memo.clear()  # drop the memory maps of the good files
    damage(entry)
    with pytest.warns(RuntimeWarning) as caught:
        got = meet("digits")
    (w,) = caught
    message = str(w.message)
    assert "\n" not in message
    assert message.startswith(f"data cache entry {entry} was damaged (")
    assert problem in message and message.endswith("; rebuilt it")
    assert_same_splits(got, want)
    assert entries(cache) == [entry]
    data._memo.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry passes the full check quietly
        assert_same_splits(prepare_splits("digits"), want)


def test_cheap_check_does_not_hash_but_prepare_does(cache):
    # Workers check sizes, not hashes (a sweep's parent has hashed the files):
    # a flipped byte of the same size is the parent's to find.
    prepare_splits("iris")
    data._memo.clear()
    flip_bytes(only_entry(cache) / "X_test.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_splits("iris")
    data._memo.clear()
    with pytest.warns(RuntimeWarning, match="X_test.npy does not match its sha256"):
        prepare_splits("iris")


@pytest.mark.parametrize("under_file", [False, True], ids=["file", "path-under-file"])
def test_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path, monkeypatch, under_file):
    # As root chmod stops nothing: a regular file cannot hold an entry either.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    configured = blocker / "cache" if under_file else blocker
    monkeypatch.setenv("MLPAR_CACHE", str(configured))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fallback = tmp_path / "tmp" / f"mlpar_data-{os.getuid()}"
    with pytest.warns(RuntimeWarning) as caught:
        got = load_splits("iris")
    (w,) = caught
    assert str(w.message).startswith(f"MLPAR_CACHE={configured} is not writable (")
    assert str(w.message).endswith(f"; using {fallback} instead")
    assert_same_splits(got, make_splits(load_dataset("iris")))
    assert Path(got.X_train.filename).parent.parent == fallback
    assert (fallback.stat().st_mode & 0o777) == 0o700
    data._memo.clear()
    with pytest.warns(RuntimeWarning, match=re.escape("MLPAR_CACHE=")):
        again = load_splits("iris")  # a hit in the fallback, still reported
    assert Path(again.X_train.filename) == Path(got.X_train.filename)


def test_no_writable_folder_at_all_is_one_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MLPAR_CACHE", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))
    with pytest.raises(OSError, match=re.escape(f"MLPAR_CACHE={blocker} is not writable")) as e:
        load_splits("iris")
    assert "set MLPAR_CACHE to a writable folder" in str(e.value)
    assert "\n" not in str(e.value)


def test_two_processes_filling_the_cache_at_once_leave_one_valid_entry(cache, tmp_path):
    go = tmp_path / "go"
    code = (
        "import hashlib, os, sys, time\n"
        "import sklearn.datasets, sklearn.model_selection\n"  # both ready before the start
        "import mlpar.data as d\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "s = d.prepare_splits('classification', n_samples=20000, n_features=40)\n"
        "print(hashlib.sha256(s.X_train.tobytes() + s.y_test.tobytes()).hexdigest())\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "RuntimeWarning" not in err, err
    want = make_splits(load_dataset("classification", n_samples=20000, n_features=40))
    digest = hashlib.sha256(want.X_train.tobytes() + want.y_test.tobytes()).hexdigest()
    assert [out.strip() for out, _ in outs] == [digest, digest]
    assert len(entries(cache)) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_splits(prepare_splits("classification", n_samples=20000, n_features=40), want)


def test_threads_asking_at_once_build_once_and_share_the_arrays(cache):
    # A threads sweep: every trial asks for the same data at the same moment.
    start = threading.Barrier(8)

    def ask(_):
        start.wait()
        return load_splits("breast_cancer", random_state=3)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(8)))
    assert all(g is got[0] for g in got)
    assert len(entries(cache)) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert_same_splits(got[0], make_splits(load_dataset("breast_cancer"), random_state=3))


def test_losing_the_race_keeps_the_other_entry(cache, monkeypatch):
    # Another process renames its entry into place while ours is being
    # written: ours is dropped and theirs (marked here) is kept and used.
    real_fill = data._fill

    def fill_then_lose(folder, splits, key, request):
        real_fill(folder, splits, key, request)
        theirs = folder.parent / key
        theirs.mkdir()
        real_fill(theirs, splits, key, request)
        (theirs / "theirs").touch()

    monkeypatch.setattr(data, "_fill", fill_then_lose)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = prepare_splits("wine")
    entry = only_entry(cache)
    assert (entry / "theirs").exists()
    assert Path(got.X_train.filename).parent == entry
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert_same_splits(got, make_splits(load_dataset("wine")))


def test_cache_dir_follows_MLPAR_CACHE_else_home(cache, tmp_path, monkeypatch):
    assert cache_dir() == cache
    prepare_splits("iris")
    assert entries(cache) and not os.path.exists(tmp_path / "home")
    monkeypatch.setenv("MLPAR_CACHE", "~/elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "elsewhere"
    monkeypatch.delenv("MLPAR_CACHE")
    assert cache_dir() == tmp_path / "home" / "mlpar_data"


def test_each_parameter_has_its_own_entry(cache, monkeypatch):
    calls = [
        {},
        {"random_state": 1},
        {"dtype": "float64"},
        {"val_fraction": 0.25},
        {"test_fraction": 0.1},
        {"n_samples": 120},
        {"noise": 0.1},
    ]
    for kwargs in calls:
        prepare_splits("moons", **kwargs)
    assert len(entries(cache)) == len(calls)
    # The generators may change between scikit-learn releases.
    monkeypatch.setattr(data, "_sklearn_version", lambda: "0.0")
    prepare_splits("moons")
    assert len(entries(cache)) == len(calls) + 1


def test_a_generator_error_on_a_miss_leaves_nothing_behind(cache):
    with pytest.raises(ValueError, match=re.escape("needs n_features >= 5, got 2")):
        load_splits("classification", n_features=2, n_classes=10)
    assert not list(cache.iterdir())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"name": "mnist"},
            ValueError,
            (
                "unknown dataset 'mnist'; available: breast_cancer, "
                "classification, diabetes, digits, iris, moons, regression, wine"
            ),
        ),
        (
            {"name": "digits", "n_samples": 10},
            ValueError,
            "dataset 'digits' does not take n_samples; it accepts no size parameters",
        ),
        (
            {"name": "moons", "n_classes": 3},
            ValueError,
            "dataset 'moons' does not take n_classes; it accepts n_samples, noise",
        ),
        (
            {"name": "iris", "val_fraction": 0.0},
            ValueError,
            "val_fraction must be in (0, 1), got 0.0",
        ),
        (
            {"name": "iris", "test_fraction": 1.5},
            ValueError,
            "test_fraction must be in (0, 1), got 1.5",
        ),
        (
            {"name": "iris", "val_fraction": 0.5, "test_fraction": 0.5},
            ValueError,
            "val_fraction + test_fraction must be below 1, got 1.0",
        ),
        (
            {"name": "iris", "random_state": None},
            TypeError,
            "random_state must be an integer for cached splits, got None (NoneType)",
        ),
        (
            {"name": "iris", "random_state": 1.5},
            TypeError,
            "random_state must be an integer for cached splits, got 1.5 (float)",
        ),
    ],
)
@pytest.mark.parametrize("function", [load_splits, prepare_splits])
def test_bad_input_fails_before_the_cache_is_touched(cache, function, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        function(**kwargs)
    assert not cache.exists()
