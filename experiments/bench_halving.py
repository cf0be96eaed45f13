"""Successive halving and ASHA (issue 14) against a full random search and scikit-learn.

On digits, a random space of widths, learning rates and L2 penalties, each
``random_state`` draws ``n_iter`` configurations and runs, interleaved:

1. ``full``: mlpar's random search, every configuration with ``max`` epochs;
2. ``sync``: successive halving over the same configurations (rungs of
   1, 3, 9, 27 epochs, factor 3), promoted trials continuing their checkpoint;
3. ``async``: ASHA over the same configurations;
4. ``sklearn``: ``HalvingRandomSearchCV(MLPClassifier, resource="max_iter")``
   with the same space, rungs and validation split (``PredefinedSplit`` on
   mlpar's own train/validation split), ``n_jobs`` workers.

It reports each search's best validation score, the epochs it trained (summed
over trials, as trained: early stopping counts), its wall time (the call, with
its worker start-up), and for sync and ASHA the workers' idle time inside the
search (``n_jobs x span - sum of trial wall times``). Medians over the
``random_state`` values; ratios are taken within each ``random_state``.

    python experiments/bench_halving.py                  # 27 and 81 configurations, 3 states
    python experiments/bench_halving.py --quick          # smoke test

Writes experiments/results/halving/bench_halving.{json,md}.
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
from scipy import stats
from threadpoolctl import threadpool_limits

import mlpar
from mlpar.config import resolve_trial_params
from mlpar.data import load_splits, prepare_splits
from mlpar.environment import environment_info, format_environment
from mlpar.trial import _split_options, train_mlp

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "halving"
WIDTHS = [16, 32, 64, 128, 256]
LR = (1e-4, 3e-2)
ALPHA = (1e-6, 1e-2)
BATCH = 64


def mlpar_space(widths=None, batch=None):
    return {
        "dataset": ["digits"],
        "hidden": [[w] for w in widths or WIDTHS],
        "lr": stats.loguniform(*LR),
        "alpha": stats.loguniform(*ALPHA),
        "batch_size": [batch or BATCH],
    }


def best_val(result, rows=None):
    rows = result if rows is None else rows
    return max(r.metrics["val_score"] for r in rows if r.status == "ok")


def trained_epochs(rows):
    return sum(r.metrics.get("epochs_trained", r.metrics.get("epochs", 0)) for r in rows)


def idle(rows, n_jobs):
    """Worker idle time inside the search: n_jobs x span minus the trials' wall time.

    This counts a worker's wait after its last trial too (the search's tail).
    """
    span = max(r.ended_at for r in rows) - min(r.started_at for r in rows)
    return n_jobs * span - sum(r.wall_time for r in rows), span


def gaps(rows):
    """The issue's measure: the sum over workers of the gaps between consecutive trials."""
    by_worker = {}
    for r in rows:
        by_worker.setdefault((r.pid, r.thread_id), []).append(r)
    total = 0.0
    for trials in by_worker.values():
        trials.sort(key=lambda r: r.started_at)
        total += sum(b.started_at - a.ended_at for a, b in zip(trials, trials[1:]))
    return total


