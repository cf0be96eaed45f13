"""fit_mlp and FittedMLP: NumPy only, the estimators' results bit for bit, scikit-learn's
metrics and validation split reproduced exactly."""

import pickle
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.metrics import r2_score as sk_r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.extmath import _approximate_mode

from mlpar.nn import ACTIVATIONS, SOLVERS, FittedMLP, MLPClassifier, MLPRegressor, fit_mlp
from mlpar.nn._metrics import accuracy, output_score, r2_score
from mlpar.nn._split import approximate_mode, validation_split

# -- what a worker imports -------------------------------------------------------

HEAVY = ("sklearn", "scipy", "pandas", "matplotlib")

WORKER = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    import mlpar.nn
    from mlpar.nn import fit_mlp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    labels = rng.integers(0, 3, 120)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = fit_mlp(X, labels, task="classification", hidden_layer_sizes=(8,), max_iter=3,
                      early_stopping=True, validation_fraction=0.2, activation="logistic",
                      random_state=0)
        binary = fit_mlp(X, labels == 1, task="classification", hidden_layer_sizes=(8,),
                         max_iter=3, early_stopping=True, random_state=0)
    reg = fit_mlp(X, X[:, :2].sum(axis=1), task="regression", hidden_layer_sizes=(8,),
                  max_iter=3, early_stopping=True, random_state=0, instrument=True,
                  warn_max_iter=False)
    scores = [clf.score(X, labels), binary.score(X, labels == 1), reg.score(X, X[:, 0])]
    assert all(np.isfinite(scores)), scores
    assert clf.predict_proba(X).shape == (120, 3)
    # max_iter ran out: warned, with mlpar's own category (no scikit-learn here).
    assert [type(w.message).__module__ for w in caught] == ["mlpar.nn._train"] * 2
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
    print("HEAVY", heavy)
