"""The MLP engine: gradients, losses, optimizers, allocation-free steps, kernel timing."""

import itertools
import math
import tracemalloc
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import expit, log_softmax

from mlpar.nn import ACTIVATIONS, SOLVERS
from mlpar.nn._engine import Network, Workspace, build_step, forward, loss_and_grad
from mlpar.nn._kernels import GIL_RELEASE_MIN_SIZE, PLAIN_KERNELS, KernelTimer, logistic
from mlpar.nn._optim import SGD, Adam, make_optimizer

# -- a reference implementation, written for clarity, not speed ---------------


def _ref_outputs(net, params, X):
    coefs, intercepts = net.views(params)
    a = X
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        z = a @ w + b
        if i < len(coefs) - 1:
            z = {"identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z), "logistic": expit(z)}[
                net.activation
            ]
        a = z
    return a  # output logits


def _ref_objective(net, params, X, Y, alpha):
    """The function whose gradient training follows (scikit-learn's)."""
    z = _ref_outputs(net, params, X)
    n = X.shape[0]
    if net.out_activation == "softmax":
        data = -np.sum(Y * log_softmax(z, axis=1)) / n
    elif net.out_activation == "logistic":
        p = expit(z)
        data = -np.sum(Y * np.log(p) + (1 - Y) * np.log(1 - p)) / n
    else:  # squared error summed over outputs (the gradient scikit-learn uses)
        data = 0.5 * np.sum((z - Y) ** 2) / n
    w = params[: net.n_coef]
    return data + 0.5 * alpha * np.dot(w, w) / n


def _problem(
    out_activation, n_out, *, activation="tanh", hidden=(5, 4), n=7, seed=0, dtype=np.float64
):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    if out_activation == "softmax":
        Y = np.eye(n_out)[rng.integers(0, n_out, n)]
    elif out_activation == "logistic":
        Y = (rng.random((n, n_out)) < 0.5).astype(float)
    else:
        Y = rng.standard_normal((n, n_out))
    net = Network(
        [3, *hidden, n_out], activation=activation, out_activation=out_activation, dtype=dtype
    )
    net.init_glorot(rng)
    net.params += 0.1 * rng.standard_normal(net.n_params).astype(dtype)  # nonzero biases
    return net, X.astype(dtype), Y.astype(dtype)


OUTPUTS = [("softmax", 3), ("logistic", 1), ("logistic", 3), ("identity", 1), ("identity", 2)]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("out_activation,n_out", OUTPUTS)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gradient_matches_central_differences(activation, out_activation, n_out, alpha):
    net, X, Y = _problem(out_activation, n_out, activation=activation)
    _, grad = loss_and_grad(net, X, Y, alpha=alpha)
    h = 1e-6
    numeric = np.empty(net.n_params)
    for j in range(net.n_params):
        p = net.params.copy()
        p[j] += h
        up = _ref_objective(net, p, X, Y, alpha)
        p[j] -= 2 * h
        down = _ref_objective(net, p, X, Y, alpha)
        numeric[j] = (up - down) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("out_activation,n_out", OUTPUTS)
def test_reported_loss_follows_sklearn_conventions(out_activation, n_out):
    net, X, Y = _problem(out_activation, n_out)
    alpha = 0.2
    loss, _ = loss_and_grad(net, X, Y, alpha=alpha)
    z = _ref_outputs(net, net.params, X)
    n = X.shape[0]
    if out_activation == "softmax":
        data = -np.mean(np.sum(Y * log_softmax(z, axis=1), axis=1))
    elif out_activation == "logistic":  # binary log loss: mean over samples, sum over outputs
        p = expit(z)
        data = -np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p), axis=0).sum()
    else:  # squared_loss: half the mean over samples *and* outputs
        data = 0.5 * np.mean((Y - z) ** 2, axis=0).mean()
    w = net.params[: net.n_coef]
    assert loss == pytest.approx(data + 0.5 * alpha * np.dot(w, w) / n, rel=1e-12)


