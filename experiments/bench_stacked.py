"""Benchmark: 16 trials trained stacked (one batched computation) vs one after another.

The workload of issue 13: 16 trials of a 64 -> w -> w -> 10 MLP on scikit-learn's
digits (1797 x 64, scaled to [0, 1]), Adam, float32, widths 8, 32, 128 and 512,
minibatches of 32 and 256, one BLAS thread. The trials differ in seed (weight
initialization and minibatch order) and learning rate; convergence is off
(``n_iter_no_change=inf``), so every trial runs the same epochs either way.

Contenders, per (width, batch):

- ``unstacked``: the 16 trials one after another with ``mlpar.nn.fit_mlp``
  (the single-model engine the estimators share);
- ``stacked``: the 16 trials in one ``fit_mlp_stack`` call, GEMM kernels
  chosen by measurement (``kernel="auto"``);
- ``stacked-loop``: the same, every GEMM forced to a loop of 2-D ``np.dot``:
  the reference ``auto`` must never lose to.

Each contender runs once to warm up, then ``--repeats`` times interleaved
(round robin, starting one further each repeat); figures are medians of the
per-repeat paired ratios (wall time, and process CPU time, which is what the
training itself cost on a machine shared with other work). Every timed run is
the whole call: validation, construction, the kernel measurement and the
epochs. Before timing, the benchmark checks that every stacked trial's weights
equal its unstacked twin's, bit for bit.

``max_stack="auto"`` may split the 16 trials into several stacks (wide
models: a stack must fit the cache); the table says how many models each
stack held.

Usage::

    python experiments/bench_stacked.py            # full run (a few minutes)
    python experiments/bench_stacked.py --quick    # smoke run (seconds)

Writes ``bench_stacked.json`` and ``bench_stacked.md`` under
``experiments/results/stacked/`` (or ``--out-dir``) and prints the table.
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_info, threadpool_limits

from mlpar.nn import fit_mlp, fit_mlp_stack, train_stacked
from mlpar.nn._stacked_loop import last_level_cache_bytes

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "stacked"
N_TRIALS = 16
WIDTHS = (8, 32, 128, 512)
BATCHES = (32, 256)
# Epochs per timed run, so that each unstacked run lasts roughly 0.3-1.5 s here.
EPOCHS = {
    (8, 32): 8,
    (32, 32): 6,
    (128, 32): 2,
    (512, 32): 1,
    (8, 256): 24,
    (32, 256): 16,
    (128, 256): 4,
    (512, 256): 1,
}
TARGETS = {(8, 32): 4.0, (32, 32): 4.0, (128, 32): 1.5}  # stacked vs unstacked, wall
NEVER_SLOWER = 0.97  # any width: stacked (auto) vs unstacked


def members():
    """16 trials: 4 seeds x 4 learning rates."""
    return [
        dict(random_state=i, learning_rate_init=(1e-3, 2e-3, 3e-3, 5e-3)[i % 4])
        for i in range(N_TRIALS)
    ]


def options(width, batch, epochs):
    return dict(
        task="classification",
        hidden_layer_sizes=(width, width),
        solver="adam",
        alpha=1e-4,
        batch_size=batch,
        max_iter=epochs,
        n_iter_no_change=math.inf,
        dtype="float32",
    )


def unstacked(X, y, width, batch, epochs):
    opts = options(width, batch, epochs)
    return [fit_mlp(X, y, **opts, **m, warn_max_iter=False) for m in members()]


def stacked(kernel):
    def run(X, y, width, batch, epochs):
        opts = options(width, batch, epochs)
        del opts["alpha"]  # a member field of the stack
        return fit_mlp_stack(X, y, [{**m, "alpha": 1e-4} for m in members()], kernel=kernel, **opts)

    return run


CONTENDERS = [
    ("unstacked", unstacked),
    ("stacked", stacked("auto")),
    ("stacked-loop", stacked("loop")),
]


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def check_identical(X, y, width, batch):
    """Every stacked trial's weights equal its unstacked twin's (1 epoch, both kernels)."""
    alone = unstacked(X, y, width, batch, 1)
    for kernel in ("auto", "loop"):
        for a, b in zip(alone, stacked(kernel)(X, y, width, batch, 1)):
            if not all(
                np.array_equal(p, q) for p, q in zip(a.coefs + a.intercepts, b.coefs + b.intercepts)
            ):
                return False
    return True


def kernel_plan(X, y, width, batch):
    """The GEMM kernels "auto" chose and the models per stack (max_stack="auto")."""
    Y = np.eye(10, dtype=np.float32)[y]
    r = train_stacked(
        X,
        Y,
        members(),
        hidden_layer_sizes=(width, width),
        out_activation="softmax",
        batch_size=batch,
        max_iter=1,
    )[0]
    return {"kernels": r.kernels, "stack_size": r.stack_size}


def environment():
    """CPU, cores, BLAS library and threads, Python and NumPy."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "numpy": np.__version__,
        "last_level_cache_bytes": last_level_cache_bytes(),  # what max_stack="auto" sizes by
        "blas": [
            {
                k: info.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "version",
                    "num_threads",
                    "threading_layer",
                    "architecture",
                )
            }
            for info in threadpool_info()
        ],
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "BLIS_", "GOTO"))
        },
    }


