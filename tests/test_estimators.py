"""MLPClassifier / MLPRegressor: scikit-learn's contract, parity with its MLP, limits, timing."""

import math
import pickle
import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlpar.nn import ACTIVATIONS, SOLVERS, STOP_REASONS, MLPClassifier, MLPRegressor

# -- scikit-learn's own estimator checks ---------------------------------------

# max_iter=100 as scikit-learn uses for its own MLPs in these checks; the
# default (100,) hidden units are needed for check_classifiers_train's
# accuracy bar on its small toy problem.
CHECKED = [MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    # No check is expected to fail (so no expected_failed_checks). scikit-learn
    # itself skips three, with its reasons: two array-API checks (they need
    # SCIPY_ARRAY_API=1) and one that needs a decision_function.
    check(estimator)


# -- data ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=200, n_features=6, noise=1.0, random_state=0)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


QUIET = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# -- parity with scikit-learn's MLP ---------------------------------------------


@QUIET
def test_digits_accuracy_within_one_point_of_sklearn(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    common = dict(
        hidden_layer_sizes=(64,),
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=64,
        max_iter=30,
        tol=0.0,
        n_iter_no_change=1000,
    )
    seeds = range(8)  # the mean over seeds: one seed's accuracy varies by ~0.5 point
    ours = [
        MLPClassifier(random_state=s, **common).fit(X_train, y_train).score(X_test, y_test)
        for s in seeds
    ]
    theirs = [
        SkMLPClassifier(random_state=s, **common).fit(X_train, y_train).score(X_test, y_test)
        for s in seeds
    ]
    assert np.mean(ours) > 0.95
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01


def _targets(kind, rng, n):
    return {
        "multiclass": rng.integers(0, 3, n),
        "binary": rng.integers(0, 2, n),
        "multilabel": (rng.random((n, 3)) < 0.4).astype(int),
        "regression": rng.standard_normal((n, 2)),
    }[kind]


@QUIET
@pytest.mark.parametrize(
    "kind,params",
    [
        ("multiclass", dict(solver="adam", alpha=1e-2)),
        (
            "binary",
            dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, learning_rate_init=0.05),
        ),
        ("multilabel", dict(solver="adam", activation="tanh")),
        (
            "regression",
            dict(
                solver="sgd",
                momentum=0.5,
                nesterovs_momentum=False,
                activation="logistic",
                learning_rate_init=0.05,
            ),
        ),
    ],
)
def test_same_start_same_trajectory_as_sklearn(kind, params):
    """From the same weights, without shuffling, in float64, both libraries take
    the same steps: same losses and weights to rounding after several epochs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 5))
    y = _targets(kind, rng, 150)
    ours_cls, theirs_cls = (
        (MLPRegressor, SkMLPRegressor) if kind == "regression" else (MLPClassifier, SkMLPClassifier)
    )
    common = dict(
        hidden_layer_sizes=(7, 4),
        batch_size=32,
        shuffle=False,
        warm_start=True,
        max_iter=1,
        tol=0.0,
        n_iter_no_change=1000,
        random_state=0,
        **params,
    )
    ours = ours_cls(dtype="float64", **common).fit(X, y)
    theirs = theirs_cls(**common).fit(X, y)
    theirs.coefs_ = [w.copy() for w in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    ours.set_params(max_iter=4).fit(X, y)
    theirs.set_params(max_iter=4).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_[-4:], theirs.loss_curve_[-4:], rtol=1e-9)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_iter_ == theirs.n_iter_ == 4


@pytest.mark.parametrize("early_stopping", [False, True])
def test_convergence_stops_after_the_same_epoch_as_sklearn(iris, early_stopping):
    X, y = iris
    # tol so large that no epoch counts as an improvement after the first.
    common = dict(
        hidden_layer_sizes=(8,),
        tol=1e3,
        n_iter_no_change=3,
        max_iter=50,
        random_state=0,
        early_stopping=early_stopping,
    )
    ours = MLPClassifier(**common).fit(X, y)
    theirs = SkMLPClassifier(**common).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert ours.stop_reason_ == ("early_stopping" if early_stopping else "converged")
    assert len(ours.loss_curve_) == ours.n_iter_


def test_convergence_warning_when_max_iter_runs_out(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        clf = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    assert clf.stop_reason_ == "max_iter"
    assert clf.n_iter_ == 2


# -- reproducibility and dtypes ---------------------------------------------------


@QUIET
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_same_random_state_gives_bit_identical_weights(iris, dtype, early_stopping):
    X, y = iris

    def make(seed):
        return MLPClassifier(
            (16,), max_iter=15, random_state=seed, dtype=dtype, early_stopping=early_stopping
        ).fit(X, y)

    a, b, c = make(3), make(3), make(4)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(wa, wb)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@QUIET
def test_random_state_none_and_generators(iris):
    X, y = iris

    def fit(random_state):
        return MLPClassifier((8,), max_iter=3, random_state=random_state).fit(X, y).coefs_[0]

    assert not np.array_equal(fit(None), fit(None))  # fresh entropy each time
    assert np.array_equal(fit(np.random.default_rng(5)), fit(np.random.default_rng(5)))
    gen = np.random.default_rng(5)
    assert not np.array_equal(fit(gen), fit(gen))  # a shared Generator advances


@QUIET
def test_float32_end_to_end(iris, regression):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=3, random_state=0).fit(X.astype(np.float64), y)
    assert all(w.dtype == np.float32 for w in clf.coefs_ + clf.intercepts_)
    assert clf._optimizer.m.dtype == clf._optimizer.v.dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float32
    assert clf.predict_log_proba(X).dtype == np.float32
    Xr, yr = regression
    reg = MLPRegressor((8,), solver="sgd", max_iter=3, random_state=0).fit(Xr, yr)
    assert reg._optimizer.velocity.dtype == np.float32
    assert reg.predict(Xr).dtype == np.float32
    reg64 = MLPRegressor((8,), max_iter=3, random_state=0, dtype="float64").fit(Xr, yr)
    assert reg64.coefs_[0].dtype == reg64.predict(Xr).dtype == np.float64


# -- labels and targets -------------------------------------------------------------


@QUIET
def test_label_types(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier((16,), max_iter=100, random_state=0, learning_rate_init=1e-2)
    clf.fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.out_activation_ == "softmax"
    assert clf.predict(X).dtype == names.dtype
    assert clf.score(X, names) > 0.9

    binary = np.where(y == 0, "yes", "no")
    clf = MLPClassifier((16,), max_iter=50, random_state=0).fit(X, binary)
    proba = clf.predict_proba(X)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(clf.predict(X)) <= {"yes", "no"}

    multilabel = np.column_stack([y == 0, y == 1, y != 1]).astype(int)
    clf = MLPClassifier((16,), max_iter=100, random_state=0, learning_rate_init=1e-2)
    clf.fit(X, multilabel)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(X).shape == (len(X), 3)
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert clf.score(X, multilabel) > 0.8


@pytest.mark.parametrize(
    "y",
    [
        np.array([2, 0, 1, 2, 2, 0]),
        np.array(["b", "a", "c", "a", "b", "b"], dtype=object),
        np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0]),
        np.array(["no", "yes", "yes", "no", "no", "no"]),
        np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]]),
        np.array([7, 7, 7, 7, 7, 7]),
    ],
)
def test_targets_match_label_binarizer(y):
    """The network's targets are LabelBinarizer's, however they are built."""
    from sklearn.preprocessing import LabelBinarizer

    X = np.arange(12.0).reshape(6, 2)
    clf = MLPClassifier()
    _, Y = clf._validate_input(X, y, incremental=False, reset=True, dtype=np.dtype("float32"))
    expected = LabelBinarizer().fit(y).transform(y)
    assert Y.dtype == np.float32 and Y.flags.c_contiguous
    np.testing.assert_array_equal(Y, expected)
    np.testing.assert_array_equal(clf.classes_, LabelBinarizer().fit(y).classes_)
    # Later calls (partial_fit, warm start) look labels up in classes_.
    _, Y2 = clf._validate_input(X, y, incremental=True, reset=False, dtype=np.dtype("float32"))
    np.testing.assert_array_equal(Y2, expected)


@QUIET
def test_regression_single_and_multi_output(regression):
    X, y = regression
    reg = MLPRegressor((32,), max_iter=200, random_state=0, learning_rate_init=1e-2).fit(X, y)
    assert reg.out_activation_ == "identity"
    assert reg.predict(X).shape == (len(X),)
    assert reg.score(X, y) > 0.9
    Y = np.column_stack([y, -y])
    reg = MLPRegressor((32,), max_iter=200, random_state=0, learning_rate_init=1e-2).fit(X, Y)
    assert reg.predict(X).shape == (len(X), 2) and reg.n_outputs_ == 2
    assert reg.score(X, Y) > 0.9


@QUIET
def test_no_hidden_layer_is_a_linear_model(iris):
    X, y = iris
    clf = MLPClassifier((), max_iter=200, random_state=0, learning_rate_init=1e-2).fit(X, y)
    assert clf.n_layers_ == 2 and len(clf.coefs_) == 1
    assert clf.score(X, y) > 0.9


# -- incremental training -------------------------------------------------------------


def test_partial_fit_accumulates(iris):
    X, y = iris
    clf = MLPClassifier((16,), random_state=0, learning_rate_init=1e-2)
    clf.partial_fit(X[:75], y[:75], classes=[0, 1, 2])
    for _ in range(50):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1
    assert clf.t_ == 75 + 50 * len(X)
    assert len(clf.loss_curve_) == 51
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]
    assert clf._optimizer.t == 1 + 50  # Adam's state is kept: one minibatch per call
    assert clf.score(X, y) > 0.9


@QUIET
def test_warm_start_continues_from_the_fitted_weights(iris):
    X, y = iris
    clf = MLPClassifier((16,), max_iter=5, random_state=0, warm_start=True).fit(X, y)
    first = clf.coefs_[0].copy()
    restored = pickle.loads(pickle.dumps(clf))  # coefs_ arrive as copies, not views
    for est in (clf, restored):
        est.fit(X, y)
        assert len(est.loss_curve_) == 10
        assert not np.array_equal(est.coefs_[0], first)
    np.testing.assert_array_equal(clf.coefs_[0], restored.coefs_[0])
    cold = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    assert len(cold.fit(X, y).loss_curve_) == 5


@QUIET
def test_assigned_coefs_are_used_for_prediction_and_training(iris):
    X, y = iris
    clf = MLPClassifier((4,), max_iter=2, random_state=0, warm_start=True).fit(X, y)
    clf.coefs_ = [np.zeros_like(w) for w in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)
    clf.fit(X, y)  # warm start from the assigned (zero) weights
    assert np.abs(clf.coefs_[0]).max() < 0.05


# -- stopping: early stopping, time limit, divergence ----------------------------------


def test_early_stopping_keeps_the_best_validation_weights(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    clf = MLPClassifier(
        (32,), early_stopping=True, n_iter_no_change=3, max_iter=200, random_state=0
    ).fit(X_train, y_train)
    assert clf.stop_reason_ == "early_stopping"
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    assert clf.score(X_test, y_test) > 0.9


@QUIET
def test_max_time_stops_training_early(digits_split):
    X_train, _, y_train, _ = digits_split
    clf = MLPClassifier(
        (64,),
        max_iter=100_000,
        tol=0.0,
        n_iter_no_change=np.inf,
        batch_size=32,
        max_time=0.3,
        random_state=0,
    ).fit(X_train, y_train)
    assert clf.stop_reason_ == "max_time"
    assert 1 <= clf.n_iter_ < 100_000
    assert len(clf.loss_curve_) == clf.n_iter_
    assert clf.t_ >= 32  # at least one minibatch ran


@pytest.mark.parametrize("solver,learning_rate", [("sgd", 10.0), ("adam", 1e20)])
def test_divergence_is_recorded_not_raised(regression, solver, learning_rate):
    # Adam's steps are normalized (about learning_rate each), so it needs a far
    # larger rate than SGD to overflow.
    X, y = regression
    reg = MLPRegressor(
        (32,), solver=solver, learning_rate_init=learning_rate, max_iter=50, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning, no ConvergenceWarning
        reg.fit(X, y * 1e4)
        assert np.isnan(reg.score(X, y))
    assert reg.stop_reason_ == "diverged"
    assert reg.n_iter_ < 50
    assert not np.isfinite(reg.loss_)


def test_divergence_with_early_stopping_restores_finite_weights(regression):
    X, y = regression
    reg = MLPRegressor(
        (32,),
        solver="sgd",
        learning_rate_init=0.5,
        max_iter=50,
        early_stopping=True,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.fit(X, y * 1e3)
    assert reg.stop_reason_ == "diverged"
    assert all(np.isfinite(w).all() for w in reg.coefs_ + reg.intercepts_)


@QUIET
def test_verbose_progress_and_batch_size_clipping(iris, capsys):
    X, y = iris
    with pytest.warns(UserWarning, match="batch_size=500 is larger than the 135 training samples"):
        clf = MLPClassifier(
            (4,),
            batch_size=500,
            max_iter=2,
            verbose=True,
            early_stopping=True,
            random_state=0,
            instrument=True,
        ).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out
    assert "Validation score: " in out
    assert clf.fit_stats_["batch_size"] == 135 and clf.fit_stats_["n_steps"] == 2
    assert clf.fit_stats_["eval_time"] > 0.0


def test_stop_reasons_are_the_documented_ones():
    assert STOP_REASONS == ("max_iter", "converged", "early_stopping", "max_time", "diverged")


# -- instrumentation ----------------------------------------------------------------------


@QUIET
@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_stats_are_consistent(digits_split, solver):
    X_train, _, y_train, _ = digits_split
    clf = MLPClassifier(
        (32, 16), solver=solver, batch_size=100, max_iter=3, random_state=0, instrument=True
    ).fit(X_train, y_train)
    s = clf.fit_stats_
    n = len(X_train)
    steps_per_epoch = -(-n // 100)
    assert s["n_steps"] == 3 * steps_per_epoch
    assert s["n_samples_seen"] == 3 * n == clf.t_
    assert s["n_epochs"] == 3 and s["batch_size"] == 100
    hist = s.pop("release_durations_us_log2")  # calls by duration, for the GIL model
    assert sum(hist) == s["gemm_calls"] + s["ufunc_big_calls"]
    assert all(isinstance(v, (int, float)) for v in s.values())  # ready for numeric summaries
    times = [
        "fit_time",
        "train_time",
        "step_time",
        "gemm_time",
        "ufunc_big_time",
        "other_time",
        "shuffle_time",
        "eval_time",
        "timer_overhead",
        "wrapper_overhead",
    ]
    # Structure, never speed (issue 12): every time is recorded, finite and
    # non-negative, and the orderings are those of nested intervals of one run
    # (steps inside training inside the fit), true on any machine.
    assert all(math.isfinite(s[k]) and s[k] >= 0.0 for k in times)
    assert s["gemm_time"] + s["ufunc_big_time"] + s["other_time"] == pytest.approx(s["step_time"])
    assert s["step_time"] <= s["train_time"] <= s["fit_time"]
    # A fixed number of BLAS calls per step, and the elementwise work of layers
    # of 100 x 32 elements counted as GIL-releasing.
    assert s["gemm_calls"] % s["n_steps"] == 0 and s["gemm_calls"] > 0
    assert s["ufunc_big_calls"] >= s["n_steps"] * 4


@QUIET
def test_fit_stats_absent_without_instrument_and_same_result(digits_split):
    X_train, _, y_train, _ = digits_split
    plain = MLPClassifier((16,), max_iter=2, random_state=0).fit(X_train, y_train)
    timed = MLPClassifier((16,), max_iter=2, random_state=0, instrument=True).fit(X_train, y_train)
    assert plain.fit_stats_ is None
    assert timed.fit_stats_ is not None
    for a, b in zip(plain.coefs_, timed.coefs_):
        assert np.array_equal(a, b)  # timing changes nothing in the computation


# -- bad input -------------------------------------------------------------------------------

X4 = np.arange(8.0).reshape(4, 2)
Y4 = [0, 1, 0, 1]

BAD_DATA = [
    (np.arange(3.0), [0, 1, 0], ValueError, "Expected 2D array, got 1D array instead"),
    (np.array([[np.nan, 1.0], [1.0, 2.0]]), [0, 1], ValueError, "Input X contains NaN."),
    (np.array([[np.inf, 1.0], [1.0, 2.0]]), [0, 1], ValueError, "Input X contains infinity"),
    (
        np.ones((3, 2)),
        [0, 1],
        ValueError,
        "Found input variables with inconsistent numbers of samples: [3, 2]",
    ),
    (np.empty((0, 2)), [], ValueError, "Found array with 0 sample(s) (shape=(0, 2))"),
    (np.ones((3, 0)), [0, 1, 0], ValueError, "Found array with 0 feature(s) (shape=(3, 0))"),
    (X4, [0.5, 1.5, 2.5, 3.5], ValueError, "Unknown label type: continuous"),
    (X4, None, ValueError, "requires y to be passed, but the target y is None"),
]


@pytest.mark.parametrize("X,y,error,message", BAD_DATA)
def test_bad_data(X, y, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MLPClassifier().fit(X, y)


BAD_PARAMS = [
    (
        dict(alpha=-1.0),
        "The 'alpha' parameter of MLPClassifier must be a float in the range [0.0, inf)",
    ),
    (
        dict(batch_size=0),
        "The 'batch_size' parameter of MLPClassifier must be a str among {'auto'} or an int "
        "in the range [1, inf)",
    ),
    (
        dict(max_time=-1),
        "The 'max_time' parameter of MLPClassifier must be None or a float in the range (0.0, inf)",
    ),
    (
        dict(validation_fraction=1.0),
        "The 'validation_fraction' parameter of MLPClassifier must be a float in the range "
        "(0.0, 1.0)",
    ),
    (
        dict(n_iter_no_change=0),
        "The 'n_iter_no_change' parameter of MLPClassifier must be an int in the range [1, inf)",
    ),
    (
        dict(random_state=np.random.RandomState(0)),
        "The 'random_state' parameter of MLPClassifier must be None, an int in the range "
        "[0, inf) or an instance of",
    ),
    (dict(hidden_layer_sizes=(8, 0)), "hidden_layer_sizes must be positive integers, got (8, 0)"),
    (
        dict(hidden_layer_sizes=(8, 2.5)),
        "hidden_layer_sizes must be positive integers, got (8, 2.5)",
    ),
]


@pytest.mark.parametrize("params,message", BAD_PARAMS)
def test_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MLPClassifier(**params).fit(X4, Y4)


@pytest.mark.parametrize(
    "param,value,valid",
    [
        ("activation", "softplus", ACTIVATIONS),
        ("solver", "lbfgs", SOLVERS),
        ("dtype", "float16", ("float32", "float64")),
    ],
)
def test_unknown_names_list_the_valid_ones(param, value, valid):
    with pytest.raises(
        ValueError, match=f"The '{param}' parameter of MLPRegressor must be a str among"
    ) as info:
        MLPRegressor(**{param: value}).fit(X4, [0.0, 1.0, 2.0, 3.0])
    message = str(info.value)
    assert f"Got {value!r} instead" in message
    assert all(repr(name) in message for name in valid)


def test_usage_errors(iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))
    clf = MLPClassifier((4,), max_iter=1).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(
        ValueError,
        match=re.escape("X has 3 features, but MLPClassifier is expecting 4 features as input"),
    ):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, y + 1)
    warm = MLPClassifier((4,), max_iter=1, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning):
        warm.fit(X, y)
    with pytest.raises(ValueError, match="cannot continue training: the fitted layers have shapes"):
        warm.set_params(hidden_layer_sizes=(5,)).fit(X, y)
    with pytest.raises(ValueError, match="the validation set has 1 sample"):
        MLPRegressor(early_stopping=True, validation_fraction=0.2).fit(X4, [0.0, 1.0, 2.0, 3.0])


# -- inside scikit-learn's tools ----------------------------------------------------------------


@QUIET
def test_grid_search_pipeline_clone_and_cross_validation(iris):
    X, y = iris
    pipe = make_pipeline(
        StandardScaler(), MLPClassifier((8,), max_iter=60, random_state=0, learning_rate_init=1e-2)
    )
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__hidden_layer_sizes": [(4,), (16,)]},
        cv=3,
    )
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.8
    assert isinstance(grid.best_estimator_[-1], MLPClassifier)

    est = MLPRegressor((8,), alpha=0.5, dtype="float64", max_time=10.0, instrument=True)
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "coefs_")

    scores = cross_val_score(
        MLPClassifier((16,), max_iter=100, random_state=0, learning_rate_init=1e-2), X, y, cv=3
    )
    assert scores.shape == (3,) and scores.min() > 0.8
