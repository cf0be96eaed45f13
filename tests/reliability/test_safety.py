"""Safe defaults, enforced: no unsafe loaders, atomic run-folder writes, bad trials as rows."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import mlpar
from mlpar import MLPClassifier, sweep, train_mlp
from mlpar.runs import atomic_write

PACKAGE = Path(mlpar.__file__).parent

UNSAFE = [
    (r"yaml\.(load|unsafe_load|full_load)\(", "yaml.safe_load only"),
    (r"yaml\.(Loader|UnsafeLoader|FullLoader)\b", "no YAML loader that builds objects"),
    (r"pickle\.load\(|joblib\.load\(", "nothing unpickles a file"),
    (r"allow_pickle\s*=\s*True", "np.load must not unpickle"),
    (r"\beval\(|\bexec\(", "configs are never evaluated"),
    (
        r"np\.random\.(seed|rand|randn|randint|shuffle|permutation|choice)\(",
        "no global NumPy RNG: np.random.default_rng(seed)",
    ),
]


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_the_whole_package():
    names = {p.relative_to(PACKAGE).as_posix() for p in _sources()}
    assert {"config/__init__.py", "sweep.py", "nn/_engine.py", "backends/_process.py"} <= names


@pytest.mark.parametrize("pattern, rule", UNSAFE, ids=[r for _, r in UNSAFE])
def test_no_unsafe_loading_in_the_package(pattern, rule):
    hits = []
    for path in _sources():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(pattern, code):
                hits.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert not hits, f"{rule}:\n" + "\n".join(hits)


def test_pickle_only_crosses_worker_pipes():
    # The processes backend sends trials to its own workers through pipes, and
    # the processes lesson measures what that costs: the only places pickle
    # may appear, and only on bytes mlpar made in memory, never on files.
    users = [
        p.relative_to(PACKAGE).as_posix()
        for p in _sources()
        if re.search(r"^\s*(import pickle|from pickle)", p.read_text(), re.M)
    ]
    allowed = {"backends/_process.py", "backends/_worker.py", "lessons/_processes.py"}
    assert set(users) <= allowed, users


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "summary.csv"
    target.write_text("old complete content\n")

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new content that never lands\n")
    assert target.read_text() == "old complete content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"], "no temp file left"


def test_a_diverging_real_training_is_a_diverged_row():
    space = {
        "lr": [1e-3, 1e6],
        "dataset": ["diabetes"],
        "hidden": [[16]],
        "epochs": [5],
        "optimizer": ["sgd"],
    }
    rows = {r.params["lr"]: r for r in sweep(train_mlp, space, progress=False)}
    assert rows[1e-3].status == "ok"
    bad = rows[1e6]
    assert bad.status == "diverged"
    assert bad.metrics["stop_reason"] == "diverged" and bad.metrics["epochs"] < 5
    assert math.isnan(bad.metrics["val_score"])


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"lr": -1.0}, ValueError, "trial parameter lr must be"),
        ({"batch_size": 0}, ValueError, "trial parameter batch_size must be"),
        ({"lrr": 0.1}, ValueError, "unknown trial parameter 'lrr'; did you mean 'lr'?"),
        ({"dataset": "mnist"}, ValueError, "mnist"),
        ({"hidden": "wide"}, TypeError, "trial parameter hidden"),
    ],
)
def test_bad_trial_parameters_fail_clearly_and_become_rows(params, error, message):
    with pytest.raises(error, match=re.escape(message)):
        train_mlp(params, 0)
    # In a sweep the same mistake is a failed row with that message; others go on.
    space = [{"epochs": [1], "dataset": ["iris"]}, {k: [v] for k, v in params.items()}]
    rows = list(sweep(train_mlp, space, progress=False))
    assert sorted(r.status for r in rows) == ["failed", "ok"]
    failed = next(r for r in rows if r.status == "failed")
    assert failed.error_type == error.__name__ and message in failed.error_message


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), [0, 1], "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1], "infinity"),
        (np.ones((3, 2)), [0, 1], "inconsistent numbers of samples"),
        (np.ones(4), [0, 1, 0, 1], "Expected 2D array"),
        (np.ones((0, 2)), [], "0 sample"),
    ],
)
def test_bad_arrays_get_scikit_learn_errors(X, y, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MLPClassifier(max_iter=1).fit(X, y)
