"""Benchmark: training speed of mlpar's MLP against scikit-learn's (and PyTorch's, if installed).

The workload is the one DESIGN.md quotes: ``make_classification`` 20000 x 64,
10 classes, minibatches of 256, Adam, float32, one BLAS thread, hidden layers
(32,), (256, 256) and (1024, 1024). Contenders run interleaved (round robin,
starting with a different one each repeat) after a warm-up, so that drifting
machine load hits them alike; the figures are medians and ranges of
milliseconds per epoch over the repeats, plus each contender's achieved
GFLOP/s (6 x weights x samples per epoch) as a share of this machine's
single-thread SGEMM peak. Absolute times depend on the machine: compare the
ratios of one run.

Usage::

    python experiments/bench_training.py            # full run (~1-3 minutes)
    python experiments/bench_training.py --quick    # smoke run (seconds)
    python experiments/bench_training.py --repeats 9 --out-dir /tmp/bench

Writes ``bench_training.json`` and ``bench_training.md`` under
``experiments/results/`` (or ``--out-dir``) and prints the markdown table.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from mlpar.nn import MLPClassifier

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (hidden layers, epochs per timed fit): fewer epochs where an epoch is long.
FULL = dict(n_samples=20_000, workloads=[((32,), 10), ((256, 256), 4), ((1024, 1024), 1)])
QUICK = dict(n_samples=2_000, workloads=[((32,), 2), ((256, 256), 1), ((1024, 1024), 1)])
N_FEATURES, N_CLASSES, BATCH_SIZE, ALPHA, LEARNING_RATE = 64, 10, 256, 1e-4, 1e-3

# Targets on the reference machine (see the issue that asked for this engine).
TARGETS = {
    "speedup_vs_sklearn": {"(32,)": 2.0, "(256, 256)": 2.0},
    "share_of_sgemm_peak": {"(1024, 1024)": 0.65},
}


def make_data(n_samples):
    """The benchmark's classification problem, standardized, in float32."""
    X, y = make_classification(
        n_samples=n_samples,
        n_features=N_FEATURES,
        n_informative=32,
        n_redundant=16,
        n_classes=N_CLASSES,
        random_state=0,
    )
    return StandardScaler().fit_transform(X).astype(np.float32), y


def n_weights(hidden):
    units = [N_FEATURES, *hidden, N_CLASSES]
    return sum(a * b for a, b in zip(units[:-1], units[1:]))


def sgemm_peak(n=1024, repeats=7):
    """Best single-thread float32 GEMM rate (GFLOP/s) of ``np.dot`` at n x n x n."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.dot(a, b, out=c)  # warm up
    best = min(_timed(lambda: np.dot(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _wall_and_cpu(fn):
    """Wall and process CPU seconds of ``fn()``. With one BLAS thread, CPU time
    is what the work cost even when other processes steal the cores."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


# -- contenders: fit(X, y, hidden, epochs, seed) -> (wall, cpu) seconds -----------