""")


def test_fit_and_score_import_numpy_only():
    code = WORKER.replace("{heavy}", repr(set(HEAVY)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout


def test_estimators_load_lazily_and_stay_sklearn_estimators():
    import mlpar.nn as nn

    assert "MLPClassifier" in dir(nn) and "fit_mlp" in nn.__all__
    assert nn.MLPClassifier is MLPClassifier
    with pytest.raises(AttributeError, match="has no attribute 'MLPClasifier'"):
        nn.MLPClasifier  # noqa: B018


# -- fit_mlp is the estimators' fit, bit for bit ------------------------------------


def _data(task, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((143, 5))
    y = {
        "multiclass": np.array(["ant", "bee", "cat", "dog"])[rng.integers(0, 4, 143)],
        "binary": np.where(rng.random(143) < 0.35, 3, -1),
        "regression": rng.standard_normal((143, 2)) + X[:, :2],
    }[task]
    return X, y, rng.standard_normal((31, 5))


def _assert_same_model(fitted, est, X_test):
    for a, b in zip(fitted.coefs + fitted.intercepts, est.coefs_ + est.intercepts_):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert fitted.loss_curve == est.loss_curve_
    assert fitted.validation_scores == est.validation_scores_
    for name in (
        "n_iter",
        "t",
        "loss",
        "best_loss",
        "best_validation_score",
        "stop_reason",
        "n_outputs",
        "n_layers",
        "out_activation",
    ):
        a, b = getattr(fitted, name), getattr(est, name + "_")
        assert a == b or (a != a and b != b), name
    np.testing.assert_array_equal(fitted.predict(X_test), est.predict(X_test))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_fit_mlp_trains_the_estimators_model(task, solver, early_stopping, activation):
    X, y, X_test = _data(task)
    params = dict(
        hidden_layer_sizes=(7, 5),
        activation=activation,
        solver=solver,
        early_stopping=early_stopping,
        validation_fraction=0.2,
        batch_size=32,
        learning_rate_init=0.01,
        max_iter=12,
        n_iter_no_change=3,
        random_state=4,
    )
    kind = "regression" if task == "regression" else "classification"
    fitted = fit_mlp(X, y, task=kind, **params)
    est = (MLPRegressor if kind == "regression" else MLPClassifier)(**params).fit(X, y)
    _assert_same_model(fitted, est, X_test)
    assert fitted.score(X, y) == est.score(X, y)
    if kind == "classification":
        np.testing.assert_array_equal(fitted.classes, est.classes_)
        np.testing.assert_array_equal(fitted.predict_proba(X_test), est.predict_proba(X_test))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_mlp_matches_in_float64_with_defaults_and_instrumented():
    X, y, X_test = _data("multiclass", seed=1)
    fitted = fit_mlp(
        X, y, task="classification", dtype="float64", max_iter=5, random_state=2, instrument=True
    )
    est = MLPClassifier(dtype="float64", max_iter=5, random_state=2, instrument=True).fit(X, y)
    _assert_same_model(fitted, est, X_test)
    assert fitted.fit_stats.keys() == est.fit_stats_.keys()
    assert fitted.fit_stats["n_steps"] == est.fit_stats_["n_steps"]


def test_fitted_mlp_predicts_scores_and_pickles():
    X, y, X_test = _data("multiclass")
    fitted = fit_mlp(
        X,
        y,
        task="classification",
        hidden_layer_sizes=(16,),
        max_iter=30,
        learning_rate_init=0.01,
        random_state=0,
        warn_max_iter=False,
    )
    assert isinstance(fitted, FittedMLP)
    assert list(fitted.classes) == ["ant", "bee", "cat", "dog"]
    assert set(fitted.predict(X_test)) <= set(fitted.classes)
    proba = fitted.predict_proba(X_test)
    assert proba.dtype == np.float32 and proba.shape == (31, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert fitted.n_params == 5 * 16 + 16 * 4 + 16 + 4 and fitted.n_layers == 3
    assert fitted.score(X, y) == accuracy_score(y, fitted.predict(X))
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X_test), proba)
    assert "coefs" not in repr(fitted)  # the repr stays one readable line

    single = fit_mlp(
        X,
        np.full(143, "only"),
        task="classification",
        hidden_layer_sizes=(4,),
        max_iter=2,
        random_state=0,
        warn_max_iter=False,
    )
    assert list(single.predict(X_test[:3])) == ["only"] * 3

    reg = fit_mlp(
        X,
        y == "ant",
        task="regression",
        hidden_layer_sizes=(4,),
        max_iter=2,
        random_state=0,
        warn_max_iter=False,
    )
    with pytest.raises(AttributeError, match="only available for task='classification'"):
        reg.predict_proba(X)
    assert reg.predict(X_test).shape == (31,)


def test_fit_mlp_warns_with_sklearns_category_where_sklearn_is_loaded():
    X, y, _ = _data("binary")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        fit_mlp(X, y, task="classification", hidden_layer_sizes=(4,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_mlp(
            X, y, task="classification", hidden_layer_sizes=(4,), max_iter=2, warn_max_iter=False
        )


def test_fit_mlp_diverges_quietly_and_scores_nan():
    X, y, _ = _data("regression")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = fit_mlp(
            X,
            y * 1e4,
            task="regression",
            solver="sgd",
            learning_rate_init=10.0,
            hidden_layer_sizes=(32,),
            max_iter=50,
            random_state=0,
        )
        assert np.isnan(reg.score(X, y))
    assert reg.stop_reason == "diverged"


X6 = np.arange(12.0).reshape(6, 2)
Y6 = np.array([0, 1, 0, 1, 0, 1])

BAD_CALLS = [
    (
        dict(task="clustering"),
        ValueError,
        "task must be one of 'classification', 'regression', got 'clustering'",
    ),
    (
        dict(hidden_layer_sizes=(8, 0)),
        ValueError,
        "hidden_layer_sizes must be positive integers, got (8, 0)",
    ),
    (
        dict(activation="softplus"),
        ValueError,
        "activation must be one of 'identity', 'logistic', 'relu', 'tanh', got 'softplus'",
    ),
    (dict(solver="lbfgs"), ValueError, "solver must be one of 'adam', 'sgd', got 'lbfgs'"),
    (dict(dtype="float16"), ValueError, "dtype must be one of 'float32', 'float64', got 'float16'"),
    (dict(alpha=-1.0), ValueError, "alpha must be a float >= 0, got -1.0"),
    (dict(batch_size=0), ValueError, "batch_size must be 'auto' or an int >= 1, got 0"),
    (dict(max_iter=2.5), ValueError, "max_iter must be an int >= 1, got 2.5"),
    (
        dict(validation_fraction=1.0),
        ValueError,
        "validation_fraction must be a float in (0, 1), got 1.0",
    ),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be an int >= 1 or np.inf"),
    (dict(max_time=0), ValueError, "max_time must be None or a float > 0 (seconds), got 0"),
    (
        dict(random_state=np.random.RandomState(0)),
        ValueError,
        "random_state must be None, an int >= 0 or a numpy.random.Generator",
    ),
    (dict(shuffle="yes"), ValueError, "shuffle must be True or False, got 'yes'"),
    (
        dict(X=np.arange(6.0)),
        ValueError,
        "X must be a 2-D array of shape (n_samples, n_features), got shape (6,)",
    ),
    (dict(X=np.full((6, 2), "a")), TypeError, "X must be numeric, got dtype <U1"),
    (dict(X=np.where(X6 > 10, np.nan, X6)), ValueError, "X contains NaN or infinity"),
    (dict(X=np.ones((6, 0))), ValueError, "X has shape (6, 0); it needs at least one sample"),
    (dict(y=Y6[:5]), ValueError, "X and y have different numbers of samples: 6 and 5"),
    (dict(y=Y6 + 0.5), ValueError, "got floats that are not whole numbers"),
    (dict(y=np.eye(2)[Y6]), ValueError, "task='classification' takes 1-D class labels"),
    (
        dict(task="regression", y=np.array(list("abcdef"))),
        TypeError,
        "regression targets must be numeric, got dtype <U1",
    ),
    (
        dict(task="regression", y=np.where(Y6 > 0, np.inf, 0.0)),
        ValueError,
        "y contains NaN or infinity",
    ),
    (
        dict(early_stopping=True, validation_fraction=0.1),
        ValueError,
        "The test_size = 1 should be greater or equal to the number of classes = 2",
    ),
    (
        dict(task="regression", early_stopping=True, validation_fraction=0.1),
        ValueError,
        "the validation set has 1 sample(s), too few for early stopping",
    ),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_CALLS)
def test_bad_calls(kwargs, error, message):
    call = {"X": X6, "y": Y6, "task": "classification", **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        fit_mlp(**call)


def test_predict_checks_its_input():
    fitted = fit_mlp(
        X6, Y6, task="classification", hidden_layer_sizes=(3,), max_iter=1, warn_max_iter=False
    )
    with pytest.raises(
        ValueError, match=re.escape("X has 3 features, but the model was fitted on 2")
    ):
        fitted.predict(np.ones((2, 3)))


# -- the metrics are scikit-learn's, to the bit ---------------------------------------


def test_r2_score_is_sklearns():
    rng = np.random.default_rng(0)
    n_checked = 0
    for dtype in (np.float32, np.float64):
        for n_outputs in (1, 3):
            for case in range(40):
                n = int(rng.integers(2, 80))
                y_true = rng.standard_normal((n, n_outputs)) * 10.0 ** rng.uniform(-3, 3)
                y_true = y_true.astype(dtype)
                y_pred = (y_true + rng.standard_normal((n, n_outputs))).astype(dtype)
                if case % 4 == 0:
                    y_true[:, 0] = 1.5  # a constant output: scored 1.0 or 0.0
                if case % 8 == 0:
                    y_pred[:, 0] = 1.5
                pairs = [(y_true, y_pred), (y_true.astype(np.float64), y_pred)]
                if n_outputs == 1:
                    pairs += [(y_true[:, 0], y_pred[:, 0]), (y_true[:, 0].tolist(), y_pred[:, 0])]
                for a, b in pairs:
                    assert r2_score(a, b) == sk_r2_score(a, b)
                    n_checked += 1
    assert n_checked > 300
    with pytest.warns(UserWarning, match="not well-defined with less than two samples"):
        assert np.isnan(r2_score([1.0], [1.0]))
    with pytest.raises(ValueError, match="different shapes"):
        r2_score(np.ones((4, 2)), np.ones((4, 3)))


def test_accuracy_is_sklearns():
    rng = np.random.default_rng(1)
    for labels in (np.arange(3), np.array(["a", "bb", "c"]), np.array([-1.0, 2.0])):
        for n in (1, 7, 100):
            y_true, y_pred = rng.choice(labels, n), rng.choice(labels, n)
            assert accuracy(y_true, y_pred) == accuracy_score(y_true, y_pred)
            assert type(accuracy(y_true, y_pred)) is float


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "single"])
def test_output_score_decodes_as_label_binarizer_does(kind):
    """Early stopping's score of network outputs is accuracy_score of the labels
    LabelBinarizer decodes from them (what the estimators computed before)."""
    rng = np.random.default_rng(2)
    n = 57
    y = {
        "multiclass": rng.integers(0, 4, n),
        "binary": rng.integers(0, 2, n),
        "multilabel": (rng.random((n, 3)) < 0.5).astype(int),
        "single": np.zeros(n, int),
    }[kind]
    lb = LabelBinarizer().fit(y)
    Y = lb.transform(y).astype(np.float32)
    P = rng.random(Y.shape).astype(np.float32)
    P[:5] = Y[:5]  # some right answers for sure
    if kind == "multiclass":
        P /= P.sum(axis=1, keepdims=True)
    out = "softmax" if kind == "multiclass" else "logistic"
    expected = accuracy_score(lb.inverse_transform(Y), lb.inverse_transform(P))
    got = output_score(P, Y, out_activation=out, n_classes=len(lb.classes_))
    assert got == expected and type(got) is float
    P[0, 0] = np.nan
    assert np.isnan(output_score(P, Y, out_activation=out, n_classes=len(lb.classes_)))


# -- the validation split is train_test_split's, index for index ------------------------


@pytest.mark.parametrize("n_samples", [4, 11, 50, 333])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.85])
@pytest.mark.parametrize("balance", [None, "even", "skewed", "four_classes"])
def test_validation_split_is_train_test_splits(n_samples, fraction, balance):
    rng = np.random.default_rng(n_samples)
    labels = {
        None: None,
        "even": np.arange(n_samples) % 2,
        "skewed": (rng.random(n_samples) < 0.2).astype(np.float32),
        "four_classes": rng.integers(0, 4, n_samples),
    }[balance]
    for seed in (0, 7, 2**32 - 1):
        try:
            expected = train_test_split(
                np.arange(n_samples), test_size=fraction, random_state=seed, stratify=labels
            )
        except ValueError as error:  # too few samples of a class, or empty sets
            with pytest.raises(ValueError, match=re.escape(str(error))):
                validation_split(n_samples, fraction, seed, labels)
            continue
        train, val = validation_split(n_samples, fraction, seed, labels)
        np.testing.assert_array_equal(train, expected[0])
        np.testing.assert_array_equal(val, expected[1])


def test_stratified_split_on_the_old_2d_targets():
    """The estimators used to stratify on the (n, 1) float target column, which
    scikit-learn encodes as strings; the 1-D column gives the same split."""
    rng = np.random.default_rng(3)
    for n, share in [(40, 0.5), (97, 0.1), (200, 0.3)]:
        Y = (rng.random((n, 1)) < share).astype(np.float32)
        for seed in (1, 99):
            expected = train_test_split(np.arange(n), test_size=0.2, random_state=seed, stratify=Y)
            got = validation_split(n, 0.2, seed, Y[:, 0])
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b)


def test_approximate_mode_is_sklearns():
    rng = np.random.default_rng(4)
    for _ in range(200):
        counts = rng.integers(1, 30, rng.integers(1, 6))
        if rng.random() < 0.3:
            counts[:] = counts[0]  # ties, broken at random
        n_draws = int(rng.integers(1, counts.sum() + 1))
        seed = int(rng.integers(1000))
        np.testing.assert_array_equal(
            approximate_mode(counts, n_draws, np.random.RandomState(seed)),
            _approximate_mode(counts, n_draws, np.random.RandomState(seed)),
        )