def run(*, quick=False, repeats=5, only=None):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rows = []
    with threadpool_limits(limits=1):
        env = environment()  # inside the limit: records the 1 BLAS thread in force
        for batch in BATCHES:
            for width in WIDTHS:
                if only and (width, batch) not in only:
                    continue
                epochs = 1 if quick else EPOCHS[width, batch]
                identical = check_identical(X, y, width, batch)
                for _, fn in CONTENDERS:  # warm-up
                    fn(X, y, width, batch, 1)
                times = {name: [] for name, _ in CONTENDERS}
                for r in range(repeats):
                    k = r % len(CONTENDERS)
                    for name, fn in CONTENDERS[k:] + CONTENDERS[:k]:
                        wall, cpu, _ = _timed(partial(fn, X, y, width, batch, epochs))
                        times[name].append((wall, cpu))
                rows.append(
                    _row(
                        width,
                        batch,
                        epochs,
                        len(X),
                        times,
                        identical,
                        kernel_plan(X, y, width, batch),
                    )
                )
                print(_line(rows[-1]), flush=True)
    return {
        "config": {
            "n_trials": N_TRIALS,
            "data": "digits 1797 x 64 / 16",
            "solver": "adam",
            "dtype": "float32",
            "blas_threads": 1,
            "repeats": repeats,
            "quick": quick,
            "command": [sys.executable, *sys.argv],
        },
        "environment": env,
        "results": rows,
        "targets": _targets(rows),
    }


def _ratio(times, a, b, i):
    """Median over repeats of the paired ratio time(a) / time(b); i=0 wall, 1 CPU."""
    return statistics.median(x[i] / y[i] for x, y in zip(times[a], times[b]))


def _row(width, batch, epochs, n, times, identical, plan):
    steps = N_TRIALS * epochs * math.ceil(n / batch)  # model-steps per run
    med = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    return {
        "width": width,
        "batch": batch,
        "epochs": epochs,
        "identical": identical,
        "seconds": {name: [list(x) for x in t] for name, t in times.items()},
        "us_per_model_step": {name: 1e6 * s / steps for name, s in med.items()},
        "speedup": _ratio(times, "unstacked", "stacked", 0),
        "speedup_cpu": _ratio(times, "unstacked", "stacked", 1),
        "stacked_vs_loop": _ratio(times, "stacked-loop", "stacked", 0),
        "loop_speedup": _ratio(times, "unstacked", "stacked-loop", 0),
        "kernels": plan["kernels"],
        "stack_size": plan["stack_size"],
    }


def _line(r):
    us = r["us_per_model_step"]
    return (
        f"| {r['width']} | {r['batch']} | {r['epochs']} | {us['unstacked']:.1f} "
        f"| {us['stacked']:.1f} | **{r['speedup']:.2f}x** | {r['speedup_cpu']:.2f}x "
        f"| {r['loop_speedup']:.2f}x | {r['stacked_vs_loop']:.2f}x "
        f"| {r['stack_size']} "
        f"| {'yes' if r['identical'] else 'NO'} |"
    )


