"""Adaptive search (issue 16): Optuna's samplers run by mlpar.

1. Quality: TPE vs random, the same 40-trial budget, digits, a
   widths/lr/alpha/batch space, 5 sampler seeds; median best val_score.
2. Speed: mlpar + TPE (constant_liar) on ``processes`` x2 vs Optuna's own
   ``study.optimize(n_jobs=2)`` (threads) with the same objective (mlpar's
   engine, ``mlpar.trial.train_mlp``), widths <= 128, BLAS 1 thread per trial,
   interleaved repeats, median wall times.
3. A worker SIGKILLed mid-study: the study goes on; the trial is ``crashed``.

    python experiments/bench_search.py            # full (a few minutes on 2 cores)
    python experiments/bench_search.py --quick    # smoke test

Writes experiments/results/search/bench_search.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
from scipy import stats
from threadpoolctl import threadpool_limits

from mlpar import sweep
from mlpar.environment import cpu_model, environment_info, format_environment
from mlpar.samplers import make_sampler
from mlpar.trial import train_mlp

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "search"
HIDDEN = [[32], [64], [128], [64, 64]]
BATCH = [32, 64, 128]


def space(epochs):
    return {
        "dataset": ["digits"],
        "epochs": [epochs],
        "hidden": HIDDEN,
        "lr": stats.loguniform(1e-4, 1e-1),
        "alpha": stats.loguniform(1e-6, 1e-2),
        "batch_size": BATCH,
    }


def best(result):
    scores = [r.metrics.get("val_score") for r in result if r.status == "ok"]
    return max(s for s in scores if s is not None)


def quality(n_trials, seeds, epochs):
    out = {"tpe": [], "random": []}
    for seed in range(seeds):
        for name in out:
            result = sweep(
                train_mlp,
                space(epochs),
                n_iter=n_trials,
                blas_threads=1,
                sampler=make_sampler(name, seed=seed),
                progress=False,
            )
            out[name].append(best(result))
            print(f"  seed {seed} {name:6s} best val_score {out[name][-1]:.4f}", flush=True)
    return out


def optuna_objective(epochs):
    def objective(trial):
        params = {
            "dataset": "digits",
            "epochs": epochs,
            "hidden": HIDDEN[trial.suggest_categorical("hidden", list(range(len(HIDDEN))))],
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "alpha": trial.suggest_float("alpha", 1e-6, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", BATCH),
        }
        return train_mlp(params, trial.number)["val_score"]

    return objective


def _mlpar_tpe(n_trials, epochs, rep):
    t0 = time.perf_counter()
    sweep(
        train_mlp,
        space(epochs),
        backend="processes",
        n_jobs=2,
        blas_threads=1,
        n_iter=n_trials,
        sampler=make_sampler("tpe", seed=rep, n_jobs=2),
        progress=False,
    )
    return time.perf_counter() - t0


def _optuna_tpe(n_trials, epochs, rep, n_jobs):
    t0 = time.perf_counter()
    with threadpool_limits(1):
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=rep, constant_liar=n_jobs > 1),
        )
        study.optimize(optuna_objective(epochs), n_trials=n_trials, n_jobs=n_jobs)
    return time.perf_counter() - t0


def speed(n_trials, repeats, epochs):
    """Interleaved repeats (the order rotates); the speed-up is taken within each repeat."""
    runs = {
        "mlpar_processes_x2": lambda rep: _mlpar_tpe(n_trials, epochs, rep),
        "optuna_threads_x2": lambda rep: _optuna_tpe(n_trials, epochs, rep, 2),
        "optuna_serial": lambda rep: _optuna_tpe(n_trials, epochs, rep, 1),
    }
    times = {name: [] for name in runs}
    for rep in range(repeats):
        names = list(runs)[rep % len(runs) :] + list(runs)[: rep % len(runs)]
        for name in names:
            times[name].append(runs[name](rep))
        print(
            f"  repeat {rep}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
            flush=True,
        )
    times["ratio"] = [
        o / m for o, m in zip(times["optuna_threads_x2"], times["mlpar_processes_x2"])
    ]
    return times


def kill_first(params, seed, *, marker):
    """SIGKILL the worker on the first trial to run (the marker file says it happened)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return train_mlp(params, seed)
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def crash(n_trials, epochs):
    import functools

    with tempfile.TemporaryDirectory() as tmp:
        fn = functools.partial(kill_first, marker=os.path.join(tmp, "killed"))
        result = sweep(
            fn,
            space(epochs),
            backend="processes",
            n_jobs=2,
            blas_threads=1,
            n_iter=n_trials,
            sampler=make_sampler("tpe", seed=0, n_jobs=2),
            progress=False,
        )
    statuses = [r.status for r in sorted(result, key=lambda r: r.sampler_trial)]
    return {"n_rows": len(result), "statuses": statuses}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials, seeds, repeats, epochs = (6, 1, 1, 2) if args.quick else (40, 5, 3, 10)
    speed_trials = 6 if args.quick else 40
    print(format_environment(environment_info()), flush=True)
    cpu = cpu_model()
    print("quality: TPE vs random", flush=True)
    q = quality(n_trials, seeds, epochs)
    print("speed: mlpar processes x2 vs optuna n_jobs=2", flush=True)
    s = speed(speed_trials, repeats, 2 if args.quick else 30)
    print("crash: a worker SIGKILLed mid-study", flush=True)
    c = crash(6, epochs)
    med = {k: statistics.median(v) for k, v in {**q, **s}.items()}
    ratio = med["ratio"]
    lines = [
        f"# bench_search ({'quick' if args.quick else 'full'}): `python experiments/bench_search.py"
        + (" --quick`" if args.quick else "`"),
        "",
        f"digits, {epochs} epochs (speed: {2 if args.quick else 30}), hidden {HIDDEN}, lr/alpha loguniform, batch {BATCH}",
        "",
        f"CPU: {cpu}; " + format_environment(environment_info()).splitlines()[1].strip(),
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| best val_score, TPE, median of {seeds} seeds x {n_trials} trials | {med['tpe']:.4f} |",
        f"| best val_score, random, median of {seeds} seeds x {n_trials} trials | {med['random']:.4f} |",
        f"| wall, mlpar + TPE processes x2, {speed_trials} trials (median of {repeats}) | {med['mlpar_processes_x2']:.2f} s |",
        f"| wall, Optuna study.optimize(n_jobs=2), {speed_trials} trials (median of {repeats}) | {med['optuna_threads_x2']:.2f} s |",
        f"| wall, Optuna study.optimize(n_jobs=1), {speed_trials} trials (median of {repeats}) | {med['optuna_serial']:.2f} s |",
        f"| speed-up of mlpar over Optuna n_jobs=2 (median of the per-repeat ratios) | {ratio:.2f}x |",
        f"| SIGKILLed worker: rows / statuses | {c['n_rows']} / {', '.join(c['statuses'])} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "bench_search_quick" if args.quick else "bench_search"
    (OUT / f"{stem}.md").write_text(text)
    data = {
        "quality": q,
        "speed": s,
        "crash": c,
        "medians": med,
        "speedup": ratio,
        "environment": environment_info(),
    }
    (OUT / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