def _estimator_fit(cls, **extra):
    def fit(X, y, hidden, epochs, seed):
        # tol=0 and a patience beyond the epoch budget: every fit runs all epochs.
        est = cls(
            hidden_layer_sizes=hidden,
            solver="adam",
            batch_size=BATCH_SIZE,
            learning_rate_init=LEARNING_RATE,
            alpha=ALPHA,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=seed,
            **extra,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            seconds = _wall_and_cpu(lambda: est.fit(X, y))
        assert est.n_iter_ == epochs, (cls.__name__, est.n_iter_, epochs)
        assert est.coefs_[0].dtype == np.float32, cls.__name__
        return seconds

    return fit


def _torch_fit():
    """PyTorch CPU with the same model, loss, L2 and optimizer; None if torch is missing."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(1)

    def fit(X, y, hidden, epochs, seed):
        torch.manual_seed(seed)  # nn.Linear draws its initial weights from torch's RNG
        perm_rng = torch.Generator().manual_seed(seed)
        return _wall_and_cpu(lambda: train(perm_rng, X, y, hidden, epochs))

    def train(perm_rng, X, y, hidden, epochs):
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.astype(np.int64))
        units = [X.shape[1], *hidden, N_CLASSES]
        layers = []
        for i, (a, b) in enumerate(zip(units[:-1], units[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(units) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
        # scikit-learn's L2 adds alpha / batch_size * W to the weights' gradient:
        # Adam's (coupled) weight_decay on the weights only.
        opt = torch.optim.Adam(
            [
                {"params": weights, "weight_decay": ALPHA / BATCH_SIZE},
                {"params": biases, "weight_decay": 0.0},
            ],
            lr=LEARNING_RATE,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        n = Xt.shape[0]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=perm_rng)
            total = 0.0
            for start in range(0, n, BATCH_SIZE):
                idx = perm[start : start + BATCH_SIZE]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item()  # the per-batch loss, as the others record it
        return total / n

    return fit, torch.__version__


# -- environment ------------------------------------------------------------------------


def environment():
    """What the figures depend on: CPU, BLAS, library versions and builds."""
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    try:
        numpy_build = np.show_config(mode="dicts")
    except TypeError:  # numpy < 1.26 prints only
        numpy_build = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": sys.version.split()[0],
        "python_build": " ".join(platform.python_build()),
        "gil_enabled": gil,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "blas": [  # every thread pool threadpoolctl sees (BLAS and OpenMP)
            {
                k: info.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "version",
                    "num_threads",
                    "threading_layer",
                    "architecture",
                    "filepath",
                )
            }
            for info in threadpool_info()
        ],
        "numpy_build": numpy_build,
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "BLIS_", "GOTO"))
        },
    }


# -- the run ------------------------------------------------------------------------------


def run(*, quick=False, repeats=5):
    config = QUICK if quick else FULL
    X, y = make_data(config["n_samples"])
    contenders = [
        ("mlpar", _estimator_fit(MLPClassifier)),
        ("scikit-learn", _estimator_fit(SkMLPClassifier)),
    ]
    torch_fit, torch_version = _torch_fit()
    if torch_fit is not None:
        contenders.append(("pytorch", torch_fit))

    with threadpool_limits(limits=1):
        env = environment()  # inside the limit: records the 1 BLAS thread in force
        env["torch"] = torch_version
        peak = sgemm_peak()
        rows = []
        for hidden, epochs in config["workloads"]:
            # Warm-up: one short fit each (BLAS buffers, code paths, caches).
            warm = slice(0, min(len(X), 2048))
            for _, fit in contenders:
                fit(X[warm], y[warm], hidden, 1, 0)
            seconds = {name: [] for name, _ in contenders}
            for r in range(repeats):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for name, fit in order:
                    seconds[name].append(fit(X, y, hidden, epochs, r))
            rows += _rows(hidden, epochs, len(X), seconds, peak)
    return {
        "config": {
            "n_samples": len(X),
            "n_features": N_FEATURES,
            "n_classes": N_CLASSES,
            "batch_size": BATCH_SIZE,
            "solver": "adam",
            "alpha": ALPHA,
            "learning_rate_init": LEARNING_RATE,
            "dtype": "float32",
            "blas_threads": 1,
            "repeats": repeats,
            "quick": quick,
        },
        "sgemm_peak_gflops": peak,
        "environment": env,
        "results": rows,
        "targets": _check_targets(rows),
    }


def _rows(hidden, epochs, n_samples, seconds, peak):
    flops = 6 * n_weights(hidden) * n_samples  # per epoch
    base = seconds["scikit-learn"]
    rows = []
    for name, times in seconds.items():
        per_epoch = sorted(wall / epochs for wall, _ in times)
        cpu = statistics.median(c / epochs for _, c in times)
        median = statistics.median(per_epoch)
        q = statistics.quantiles(per_epoch, n=4) if len(per_epoch) > 1 else [median] * 3
        # Paired by repeat: each ratio compares fits that ran back to back.
        speedup = statistics.median(b[0] / t[0] for b, t in zip(base, times))
        speedup_cpu = statistics.median(b[1] / t[1] for b, t in zip(base, times))
        rows.append(
            {
                "hidden": str(tuple(hidden)),
                "contender": name,
                "epochs_per_fit": epochs,
                "ms_per_epoch_median": 1e3 * median,
                "ms_per_epoch_min": 1e3 * per_epoch[0],
                "ms_per_epoch_max": 1e3 * per_epoch[-1],
                "ms_per_epoch_iqr": 1e3 * (q[2] - q[0]),
                "cpu_ms_per_epoch_median": 1e3 * cpu,
                "gflops": flops / median / 1e9,
                "share_of_peak": flops / median / 1e9 / peak,
                "share_of_peak_cpu": flops / cpu / 1e9 / peak,
                "speedup_vs_sklearn": speedup,
                "speedup_vs_sklearn_cpu": speedup_cpu,
                "n_fits": len(times),
            }
        )
    return rows


def _check_targets(rows):
    ours = {r["hidden"]: r for r in rows if r["contender"] == "mlpar"}
    checks = []
    for hidden, target in TARGETS["speedup_vs_sklearn"].items():
        if hidden in ours:
            got = ours[hidden]["speedup_vs_sklearn"]
            checks.append(
                {
                    "what": f"speedup vs scikit-learn at {hidden}",
                    "target": target,
                    "got": got,
                    "met": got >= target,
                }
            )
    for hidden, target in TARGETS["share_of_sgemm_peak"].items():
        if hidden in ours:
            got = ours[hidden]["share_of_peak"]
            checks.append(
                {
                    "what": f"share of SGEMM peak at {hidden}",
                    "target": target,
                    "got": got,
                    "met": got >= target,
                }
            )
    return checks


def to_markdown(report):
    env, cfg = report["environment"], report["config"]
    blas = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} thread)"
        for b in env["blas"]
        if b.get("user_api", "blas") == "blas"
    )
    lines = [
        "# Training speed: mlpar vs scikit-learn" + (" vs PyTorch" if env.get("torch") else ""),
        "",
        f"{cfg['n_samples']} x {cfg['n_features']} float32, {cfg['n_classes']} classes, "
        f"batch {cfg['batch_size']}, Adam, 1 BLAS thread, {cfg['repeats']} interleaved repeats"
        + (" (quick run)" if cfg["quick"] else "")
        + ".",
        f"Machine: {env['cpu_model']}, {env['cpus_usable']} usable cores; {blas}; "
        f"Python {env['python']}, NumPy {env['numpy']}, scikit-learn {env['scikit_learn']}"
        + (f", PyTorch {env['torch']}" if env.get("torch") else ", PyTorch not installed")
        + ".",
        f"SGEMM peak (n=1024, 1 thread): {report['sgemm_peak_gflops']:.1f} GFLOP/s."
        + (f" BLAS environment: {env['env']}." if env["env"] else ""),
        "",
        "| hidden | contender | ms/epoch (median) | min - max | IQR | GFLOP/s | % of peak "
        "| speedup vs sklearn | CPU ms/epoch | % of peak (CPU) | speedup (CPU) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['hidden']} | {r['contender']} | {r['ms_per_epoch_median']:.1f} "
            f"| {r['ms_per_epoch_min']:.1f} - {r['ms_per_epoch_max']:.1f} "
            f"| {r['ms_per_epoch_iqr']:.1f} | {r['gflops']:.1f} | {100 * r['share_of_peak']:.0f}% "
            f"| {r['speedup_vs_sklearn']:.2f}x | {r['cpu_ms_per_epoch_median']:.1f} "
            f"| {100 * r['share_of_peak_cpu']:.0f}% | {r['speedup_vs_sklearn_cpu']:.2f}x |"
        )
    lines += ["", "Targets (reference machine):", ""]
    for c in report["targets"]:
        got = f"{c['got']:.2f}x" if "speedup" in c["what"] else f"{100 * c['got']:.0f}%"
        want = f"{c['target']:.1f}x" if "speedup" in c["what"] else f"{100 * c['target']:.0f}%"
        lines.append(f"- {c['what']}: {got} (target {want}) {'met' if c['met'] else 'NOT met'}")
    lines += [
        "",
        "ms/epoch = wall time of a fit / its epochs (per-fit set-up included); "
        "speedup = median over repeats of the paired ratio sklearn time / contender "
        "time. The CPU columns use process CPU time instead: on a machine shared with "
        "other work they show what the training itself cost. Targets are judged on "
        "wall time, on a quiet machine.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed fits per contender and workload (default: 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small data, one repeat: a smoke run in seconds"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where to write the JSON and markdown (default: {RESULTS_DIR})",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    repeats = 1 if args.quick and args.repeats == 5 else args.repeats
    report = run(quick=args.quick, repeats=repeats)
    markdown = to_markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_training.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out_dir / "bench_training.md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out_dir / 'bench_training.json'} and {args.out_dir / 'bench_training.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
