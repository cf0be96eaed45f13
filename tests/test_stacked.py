"""Stacked training (mlpar.nn._stacked): each stacked model equals the same model trained alone.

Tolerance: none. Every comparison below is exact (``np.array_equal``, ``==`` on
loss curves), for every activation, loss and solver and for both GEMM kernels.
That rests on two facts, each checked by its own test so that a platform where
one fails names the cause:

- the stacked step calls, per model, the same NumPy ufuncs on the same values
  as the single engine (per-model scalars broadcast as ``(K, 1)`` columns are
  cast to the dtype as NumPy casts a Python float operand);
- ``np.matmul`` over a stack of C-contiguous (or transposed-contiguous) 2-D
  operands calls, per model, the same BLAS routine (GEMM, GEMV or DOT) with
  the same arguments as ``np.dot`` on that model's operands, so it reduces in
  the same order (``test_batched_matmul_reduces_as_np_dot``). The ``loop``
  kernel is a loop of those very ``np.dot`` calls.

A diverged model is the one exception, in one value: its last loss is
non-finite in both, but may be inf in one and NaN in the other (see
``test_a_diverging_member_is_masked_out_and_the_others_match``).
"""

import functools
import math
import re
import tracemalloc

import numpy as np
import pytest

from mlpar.nn import ACTIVATIONS, SOLVERS, STOP_REASONS, MLPClassifier, MLPRegressor, fit_mlp
from mlpar.nn._kernels import logistic
from mlpar.nn._stacked import StackMember, _check_options, fit_mlp_stack, train_stacked
from mlpar.nn._stacked_loop import Stack, last_level_cache_bytes, model_bytes, split, stack_limit
from mlpar.nn._stacked_step import choose_kernels, expit, gemm_sites

# Members that exercise every per-model difference: seeds, learning rates, L2
# on and off, two Adam beta groups, and the three SGD update rules (plain,
# Nesterov, classical momentum) in one stack.
MEMBERS = [
    dict(random_state=1, learning_rate_init=0.01, alpha=1e-3),
    dict(random_state=2, learning_rate_init=0.003, alpha=0.0, momentum=0.0),
    dict(random_state=3, beta_1=0.8, momentum=0.5, nesterovs_momentum=False),
    dict(random_state=4, beta_2=0.99, alpha=0.1, epsilon=1e-6),
]
TASKS = ("multiclass", "binary", "multilabel", "regression")
# 70 samples in batches of 16: every epoch ends with a shorter minibatch.
COMMON = dict(hidden_layer_sizes=(5, 4), batch_size=16, max_iter=12)