def test_sgd_step_applies_the_full_gradient_with_l2():
    """The training path (L2 fused into the optimizer) moves along loss_and_grad's gradient."""
    net, X, Y = _problem("softmax", 3, activation="relu")
    alpha = 0.5
    _, grad_ref = loss_and_grad(net, X, Y, alpha=alpha)
    before = net.params.copy()
    grad = np.empty(net.n_params)
    opt = SGD(net.n_params, net.dtype, learning_rate_init=1.0, momentum=0.0)
    step = build_step(
        net,
        Workspace(net, len(X)),
        grad,
        alpha=alpha,
        update=opt.bind(net.params, grad, net.n_coef),
    )
    loss = step(X, X.T, Y, Y.reshape(-1))
    np.testing.assert_allclose(before - net.params, grad_ref, rtol=1e-10, atol=1e-14)
    assert loss == pytest.approx(_ref_objective(net, before, X, Y, alpha), rel=1e-12)


def test_softmax_falls_back_to_row_shifts_when_rows_are_far_apart():
    # No hidden layer: logits = X @ W + b. One row's logits sit ~1000 below the
    # other's, so a batch-wide shift would underflow its exponentials entirely.
    net = Network([1, 3], activation="relu", out_activation="softmax", dtype=np.float32)
    net.coefs[0][:] = [[1.0, 2.0, 3.0]]
    net.intercepts[0][:] = 0.0
    X = np.array([[0.0], [400.0], [-400.0]], np.float32)
    Y = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    loss, grad = loss_and_grad(net, X, Y)
    z = X @ net.coefs[0]
    expected = -np.mean(log_softmax(z.astype(np.float64), axis=1)[np.arange(3), [0, 1, 2]])
    assert math.isfinite(loss)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(grad).all()


def test_forward_matches_the_training_outputs():
    net, X, Y = _problem("softmax", 4, activation="relu")
    P = forward(X, net.coefs, net.intercepts, "relu", "softmax")
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    z = _ref_outputs(net, net.params, X)
    np.testing.assert_allclose(np.log(P), log_softmax(z, axis=1), rtol=1e-10)


def test_flat_buffer_views_and_layout():
    net = Network([4, 3, 2], activation="relu", out_activation="identity", dtype=np.float32)
    assert net.n_coef == 4 * 3 + 3 * 2
    assert net.n_params == net.n_coef + 3 + 2
    for view in net.coefs + net.intercepts:
        assert np.shares_memory(view, net.params)
        assert view.flags.c_contiguous
    net.coefs[1][0, 1] = 7.0
    assert net.params[12 + 1] == 7.0  # W1 starts right after W0 (12 values)
    net.intercepts[1][1] = 5.0
    assert net.params[-1] == 5.0  # intercepts last, in layer order