def run_full(n_iter, rs, args):
    space = {**mlpar_space(), "epochs": [args.max]}
    t0 = time.perf_counter()
    result = mlpar.sweep(
        train_mlp, space, n_iter=n_iter, random_state=rs, backend=args.backend,
        n_jobs=args.n_jobs, blas_threads=1, progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    return {"best": best_val(result), "epochs": trained_epochs(result), "wall": wall,
            "trials": len(result)}  # fmt: skip


def run_halving(n_iter, rs, args, mode, *, widths=None, batch=None):
    t0 = time.perf_counter()
    result = mlpar.sweep(
        train_mlp,
        mlpar_space(widths, batch),
        n_iter=n_iter,
        random_state=rs,
        backend=args.backend,
        n_jobs=args.n_jobs,
        blas_threads=1,
        progress=False,
        halving=dict(min_resource=args.min, max_resource=args.max, factor=3, mode=mode),
    )
    wall = time.perf_counter() - t0
    h = result.halving
    waiting, span = idle(result.rows, args.n_jobs)
    top = h.rungs[-1].result.rows
    return {
        "best": best_val(result, top),
        "best_any_rung": best_val(result),
        "epochs": trained_epochs(result),
        "wall": wall,
        "trials": len(result),
        "rungs": [len(r.ranking) for r in h.rungs],
        "idle": waiting,
        "gaps": gaps(result.rows),
        "span": span,
    }


def sklearn_data():
    settings = resolve_trial_params({"dataset": "digits"})
    options = _split_options(settings)
    prepare_splits("digits", **options)
    s = load_splits("digits", **options)
    X = np.concatenate([s.X_train, s.X_val])
    y = np.concatenate([s.y_train, s.y_val])
    fold = np.r_[np.full(len(s.y_train), -1), np.zeros(len(s.y_val), dtype=int)]
    return X, y, fold


def run_sklearn(n_iter, rs, args, data):
    from joblib.externals.loky import get_reusable_executor
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, PredefinedSplit
    from sklearn.neural_network import MLPClassifier

    X, y, fold = data
    get_reusable_executor().shutdown(wait=True)  # every search starts its workers
    search = HalvingRandomSearchCV(
        MLPClassifier(batch_size=BATCH, random_state=rs),
        {
            "hidden_layer_sizes": [(w,) for w in WIDTHS],
            "learning_rate_init": stats.loguniform(*LR),
            "alpha": stats.loguniform(*ALPHA),
        },
        n_candidates=n_iter,
        resource="max_iter",
        min_resources=args.min,
        max_resources=args.max,
        factor=3,
        cv=PredefinedSplit(fold),
        refit=False,
        random_state=rs,
        n_jobs=args.n_jobs,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at every small max_iter
        search.fit(X, y)
    wall = time.perf_counter() - t0
    res = search.cv_results_
    epochs = int(sum(res["param_max_iter"] if "param_max_iter" in res else res["n_resources"]))
    top = res["iter"] == res["iter"].max()
    return {
        "best": float(np.max(res["mean_test_score"][top])),
        "best_any_rung": float(np.nanmax(res["mean_test_score"])),
        "epochs": epochs,
        "wall": wall,
        "trials": len(res["params"]),
        "rungs": [int(n) for n in search.n_candidates_],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-iter", type=int, nargs="+", default=[27, 81])
    ap.add_argument("--states", type=int, default=3, help="random_state values 0..K-1")
    ap.add_argument("--min", type=int, default=1)
    ap.add_argument("--max", type=int, default=27)
    ap.add_argument("--backend", default="forked")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--idle-n-iter", type=int, default=81)
    ap.add_argument("--idle-widths", type=int, nargs="+", default=[256, 1024, 2048])
    ap.add_argument("--idle-batch", type=int, default=32)
    ap.add_argument("--idle-repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_iter, args.states, args.max = [9], 1, 9
        args.idle_n_iter, args.idle_widths, args.idle_repeats = 9, [16, 64], 1
    env = environment_info()
    print(format_environment(env), flush=True)
    data = sklearn_data()
    runs = {"full": run_full, "sync": None, "async": None, "sklearn": None}
    out = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "env": env, "cases": []}
    with threadpool_limits(limits=1):  # the parent's own BLAS: trials set theirs
        for n_iter in args.n_iter:
            for rs in range(args.states):
                case = {"n_iter": n_iter, "random_state": rs}
                names = list(runs)
                names = names[rs % len(names) :] + names[: rs % len(names)]  # interleave
                for name in names:
                    if name == "full":
                        case[name] = run_full(n_iter, rs, args)
                    elif name == "sklearn":
                        case[name] = run_sklearn(n_iter, rs, args, data)
                    else:
                        case[name] = run_halving(n_iter, rs, args, name)
                    c = case[name]
                    print(
                        f"n_iter {n_iter} rs {rs} {name:7s} best {c['best']:.4f} "
                        f"epochs {c['epochs']:5d} wall {c['wall']:6.2f} s"
                        + (f" idle {c['idle']:.2f} s of {c['span']:.2f} s" if "idle" in c else ""),
                        flush=True,
                    )
                out["cases"].append(case)
    out["summary"] = summarize(out["cases"])
    out["idle"] = idle_section(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_halving.json").write_text(json.dumps(out, indent=2, default=str))
    md = markdown(out)
    (args.out / "bench_halving.md").write_text(md)
    print(md)
    return 0


def idle_section(args):
    """ASHA vs sync on longer, uneven trials: where the rung barrier, not dispatch, costs."""
    runs = []
    with threadpool_limits(limits=1):
        for rep in range(args.idle_repeats):
            for mode in ("sync", "async") if rep % 2 == 0 else ("async", "sync"):
                r = run_halving(
                    args.idle_n_iter, rep, args, mode, widths=args.idle_widths,
                    batch=args.idle_batch,
                )  # fmt: skip
                runs.append({"repeat": rep, "mode": mode, **r})
                print(
                    f"idle rs {rep} {mode:5s} gaps {r['gaps']:.3f} s, idle {r['idle']:.2f} s "
                    f"of span {r['span']:.2f} s "
                    f"x{args.n_jobs}, epochs {r['epochs']}, rungs {r['rungs']}",
                    flush=True,
                )

    def ratios(field):
        return [
            next(r for r in runs if r["repeat"] == rep and r["mode"] == "async")[field]
            / next(r for r in runs if r["repeat"] == rep and r["mode"] == "sync")[field]
            for rep in range(args.idle_repeats)
        ]

    gap_ratios, idle_ratios = ratios("gaps"), ratios("idle")
    return {
        "runs": runs,
        "gap_ratios": gap_ratios,
        "median_gap_ratio": statistics.median(gap_ratios),
        "ratios": idle_ratios,
        "median_ratio": statistics.median(idle_ratios),
    }


def _median(group, f):
    return statistics.median(f(c) for c in group)


def summarize(cases):
    rows = []
    for n_iter in sorted({c["n_iter"] for c in cases}):
        group = [c for c in cases if c["n_iter"] == n_iter]
        for name in ("sync", "async"):
            this = [{**c, "this": c[name]} for c in group]
            rows.append(
                {
                    "n_iter": n_iter,
                    "search": name,
                    "best_minus_full_points": _median(this, lambda c: 100 * (c["this"]["best"] - c["full"]["best"])),
                    "epochs_share": _median(this, lambda c: c["this"]["epochs"] / c["full"]["epochs"]),
                    "best_minus_sklearn_points": _median(this, lambda c: 100 * (c["this"]["best"] - c["sklearn"]["best"])),
                    "speedup_vs_sklearn": _median(this, lambda c: c["sklearn"]["wall"] / c["this"]["wall"]),
                    "speedup_vs_full": _median(this, lambda c: c["full"]["wall"] / c["this"]["wall"]),
                    "idle_s": _median(this, lambda c: c["this"]["idle"]),
                    "idle_vs_sync": _median(this, lambda c: c["this"]["idle"] / c["sync"]["idle"]),
                }
            )  # fmt: skip
    return rows


def markdown(out):
    s = out["settings"]
    lines = [
        "# bench_halving",
        "",
        "```",
        format_environment(out["env"]),
        "```",
        "",
        f"digits; widths {WIDTHS}, lr loguniform{LR}, alpha loguniform{ALPHA}, batch {BATCH}; "
        f"rungs {s['min']}..{s['max']} epochs, factor 3; backend {s['backend']} x{s['n_jobs']}, "
        f"1 BLAS thread per trial; random_state 0..{s['states'] - 1}, medians.",
        "",
        "| n_iter | search | best - full (points) | epochs vs full | best - sklearn (points) "
        "| sklearn wall / this | full wall / this | idle s | idle / sync's |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in out["summary"]:
        lines.append(
            f"| {r['n_iter']} | {r['search']} | {r['best_minus_full_points']:+.2f} "
            f"| {r['epochs_share']:.1%} | {r['best_minus_sklearn_points']:+.2f} "
            f"| {r['speedup_vs_sklearn']:.2f}x | {r['speedup_vs_full']:.2f}x "
            f"| {r['idle_s']:.2f} | {r['idle_vs_sync']:.2f} |"
        )
    idle = out.get("idle")
    if idle:
        lines += [
            "",
            f"ASHA vs sync, worker idle time inside the search ({s['idle_n_iter']} configurations, "
            f"widths {s['idle_widths']}, batch {s['idle_batch']}, {s['idle_repeats']} interleaved "
            f"repeats). Gaps: the sum over workers of the time between one trial's end and "
            f"the next one's start. Idle: n_jobs x (last end - first start) - sum of trial "
            f"wall times, which adds the waits at the search's end.",
            "",
            "| repeat | search | gaps s | idle s | span s | epochs | rungs (configurations) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in idle["runs"]:
            lines.append(
                f"| {r['repeat']} | {r['mode']} | {r['gaps']:.3f} | {r['idle']:.3f} "
                f"| {r['span']:.2f} | {r['epochs']} | {r['rungs']} |"
            )
        lines += [
            "",
            "ASHA gaps / sync gaps per repeat: "
            + ", ".join(f"{x:.2f}" for x in idle["gap_ratios"])
            + f"; median **{idle['median_gap_ratio']:.2f}**.",
            "ASHA idle / sync idle per repeat (with the end): "
            + ", ".join(f"{x:.2f}" for x in idle["ratios"])
            + f"; median **{idle['median_ratio']:.2f}**.",
        ]
    lines += ["", "Per case:", ""]
    lines.append("| n_iter | rs | search | best val | epochs | wall s | rungs | idle s |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in out["cases"]:
        for name in ("full", "sync", "async", "sklearn"):
            r = c[name]
            lines.append(
                f"| {c['n_iter']} | {c['random_state']} | {name} | {r['best']:.4f} | {r['epochs']} "
                f"| {r['wall']:.2f} | {r.get('rungs', '')} | {r.get('idle', float('nan')):.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