@functools.cache
def _data(task, n=70, n_features=6, seed=0):
    """``(X, y, Y, out_activation)``: raw targets for the estimators, encoded ones for the stack."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    if task == "multiclass":
        y = rng.integers(0, 3, n)
        return X, y, np.eye(3, dtype=np.float32)[y], "softmax"
    if task == "binary":
        y = rng.integers(0, 2, n)
        return X, y, y.reshape(-1, 1).astype(np.float32), "logistic"
    if task == "multilabel":
        y = rng.integers(0, 2, (n, 3))
        return X, y, y.astype(np.float32), "logistic"
    y = X[:, :2] @ np.array([[1.0, -2.0], [0.5, 1.0]]) + 0.1 * rng.standard_normal((n, 2))
    return X, y, y.astype(np.float32), "identity"


def _alone(task, member, **options):
    """The member trained by itself with the estimator."""
    X, y, _, _ = _data(task)
    cls = MLPRegressor if task == "regression" else MLPClassifier
    est = cls(**{**COMMON, **options, **member}, early_stopping=False)
    est._warn_max_iter = False
    return est.fit(X, y)


def _stacked(task, members, **options):
    X, _, Y, out_activation = _data(task)
    return train_stacked(X, Y, members, out_activation=out_activation, **{**COMMON, **options})


def _assert_same(est, r, *, diverged=False):
    """Bit-identical weights and training record (NaN equal to NaN for a diverged model)."""
    for a, b in zip(est.coefs_ + est.intercepts_, r.coefs + r.intercepts):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=diverged)
    assert (r.n_iter, r.stop_reason, r.t) == (est.n_iter_, est.stop_reason_, est.t_)
    if diverged:
        assert r.loss_curve[:-1] == est.loss_curve_[:-1]
        assert not math.isfinite(r.loss_curve[-1]) and not math.isfinite(est.loss_curve_[-1])
    else:
        assert r.loss_curve == est.loss_curve_
        assert r.best_loss == est.best_loss_


@functools.cache
def _alone_cached(task, activation, solver, i):
    return _alone(task, MEMBERS[i], activation=activation, solver=solver)


# -- the core: equal to training alone -----------------------------------------------


@pytest.mark.parametrize("kernel", ["batched", "loop"])
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_stacked_model_equals_the_model_trained_alone(activation, task, solver, kernel):
    results = _stacked(task, MEMBERS, activation=activation, solver=solver, kernel=kernel)
    assert [r.index for r in results] == list(range(len(MEMBERS)))
    for i, r in enumerate(results):
        _assert_same(_alone_cached(task, activation, solver, i), r)


def test_batched_matmul_reduces_as_np_dot():
    """The per-model products of every GEMM, GEMV and DOT kind a step issues."""
    rng = np.random.default_rng(0)
    K = 3
    for m, k, n in [(32, 64, 8), (7, 13, 1), (1, 64, 32), (200, 128, 10), (256, 512, 64)]:
        A = rng.standard_normal((K, m, k)).astype(np.float32)
        B = rng.standard_normal((K, k, n)).astype(np.float32)
        D = rng.standard_normal((K, m, n)).astype(np.float32)
        ones, ones_n = np.ones((1, 1, m), np.float32), np.ones(n, np.float32)
        flat = D.reshape(K, -1)
        cases = [  # (a, b, per model: what np.dot gives alone)
            (A, B, [np.dot(A[j], B[j]) for j in range(K)]),  # forward
            (A.transpose(0, 2, 1), D, [np.dot(A[j].T, D[j]) for j in range(K)]),  # weight grad
            (D, B.transpose(0, 2, 1), [np.dot(D[j], B[j].T) for j in range(K)]),  # backward
            (ones, D, [np.dot(ones[0, 0], D[j]) for j in range(K)]),  # bias gradient: GEMV
            (D, ones_n, [np.dot(D[j], ones_n) for j in range(K)]),  # softmax row sums: GEMV
            (flat[:, None, :], flat[:, :, None], [np.dot(f, f) for f in flat]),  # loss: DOT
        ]
        for a, b, alone in cases:
            out = np.matmul(a, b)
            for j in range(K):
                assert np.array_equal(out[j].reshape(np.shape(alone[j])), alone[j])


def test_stacked_logistic_is_the_engines():
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 30
    out = np.empty_like(x)
    with np.errstate(over="ignore"):
        for call in expit(x, out):
            call()
    assert np.array_equal(out, logistic(x))


# -- masking: divergence, convergence, time ------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_diverging_member_is_masked_out_and_the_others_match(solver):
    # Adam's steps are about learning_rate each: it needs a far larger rate to overflow.
    huge = {"sgd": 1e4, "adam": 1e25}[solver]
    members = [
        dict(random_state=0, learning_rate_init=1e-3),
        dict(random_state=1, learning_rate_init=huge, alpha=0.0),  # diverges
        dict(random_state=2, learning_rate_init=3e-3),
    ]
    options = dict(solver=solver, activation="tanh", max_iter=20)
    results = _stacked("regression", members, **options)
    assert results[1].stop_reason == "diverged"
    assert results[1].n_iter < 20
    assert results[1].n_steps < results[0].n_steps
    for member, r in zip(members, results):
        _assert_same(
            _alone("regression", member, **options), r, diverged=r.stop_reason == "diverged"
        )
    # Each on the single engine (stacks of one): the same record, steps included.
    alone = _stacked("regression", members, max_stack=1, **options)
    assert [(r.n_steps, r.t, r.stop_reason) for r in alone] == [
        (r.n_steps, r.t, r.stop_reason) for r in results
    ]


def test_each_member_converges_on_its_own_rule():
    members = [
        dict(random_state=0, tol=0.0, n_iter_no_change=100),  # runs out max_iter
        dict(random_state=1, learning_rate_init=0.05, tol=1e-2, n_iter_no_change=2),
        dict(random_state=2, learning_rate_init=0.02, tol=2e-2),  # the stack's n_iter
        dict(random_state=3, learning_rate_init=0.05, tol=0.05, n_iter_no_change=1),
    ]
    options = dict(solver="sgd", activation="tanh", max_iter=60, n_iter_no_change=4)
    results = _stacked("multiclass", members, **options)
    assert [r.stop_reason for r in results] == ["max_iter", "converged", "converged", "converged"]
    assert len({r.n_iter for r in results}) == 4  # stopped at four different epochs
    for member, r in zip(members, results):
        _assert_same(_alone("multiclass", member, **options), r)


def test_max_time_stops_every_model_after_the_minibatch_it_runs_out_in():
    results = _stacked("multiclass", MEMBERS, max_time=1e-9)
    assert {(r.stop_reason, r.n_iter, r.n_steps, r.t) for r in results} == {("max_time", 1, 1, 16)}
    for member, r in zip(MEMBERS, results):
        _assert_same(_alone("multiclass", member, max_time=1e-9), r)


# -- what else a fit can vary ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(shuffle=False),
        dict(batch_size="auto"),
        dict(batch_size=70),  # one minibatch per epoch
        dict(batch_size=1, max_iter=2),  # 1-row products: GEMV paths
        dict(hidden_layer_sizes=()),  # no hidden layer
        dict(dtype="float64", hidden_layer_sizes=(256, 128), max_iter=2),  # several chunks
        dict(hidden_layer_sizes=(256, 256), max_iter=2),  # float32, several chunks
        dict(solver="sgd", hidden_layer_sizes=(256, 256), max_iter=2),
    ],
)
def test_options_shared_by_the_stack(options):
    results = _stacked("multiclass", MEMBERS, **options)
    for member, r in zip(MEMBERS, results):
        _assert_same(_alone("multiclass", member, **options), r)


@pytest.mark.parametrize(
    "max_stack,sizes",
    [(1, [1, 1, 1, 1]), (3, [2, 2, 2, 2]), (None, [4, 4, 4, 4]), ("auto", [4, 4, 4, 4])],
)
def test_stacks_split_by_max_stack_give_the_same_models(max_stack, sizes):
    # max_stack=1: every member on the single engine; 3: two stacks of two.
    results = _stacked("multiclass", MEMBERS, max_stack=max_stack)
    assert [r.stack_size for r in results] == sizes
    assert all(bool(r.kernels) == (r.stack_size > 1) for r in results)
    for i, r in enumerate(results):
        _assert_same(_alone_cached("multiclass", "relu", "adam", i), r)


def test_auto_stacks_hold_what_fits_a_fifth_of_the_cache():
    units = [64, 512, 512, 10]
    per_model = model_bytes(units, "adam", 32, np.float32)
    assert per_model > 4 * (64 * 512 + 512 * 512 + 512 * 10) * 4  # params, grad, m, v
    assert stack_limit(None, units, "adam", 32, np.float32) == math.inf
    assert stack_limit(7, units, "adam", 32, np.float32) == 7
    expected = max(1, int(0.2 * last_level_cache_bytes() // per_model))
    assert stack_limit("auto", units, "adam", 32, np.float32) == expected
    assert split(16, 14) == [list(range(8)), list(range(8, 16))]
    assert split(5, 2) == [[0, 1], [2], [3, 4]]
    assert split(3, math.inf) == [[0, 1, 2]]


def test_generators_stack_members_and_mappings_are_interchangeable():
    X, y, Y, out = _data("multiclass")
    a = train_stacked(
        X,
        Y,
        [StackMember(random_state=np.random.default_rng(5)), {"random_state": 6}],
        out_activation=out,
        **COMMON,
    )
    b = train_stacked(
        X, Y, [{"random_state": 5}, StackMember(random_state=6)], out_activation=out, **COMMON
    )
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.params, rb.params)
    assert a[0].member == StackMember(
        random_state=a[0].member.random_state, tol=1e-4, n_iter_no_change=10
    )


def test_fit_mlp_stack_gives_the_models_fit_mlp_gives():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 5))
    for task, y in [
        ("classification", np.array(list("abcd"))[rng.integers(0, 4, 90)]),
        ("classification", rng.integers(0, 2, 90) * 3 + 1),
        ("regression", X[:, 0] - X[:, 1] ** 2),
    ]:
        members = MEMBERS[:3]
        fitted = fit_mlp_stack(X, y, members, task=task, **COMMON)
        for member, f in zip(members, fitted):
            alone = fit_mlp(X, y, task=task, warn_max_iter=False, **COMMON, **member)
            for a, b in zip(alone.coefs + alone.intercepts, f.coefs + f.intercepts):
                assert np.array_equal(a, b)
            assert f.loss_curve == alone.loss_curve
            assert (f.task, f.out_activation, f.stop_reason) == (
                task,
                alone.out_activation,
                alone.stop_reason,
            )
            assert np.array_equal(f.predict(X), alone.predict(X))
            assert f.score(X, y) == alone.score(X, y)


@pytest.mark.parametrize("task", TASKS)
def test_result_predict_and_score_match_the_estimator(task):
    X, y, Y, _ = _data(task)
    r = _stacked(task, MEMBERS[:1])[0]
    est = _alone(task, MEMBERS[0])
    if task == "regression":
        assert np.array_equal(r.predict(X), est.predict(X))
        assert r.score(X, Y) == pytest.approx(est.score(X, y), abs=1e-6)
    else:
        P = r.predict(X)
        proba = est.predict_proba(X)
        assert np.array_equal(P, proba[:, 1:] if task == "binary" else proba)
        assert r.score(X, Y) == est.score(X, y)


def test_a_diverged_result_scores_nan():
    r = _stacked(
        "regression",
        [dict(random_state=0, learning_rate_init=1e4)],
        solver="sgd",
        activation="tanh",
        max_iter=30,
    )[0]
    assert r.stop_reason == "diverged"
    assert math.isnan(r.score(_data("regression")[0], _data("regression")[2]))


# -- structure: kernels, allocation ------------------------------------------------------


def _stack(
    activation="relu",
    out_activation="softmax",
    solver="adam",
    *,
    n=1024,
    hidden=(256,),
    n_out=32,
    batch_size=256,
    kernel="auto",
    members=None,
):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 64)).astype(np.float32)
    Y = (
        np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, n)]
        if out_activation == "softmax"
        else rng.standard_normal((n, n_out)).astype(np.float32)
    )
    shared = dict(
        hidden_layer_sizes=hidden,
        activation=activation,
        solver=solver,
        batch_size=batch_size,
        max_iter=1,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        dtype="float32",
        max_time=None,
    )
    members = members or [
        dict(
            random_state=s,
            learning_rate_init=1e-3 * (s + 1),
            alpha=(0.0, 1e-4)[s % 2],
            momentum=(0.0, 0.9)[s // 2],
        )
        for s in range(4)
    ]
    members = _check_options(members, shared, out_activation, kernel)
    return Stack(
        X,
        Y,
        members,
        hidden=list(hidden),
        activation=activation,
        out_activation=out_activation,
        solver=solver,
        batch_size=batch_size,
        dtype=np.dtype("float32"),
        kernel=kernel,
    )


@pytest.mark.parametrize(
    "activation,out_activation,solver",
    [
        ("relu", "softmax", "adam"),
        ("tanh", "identity", "sgd"),
        ("logistic", "logistic", "adam"),
    ],
)
def test_steady_state_step_allocates_no_arrays(activation, out_activation, solver):
    stack = _stack(activation, out_activation, solver)
    step, gather_x, gather_y, _, _ = stack.batches[0]

    def run():
        gather_x()
        gather_y()
        step()

    with np.errstate(all="ignore"):
        for _ in range(3):
            run()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(10):
                run()
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after - before < 1024
    # Transient: NumPy's own iterator buffer at most, as for the single engine's
    # step; every buffer of this stack is >= 4 x 256 x 32 x 4 bytes = 128 KiB.
    assert peak - before < np.getbufsize() * 8 + 4096 <= 4 * 256 * 32 * 4


def test_kernel_choice_covers_every_gemm_and_can_be_forced():
    stack = _stack(hidden=(8, 8), n_out=10)
    names = {
        "forward0",
        "forward1",
        "forward2",
        "weight_grad0",
        "weight_grad1",
        "weight_grad2",
        "backward1",
        "backward2",
    }
    assert set(stack.kernels) == names
    assert set(stack.kernels.values()) <= {"batched", "loop"}
    sites = gemm_sites(stack.layout, stack.ws[256], 4, stack.grad)
    assert choose_kernels(sites, "loop") == dict.fromkeys(names, "loop")
    assert _stack(hidden=(8, 8), kernel="batched").kernels == dict.fromkeys(names, "batched")


def test_stopped_models_leave_the_active_rows():
    stack = _stack(
        "tanh",
        "identity",
        "sgd",
        hidden=(8,),
        members=[dict(random_state=0), dict(random_state=1, learning_rate_init=1e4)],
    )
    assert stack.rows == 2
    records = stack.train(max_iter=3, shuffle=True, deadline=None)
    assert stack.rows == 0
    assert [r["stop_reason"] for r in records] == ["max_iter", "diverged"]
    assert records[1]["n_steps"] < records[0]["n_steps"]


def test_stop_reasons_are_the_engines():
    results = _stacked("regression", [dict(random_state=0)], max_iter=1)
    assert results[0].stop_reason in STOP_REASONS


# -- bad input -----------------------------------------------------------------------------------

X0, Y0 = np.zeros((8, 2)), np.eye(2)[[0, 1] * 4]
g = np.random.default_rng(0)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (
            lambda: train_stacked(X0, Y0, [], out_activation="softmax"),
            ValueError,
            "members is empty; pass at least one StackMember (or mapping)",
        ),
        (
            lambda: train_stacked(X0, Y0, [{"lr": 0.1}], out_activation="softmax"),
            ValueError,
            "members[0] has unknown field(s) 'lr'; valid: random_state, learning_rate_init",
        ),
        (
            lambda: train_stacked(
                X0, Y0, [{}, {"learning_rate_init": -1}], out_activation="softmax"
            ),
            ValueError,
            "members[1].learning_rate_init must be a float > 0, got -1",
        ),
        (
            lambda: train_stacked(X0, Y0, [{"n_iter_no_change": 0}], out_activation="softmax"),
            ValueError,
            "members[0].n_iter_no_change must be an int >= 1 or np.inf, got 0",
        ),
        (
            lambda: train_stacked(X0, Y0, [5], out_activation="softmax"),
            TypeError,
            "members[0] must be a StackMember or a mapping, got int",
        ),
        (
            lambda: train_stacked(X0, Y0, {"random_state": 0}, out_activation="softmax"),
            TypeError,
            "members must be a sequence of StackMember or mappings, got dict",
        ),
        (
            lambda: train_stacked(X0, Y0, [{}], out_activation="sigmoid"),
            ValueError,
            "unknown out_activation 'sigmoid'; available: identity, logistic, softmax",
        ),
        (
            lambda: train_stacked(X0, Y0, [{}], out_activation="softmax", kernel="gpu"),
            ValueError,
            "unknown kernel 'gpu'; available: auto, batched, loop",
        ),
        (
            lambda: train_stacked(X0, Y0, [{}], out_activation="softmax", solver="lbfgs"),
            ValueError,
            "solver must be one of 'adam', 'sgd', got 'lbfgs'",
        ),
        (
            lambda: train_stacked(X0, Y0[:, 0], [{}], out_activation="logistic"),
            ValueError,
            "Y must be the encoded targets, of shape (n_samples, n_outputs) = (8, ...), got shape (8,)",
        ),
        (
            lambda: train_stacked(
                X0, Y0, [{"random_state": g}, {"random_state": g}], out_activation="softmax"
            ),
            ValueError,
            "two members share one numpy.random.Generator",
        ),
        (
            lambda: train_stacked(X0, Y0, [{}], out_activation="softmax", max_stack=0),
            ValueError,
            "max_stack must be a positive integer, 'auto' or None, got 0",
        ),
        (
            lambda: fit_mlp_stack(X0, [0, 1] * 4, [{}], task="clustering"),
            ValueError,
            "task must be one of 'classification', 'regression', got 'clustering'",
        ),
        (
            lambda: fit_mlp_stack(X0, [0, 1] * 3, [{}], task="classification"),
            ValueError,
            "X and y have different numbers of samples: 8 and 6",
        ),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_stack_gain_is_the_median_of_interleaved_rounds(monkeypatch):
    from mlpar import trial

    now = [0.0]
    calls = []
    stacked_seconds = iter([0.0, 1.0, 5.0, 1.0])  # the warm-up, then an outlier in round 2

    def run_stack(batch):
        calls.append("stack")
        now[0] += next(stacked_seconds)

    def train_mlp(params, seed):
        calls.append("one")
        now[0] += 1.0  # 2 s for the batch of two

    monkeypatch.setattr(trial, "run_stack", run_stack)
    monkeypatch.setattr(trial, "train_mlp", train_mlp)
    monkeypatch.setattr(trial.time, "perf_counter", lambda: now[0])
    batch = [({}, 0), ({}, 1)]
    assert trial.stack_gain(batch, rounds=3) == 2.0  # ratios 2, 0.4, 2
    # Warm-up, then stacked first, unstacked first, stacked first.
    assert calls == ["stack", "stack", "one", "one", "one", "one", "stack", "stack", "one", "one"]
