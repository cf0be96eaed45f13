"""mlpar against the tool users would pick today: GridSearchCV(MLPClassifier).

The reference grid of ``configs/digits_grid.yaml`` -- digits, hidden
{(64,), (256,), (256, 256)} x learning rate {1e-3, 3e-3} x alpha {1e-4, 1e-3},
30 epochs, batch 64, Adam, one validation split -- run end to end by

- scikit-learn: ``GridSearchCV(MLPClassifier(...), cv=<the same split>, n_jobs=1 and 2)``;
- mlpar: ``mlpar.sweep(MLPTrial(base), space, backend="processes", n_jobs=2)``,
  the same with ``backend="forked"`` (workers started by fork(), no
  interpreter start-up), and serial: the code path of ``mlpar run
  configs/digits_grid.yaml``.

Both see the same float32, standardized training and validation data. Wall
time includes everything a user waits for (worker start-up too). Contenders
are interleaved, repeated; medians and spread are reported, and the best
validation accuracy of each.

    python experiments/bench_gridsearch.py            # 3 repeats
    python experiments/bench_gridsearch.py --quick    # 1 repeat, 5 epochs

Writes experiments/results/bench_gridsearch.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_limits

from mlpar import MLPTrial, load_config, sweep
from mlpar.data import load_dataset, make_splits
from mlpar.environment import environment_info, format_environment
from mlpar.trial import SPLIT_SEED

ROOT = Path(__file__).resolve().parents[1]


def sklearn_search(cfg, splits, n_jobs):
    X = np.concatenate([splits.X_train, splits.X_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    fold = np.r_[np.full(len(splits.y_train), -1), np.zeros(len(splits.y_val), int)]
    grid = cfg.search_space()
    sk_grid = {
        "hidden_layer_sizes": [tuple(h) for h in grid["hidden"]],
        "learning_rate_init": list(grid["lr"]),
        "alpha": list(grid["alpha"]),
    }
    t = cfg.train
    est = SkMLP(
        solver="adam",
        batch_size=t.batch_size,
        max_iter=t.epochs,
        tol=t.tol,
        n_iter_no_change=t.patience,
        random_state=0,
    )
    search = GridSearchCV(est, sk_grid, cv=PredefinedSplit(fold), n_jobs=n_jobs, refit=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    return time.perf_counter() - t0, float(search.best_score_), len(search.cv_results_["params"])


def mlpar_search(cfg, backend, n_jobs):
    t0 = time.perf_counter()
    result = sweep(
        MLPTrial(cfg.trial_base()),
        cfg.search_space(),
        backend=backend,
        n_jobs=n_jobs,
        blas_threads=1,
        random_state=cfg.sweep.random_state,
        progress=False,
    )
    wall = time.perf_counter() - t0
    rows = list(result)
    bad = [r for r in rows if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} mlpar trials did not end ok: {bad[0].error_message}")
    return wall, max(r.metrics["val_score"] for r in rows), len(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 5 epochs")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    args = ap.parse_args(argv)
    overrides = ["train.epochs=5"] if args.quick else []
    repeats = 1 if args.quick else args.repeats
    cfg = load_config(ROOT / "configs" / "digits_grid.yaml", overrides=overrides)
    d = cfg.data
    splits = make_splits(
        load_dataset(d.dataset, random_state=SPLIT_SEED),
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        random_state=SPLIT_SEED,
        dtype=cfg.model.dtype,
    )
    contenders = {
        "scikit-learn GridSearchCV n_jobs=1": lambda: sklearn_search(cfg, splits, 1),
        "scikit-learn GridSearchCV n_jobs=2": lambda: sklearn_search(cfg, splits, 2),
        "mlpar serial": lambda: mlpar_search(cfg, "serial", 1),
        "mlpar processes n_jobs=2": lambda: mlpar_search(cfg, "processes", 2),
        "mlpar forked n_jobs=2": lambda: mlpar_search(cfg, "forked", 2),
    }
    times = {k: [] for k in contenders}
    best = {}
    with threadpool_limits(1):  # 1 BLAS thread everywhere: cores go to parallel fits
        env = environment_info(["python", *sys.argv])
        mlpar_search(cfg, "serial", 1)  # warm up imports and caches
        for r in range(repeats):
            names = list(contenders)
            names = names[r % len(names) :] + names[: r % len(names)]  # interleave
            for name in names:
                wall, score, n = contenders[name]()
                times[name].append(wall)
                best[name] = score
                print(
                    f"repeat {r}: {name:<36} {wall:7.2f} s  best val acc {score:.4f} ({n} configs)",
                    flush=True,
                )
    ref = statistics.median(times["scikit-learn GridSearchCV n_jobs=2"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "contender": name,
                "median_s": med,
                "min_s": min(ts),
                "max_s": max(ts),
                "speedup_vs_gridsearchcv_2": ref / med,
                "best_val_accuracy": best[name],
            }
        )
    md = [
        "| contender | median s | min-max s | vs GridSearchCV n_jobs=2 | best val acc |",
        "| --- | --- | --- | --- | --- |",
    ]
    md += [
        f"| {r['contender']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | "
        f"{r['speedup_vs_gridsearchcv_2']:.2f}x | {r['best_val_accuracy']:.4f} |"
        for r in rows
    ]
    gap = max(
        abs(best[k] - best["scikit-learn GridSearchCV n_jobs=2"])
        for k in best
        if k.startswith("mlpar")
    )
    md += [
        "",
        f"{len(times)} contenders x {repeats} interleaved repeats, "
        f"{cfg.train.epochs} epochs. Best-accuracy gap: {gap * 100:.2f} points.",
        "",
        "```",
        format_environment(env),
        "```",
    ]
    text = "\n".join(md)
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_gridsearch_quick" if args.quick else "bench_gridsearch"
    (out / f"{stem}.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "times": times,
                "repeats": repeats,
                "epochs": cfg.train.epochs,
                "environment": env,
            },
            indent=2,
        )
        + "\n"
    )
    (out / f"{stem}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