def test_glorot_init_bounds_and_determinism():
    shapes = [64, 32, 10]
    a = Network(shapes, activation="relu", out_activation="softmax", dtype=np.float32)
    b = Network(shapes, activation="relu", out_activation="softmax", dtype=np.float32)
    a.init_glorot(np.random.default_rng(3))
    b.init_glorot(np.random.default_rng(3))
    assert np.array_equal(a.params, b.params)
    for (fan_in, fan_out), w in zip(a.shapes, a.coefs):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.9 * bound  # uses the whole range
    logistic = Network(shapes, activation="logistic", out_activation="softmax", dtype=np.float32)
    logistic.init_glorot(np.random.default_rng(3))
    assert np.abs(logistic.coefs[0]).max() <= math.sqrt(2.0 / (64 + 32))


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 2e-15)])
def test_logistic_agrees_with_scipy_expit(dtype, rtol):
    """The engine's NumPy logistic against scipy's expit: a few ulps apart
    everywhere, relative error included, and saturated to exactly 0 and 1."""
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(20_000) * 4,
            rng.uniform(-800, 800, 20_000),
            np.linspace(-120, 120, 4001),
            [0.0, -0.0, 1e-30, -1e-30],
            [np.finfo(dtype).max, -np.finfo(dtype).max],
        ]
    ).astype(dtype)
    expected = expit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning for large negative x
        got = logistic(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    assert logistic(np.array([-1e4, 1e4], dtype)).tolist() == [0.0, 1.0]
    # In place and into out=, the forms the training step uses.
    inplace = x.copy()
    assert logistic(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, got)
    out = np.empty_like(x)
    logistic(x, out=out)
    np.testing.assert_array_equal(out, got)


def test_forward_with_logistic_units_is_quiet_for_large_inputs():
    net = Network([2, 3, 1], activation="logistic", out_activation="logistic", dtype=np.float32)
    net.params[:] = 50.0
    X = np.array([[-100.0, -100.0], [100.0, 100.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = forward(X, net.coefs, net.intercepts, "logistic", "logistic")
    assert np.isfinite(P).all() and P.min() >= 0.0 and P.max() <= 1.0


# -- optimizers against scikit-learn's own update rules -----------------------


def _sklearn_optimizer(solver, params, **kw):
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    if solver == "adam":
        return AdamOptimizer(
            params, kw["learning_rate_init"], kw["beta_1"], kw["beta_2"], kw["epsilon"]
        )
    return SGDOptimizer(
        params, kw["learning_rate_init"], "constant", kw["momentum"], kw["nesterovs_momentum"]
    )


@pytest.mark.parametrize(
    "solver,extra",
    [
        ("adam", {}),
        ("adam", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
        ("sgd", {"momentum": 0.9, "nesterovs_momentum": True}),
        ("sgd", {"momentum": 0.7, "nesterovs_momentum": False}),
        ("sgd", {"momentum": 0.0, "nesterovs_momentum": True}),
    ],
)
def test_optimizer_matches_sklearn_update_rule(solver, extra):
    hp = dict(
        learning_rate_init=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        momentum=0.9,
        nesterovs_momentum=True,
    )
    hp.update(extra)
    rng = np.random.default_rng(0)
    net = Network([5, 4, 3], activation="relu", out_activation="softmax", dtype=np.float64)
    net.init_glorot(rng)
    ours = make_optimizer(solver, net.n_params, np.float64, **hp)
    grad = np.empty(net.n_params)
    update = ours.bind(net.params, grad, net.n_coef)
    theirs_params = [p.copy() for p in net.coefs + net.intercepts]
    theirs = _sklearn_optimizer(solver, theirs_params, **hp)
    l2 = 0.05
    for _ in range(5):
        g = rng.standard_normal(net.n_params)
        grad[:] = g
        update(l2)
        coefs, intercepts = net.views(g.copy())
        # sklearn adds alpha * W / n to the coefficient gradients before updating.
        coef_grads = [gc + l2 * w for gc, w in zip(coefs, theirs_params[: len(coefs)])]
        theirs.update_params(theirs_params, coef_grads + intercepts)
    flat_theirs = np.concatenate([p.ravel() for p in theirs_params])
    np.testing.assert_allclose(net.params, flat_theirs, rtol=1e-12, atol=1e-14)


def test_optimizer_chunks_cover_large_buffers_exactly():
    """Chunked updates (for cache locality) give the same result as one pass."""
    rng = np.random.default_rng(1)
    n_params, n_coef = 200_003, 150_001  # several 64 Ki-element float32 chunks
    p1 = rng.standard_normal(n_params).astype(np.float32)
    p2 = p1.copy()
    g = rng.standard_normal(n_params).astype(np.float32)
    a = Adam(n_params, np.float32, learning_rate_init=0.1)
    update = a.bind(p1, g.copy(), n_coef)
    update(0.01)
    # The same rule, written as whole-buffer NumPy.
    g2 = g.copy()
    g2[:n_coef] += np.float32(0.01) * p2[:n_coef]
    m = (1 - 0.9) * g2
    v = (1 - 0.999) * g2**2
    lr = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    p2 -= (lr * m / (np.sqrt(v) + 1e-8)).astype(np.float32)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
    m_ours, v_ours = a.moments
    np.testing.assert_allclose(m_ours, m, rtol=1e-5, atol=1e-7)
    assert a.m.dtype == a.v.dtype == np.float32


def test_solver_names():
    assert SOLVERS == ("adam", "sgd")
    assert ACTIVATIONS == ("identity", "logistic", "relu", "tanh")
    with pytest.raises(ValueError, match="unknown solver 'lbfgs'; available: adam, sgd"):
        make_optimizer("lbfgs", 3, np.float32, learning_rate_init=0.1)


# -- the step: no allocations, no upcasts -------------------------------------


def _training_step(
    activation,
    out_activation,
    *,
    n=256,
    hidden=(512,),
    n_features=64,
    n_out=10,
    dtype=np.float32,
    solver="adam",
    kernels=PLAIN_KERNELS,
):
    rng = np.random.default_rng(0)
    net = Network(
        [n_features, *hidden, n_out],
        activation=activation,
        out_activation=out_activation,
        dtype=dtype,
    )
    net.init_glorot(rng)
    X = rng.standard_normal((n, n_features)).astype(dtype)
    if out_activation == "softmax":
        Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, n)]
    else:
        Y = rng.standard_normal((n, n_out)).astype(dtype)
    grad = np.empty(net.n_params, dtype)
    opt = make_optimizer(solver, net.n_params, dtype, learning_rate_init=1e-3)
    step = build_step(
        net,
        Workspace(net, n),
        grad,
        alpha=1e-4,
        update=opt.bind(net.params, grad, net.n_coef, kernels),
        kernels=kernels,
    )
    args = (X, X.T, Y, Y.reshape(-1))
    return step, args, net, opt


@pytest.mark.parametrize(
    "activation,out_activation,solver",
    [
        ("relu", "softmax", "adam"),
        ("tanh", "identity", "sgd"),
        ("logistic", "logistic", "adam"),
    ],
)
def test_steady_state_step_allocates_no_arrays(activation, out_activation, solver):
    # Every buffer of this model is >= 128 KiB (1024 x 32 x 4 bytes, the output
    # layer), so a temporary array anywhere in the step would show in the peak.
    step, args, net, _ = _training_step(
        activation, out_activation, solver=solver, n=1024, hidden=(512,), n_out=32
    )
    for _ in range(3):  # warm up (first-call caches inside NumPy/BLAS)
        step(*args)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(20):
            step(*args)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024  # nothing kept
    # Transient: at most NumPy's own iterator buffer (np.getbufsize() elements),
    # which it uses for broadcast operands (bias add) and the bool relu mask.
    assert peak - before < np.getbufsize() * 8 + 4096 < 1024 * 32 * 4


def test_step_kernels_see_one_dtype_only():
    """float32 end to end: every kernel operand is float32 (or the bool relu mask)."""
    seen = set()

    def checked(f):
        def call(*args, **kw):
            for a in list(args) + [kw.get("out")]:
                if isinstance(a, np.ndarray):
                    seen.add(a.dtype)
                elif isinstance(a, np.generic):
                    seen.add(a.dtype)
                elif a is not None:
                    assert type(a) in (float, int), f"{f!r} got a {type(a)} operand"
            return f(*args, **kw)

        return call

    kernels = SimpleNamespace(**{k: checked(v) for k, v in vars(PLAIN_KERNELS).items()})
    for activation, out_activation, solver in [
        ("relu", "softmax", "adam"),
        ("tanh", "logistic", "sgd"),
        ("logistic", "identity", "adam"),
    ]:
        step, args, net, opt = _training_step(
            activation, out_activation, solver=solver, hidden=(16, 8), kernels=kernels
        )
        for _ in range(3):
            loss = step(*args)
        assert isinstance(loss, float) and math.isfinite(loss)
        assert net.params.dtype == opt.dtype == np.float32
    assert seen <= {np.dtype(np.float32), np.dtype(bool)}


# -- kernel timing ------------------------------------------------------------


def test_kernel_timer_bins_calls_by_kind_and_size():
    timer = KernelTimer()
    k = timer.kernels
    big = np.zeros(GIL_RELEASE_MIN_SIZE + 1)
    small = np.zeros(GIL_RELEASE_MIN_SIZE)
    m = np.ones((3, 3))

    def step():
        k.dot(m, m, out=np.empty((3, 3)))
        k.add(big, 1.0, out=big)
        k.add(small, 1.0, out=small)
        k.subtract(0.0, big, out=big)  # scalar first operand: sized by out
        k.sum(big, axis=None)

    timed = timer.time_step(step)
    for _ in range(4):
        timed()
    t = timer.totals()
    counts = (t["n_steps"], t["gemm_calls"], t["ufunc_big_calls"], t["ufunc_small_calls"])
    assert counts == (4, 4, 12, 4)
    for key in ("step_time", "gemm_time", "ufunc_big_time", "other_time"):
        assert t[key] >= 0.0
    assert t["gemm_time"] + t["ufunc_big_time"] + t["other_time"] == pytest.approx(t["step_time"])
    assert np.array_equal(small, np.full_like(small, 4.0))  # the wrapped calls did run
    assert np.array_equal(big, np.zeros_like(big))  # b -> -(b + 1): 0, -1, 0, -1, 0


@pytest.mark.parametrize("hidden,alpha", list(itertools.product([(), (8,), (8, 4)], [0.0, 1e-3])))
def test_instrumented_step_counts_its_blas_calls(hidden, alpha):
    """A softmax step is exactly: L forward GEMMs, 3 softmax/loss dots, 3 per
    backward layer but the first (2), and the L2 penalty's dot."""
    timer = KernelTimer()
    rng = np.random.default_rng(0)
    net = Network([6, *hidden, 3], activation="relu", out_activation="softmax", dtype=np.float32)
    net.init_glorot(rng)
    X = rng.standard_normal((32, 6)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
    grad = np.empty(net.n_params, np.float32)
    opt = Adam(net.n_params, np.float32)
    step = timer.time_step(
        build_step(
            net,
            Workspace(net, 32),
            grad,
            alpha=alpha,
            update=opt.bind(net.params, grad, net.n_coef, timer.kernels),
            kernels=timer.kernels,
        )
    )
    for _ in range(5):
        step(X, X.T, Y, Y.reshape(-1))
    n_layers = len(hidden) + 1
    expected = n_layers + 3 + 3 * (n_layers - 1) + 2 + (1 if alpha else 0)
    assert timer.totals()["gemm_calls"] == 5 * expected


# -- the training benchmark runs --------------------------------------------------


def test_training_benchmark_quick_run(tmp_path, capsys):
    """experiments/bench_training.py --quick: a smoke run writing its JSON and table."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_training.py"
    spec = importlib.util.spec_from_file_location("bench_training", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench_training.json").read_text())
    table = (tmp_path / "bench_training.md").read_text()
    assert report["sgemm_peak_gflops"] > 0
    assert report["environment"]["blas"]
    hidden = {r["hidden"] for r in report["results"]}
    assert hidden == {"(32,)", "(256, 256)", "(1024, 1024)"}
    contenders = {r["contender"] for r in report["results"]}
    assert {"mlpar", "scikit-learn"} <= contenders
    for r in report["results"]:
        assert r["ms_per_epoch_min"] <= r["ms_per_epoch_median"] <= r["ms_per_epoch_max"]
        assert r["gflops"] > 0
    assert len(report["targets"]) == 3
    assert "| (256, 256) | mlpar |" in table and table in capsys.readouterr().out