HEADER = (
    "| width | batch | epochs | unstacked us/model-step | stacked us/model-step "
    "| stacked speedup | (CPU time) | loop-kernel speedup | auto vs loop "
    "| models per stack | bit-identical |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


def _targets(rows):
    by = {(r["width"], r["batch"]): r for r in rows}
    checks = [
        {
            "what": f"width {w}, batch {b}: stacked vs unstacked",
            "target": t,
            "got": by[w, b]["speedup"],
            "met": by[w, b]["speedup"] >= t,
        }
        for (w, b), t in TARGETS.items()
        if (w, b) in by
    ]
    worst = min(rows, key=lambda r: r["speedup"])
    checks.append(
        {
            "what": f"every width: stacked vs unstacked (worst: width {worst['width']}, "
            f"batch {worst['batch']})",
            "target": NEVER_SLOWER,
            "got": worst["speedup"],
            "met": worst["speedup"] >= NEVER_SLOWER,
        }
    )
    worst = min(rows, key=lambda r: r["stacked_vs_loop"])
    checks.append(
        {
            "what": "every width: auto kernels vs the np.dot loop",
            "target": NEVER_SLOWER,
            "got": worst["stacked_vs_loop"],
            "met": worst["stacked_vs_loop"] >= NEVER_SLOWER,
        }
    )
    return checks


def to_markdown(report):
    env, cfg = report["environment"], report["config"]
    blas = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} thread)"
        for b in env["blas"]
        if b.get("user_api") == "blas"
    )
    lines = [
        "# Stacked trials: 16 MLPs as one batched computation vs one after another",
        "",
        f"{cfg['n_trials']} trials of 64 -> w -> w -> 10 on {cfg['data']}, Adam, float32, "
        f"1 BLAS thread, {cfg['repeats']} interleaved repeats after a warm-up"
        + (" (quick run)" if cfg["quick"] else "")
        + ".",
        f"Machine: {env['cpu_model']}, {env['cpus_usable']} usable of {env['cpu_count']} cores, "
        f"{env['last_level_cache_bytes'] / 2**20:.0f} MiB last-level cache; {blas}; "
        f"Python {env['python']}, NumPy {env['numpy']}.",
        f"Command: `{' '.join(cfg['command'])}`",
        "",
        HEADER,
        *(_line(r) for r in report["results"]),
        "",
        "Targets (issue 13):",
        "",
    ]
    for c in report["targets"]:
        lines.append(
            f"- {c['what']}: {c['got']:.2f}x (target {c['target']:.2f}x) "
            f"{'met' if c['met'] else 'NOT met'}"
        )
    same = [r for r in report["results"] if r["stack_size"] == 1]
    if same:  # stacked and stacked-loop run the same code there: their ratio is noise
        ratios = [r["stacked_vs_loop"] for r in same]
        lines += [
            "",
            f"Noise: where a stack holds one model, stacked and stacked-loop run the "
            f"same code (the single engine); their ratio there is "
            f"{min(ratios):.2f}-{max(ratios):.2f}x.",
        ]
    lines += [
        "",
        "Speedups are medians over repeats of paired ratios of whole-call wall time "
        "(unstacked / stacked); the CPU column uses process CPU time. us/model-step is "
        "the median wall time divided by 16 x steps. Models per stack: what "
        "max_stack='auto' chose (1 = each trial on the single engine).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per contender and workload (default: 5)"
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat: a smoke run")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="WIDTHxBATCH",
        help="run only these workloads, e.g. --only 8x32 128x256",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where to write the JSON and markdown (default: {RESULTS_DIR})",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(HEADER, flush=True)
    only = None
    if args.only:
        try:
            only = {tuple(int(v) for v in item.lower().split("x")) for item in args.only}
        except ValueError:
            parser.error(f"--only takes WIDTHxBATCH items such as 8x32, got {args.only}")
    report = run(quick=args.quick, repeats=1 if args.quick else args.repeats, only=only)
    text = to_markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_stacked.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "bench_stacked.md").write_text(text)
    print("\n" + text.split(HEADER, 1)[1].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
