"""A comparison's numbers, from its run records alone: medians, speedups, best settings.

Pure functions of data (no sweeps run here), shared by ``mlpar compare`` and
the report, which rebuilds its tables from ``compare.json``.
"""

from __future__ import annotations

import math
import statistics

__all__ = ["summarize", "group_table", "group_label", "strict_json"]


def group_label(label):
    """A workload group's ``{param: value}`` as text (``"all trials"`` when empty)."""
    return ", ".join(f"{k}={v}" for k, v in label.items()) or "all trials"


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def _finite(x):
    return x if x is not None and math.isfinite(x) else -math.inf


def summarize(records, settings):
    """Per setting: medians over repeats, speedup, efficiency, utilization, overheads."""
    by = {}
    for r in records:
        key = (r["backend"], r["n_jobs"], r["blas_threads"], r.get("gil"), r.get("stack"))
        by.setdefault(key, []).append(r)
    base = by.get(("serial", 1, 1, None, None), [])
    base_wall = {r["repeat"]: r["wall_time"] for r in base}
    base_trial = _median([t for r in base for t in r["trial_wall"]])
    out = []
    for s in settings:
        runs = by.get(s.key, [])
        if not runs:
            continue
        walls = [r["wall_time"] for r in runs]
        # Ratios within one repeat: the interleaved pair saw the same machine load.
        ratios = [base_wall[r["repeat"]] / r["wall_time"] for r in runs if r["repeat"] in base_wall]
        cores = s.n_jobs * s.blas_threads
        cpu = [sum(c for c in r["trial_cpu"] if c) for r in runs]
        busy = []
        for r in runs:
            per_worker = {}
            for w, t in zip(r["workers"], r["trial_wall"]):
                per_worker[w] = per_worker.get(w, 0.0) + (t or 0.0)
            busy.append(max(per_worker.values(), default=0.0))
        speedup = _median(ratios)
        out.append(
            {
                "backend": s.backend,
                "n_jobs": s.n_jobs,
                "blas_threads": s.blas_threads,
                "gil": s.gil,
                "stack": getattr(s, "stack", None),
                "label": s.label,
                "repeats": len(runs),
                "wall": _median(walls),
                "wall_min": min(walls),
                "wall_max": max(walls),
                "speedup": speedup,
                "efficiency": speedup / cores,
                "utilization": _median([c / (w * cores) for c, w in zip(cpu, walls)]),
                "inflation": _median([t for r in runs for t in r["trial_wall"]]) / base_trial
                if base_trial == base_trial and base_trial > 0
                else float("nan"),
                # Wall time no worker spent in a trial: start-up, dispatch, transfer, tail.
                "overhead": _median([w - b for w, b in zip(walls, busy)]),
                "ok": min(r["n_ok"] for r in runs),
                "trials": runs[0]["n_trials"],
            }
        )
    return out


def group_table(doc):
    """One row per workload group: p, predicted and measured speedups, best backend."""
    cores = doc["cores"]
    out = []
    for g in doc["groups"]:
        rows = g["summary"]
        pick = {}
        for r in rows:
            if r["n_jobs"] == cores and r["blas_threads"] == 1:
                gil = r.get("gil")
                pick[r["backend"] if gil is None else f"threads GIL={gil}"] = r
        cal = g["calibration"]
        # On a free-threaded build with --gil, the GIL-on child is the GIL model's case.
        th = pick.get("threads") or pick.get("threads GIL=1", {})
        # The candidates advice chooses from: serial (with 1 or all BLAS
        # threads) and parallel backends with 2+ workers. Their n_jobs=1 runs
        # are the scaling curve's first point: serial work plus dispatch.
        options = [r for r in rows if r["backend"] == "serial" or r["n_jobs"] > 1]
        # A failed setting's speedup is None (NaN before strict JSON).
        best = max(options, key=lambda r: _finite(r.get("speedup"))) if options else {}
        pred = th.get("predicted")
        meas = th.get("speedup")
        band = th.get("predicted_band") or cal.get("predicted_2_band")
        # (backend, n_jobs, blas_threads[, stack]): older compare.json has no stack.
        adv = tuple((g.get("advice") or {}).get("setting") or ())
        adv_row = next(
            (
                r
                for r in rows
                if (r["backend"], r["n_jobs"], r["blas_threads"]) == adv[:3]
                and (len(adv) < 4 or r.get("stack") == adv[3])
            ),
            None,
        )
        out.append(
            {
                "group": group_label(g["group"]),
                "p": cal.get("p"),
                "p_check": cal.get("p_check"),
                "amdahl": th.get("amdahl"),
                "predicted": pred,
                "threads": meas,
                "band": list(band) if band and th.get("n_jobs") == 2 else None,
                "error": (pred - meas) / meas if pred and meas else None,
                "ratio": meas / pred if pred and meas else None,
                "no_gil": (cal.get("predictions") or {}).get("no_gil", {}).get(str(cores)),
                "processes": pick.get("processes", {}).get("speedup"),
                "best": best.get("label"),
                "threads_gil0": pick.get("threads GIL=0", {}).get("speedup"),
                "threads_gil1": pick.get("threads GIL=1", {}).get("speedup"),
                "advised": adv_row["label"] if adv_row else None,
                "advised_vs_best": adv_row["speedup"] / best["speedup"]
                if adv_row and best and adv_row.get("speedup") and best.get("speedup")
                else None,
                "undecided": bool((g.get("advice") or {}).get("undecided")),
            }
        )
    return out


def strict_json(obj):
    """``obj`` with every non-finite float as None and everything else JSON-ready.

    ``compare.json`` is read by any JSON parser, and strict ones reject bare
    ``NaN`` (a median over no runs, a failed setting's speedup).
    """
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float) or hasattr(obj, "__float__"):
        try:
            x = float(obj)
        except (TypeError, ValueError):
            return str(obj)
        if not math.isfinite(x):
            return None
        kind = getattr(getattr(obj, "dtype", None), "kind", "f")
        return bool(obj) if kind == "b" else int(obj) if kind in "iu" else x
    return str(obj)
