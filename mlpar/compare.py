"""``mlpar compare``: the same sweep under several backends, and why one wins.

For each workload group (by default the whole sweep; with ``compare.group_by``
one group per value, e.g. per hidden width) every backend setting runs the
group's trials, repeated and interleaved. Beside the measured speedups stand
the serially measured GIL-free fraction ``p`` and the thread speedup it
predicts (see :mod:`mlpar.gilmodel`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import time
from pathlib import Path

from .environment import environment_info, gil_enabled
from .experiment import COMPARE_FILE, atomic_write, new_run_dir, prepare_run
from .report import format_table
from .sweep import sweep
from .trial import MLPTrial

__all__ = [
    "CompareSetting", "compare_settings", "compare_backends", "run_comparison", "summarize",
    "comparison_report", "split_groups", "group_table",
]


@dataclasses.dataclass(frozen=True)
class CompareSetting:
    """One backend setting of a comparison: backend, workers, BLAS threads each."""

    backend: str
    n_jobs: int
    blas_threads: int
    # None: run in this interpreter. 0 or 1: run in a child interpreter with
    # PYTHON_GIL=0/1 (free-threaded CPython only; see `mlpar compare --gil`).
    gil: int = None

    @property
    def key(self):
        return (self.backend, self.n_jobs, self.blas_threads, self.gil)

    @property
    def label(self):
        tail = "" if self.gil is None else f" GIL={self.gil}"
        return f"{self.backend} x{self.n_jobs} blas{self.blas_threads}{tail}"

    @property
    def slug(self):
        tail = "" if self.gil is None else f"-gil{self.gil}"
        return f"{self.backend}-j{self.n_jobs}-b{self.blas_threads}{tail}"


def compare_settings(backends, n_jobs_list, *, cores, blas_axis=True, gil_modes=()):
    """The settings a comparison runs, under one thread budget.

    The baseline is ``serial`` with 1 BLAS thread. Parallel backends run each
    ``n_jobs`` with 1 BLAS thread per worker, so the only difference between
    them is how trials are spread, not how many cores each GEMM uses. With
    ``blas_axis``, ``serial`` also runs with BLAS threads = cores: C-level
    parallelism inside each GEMM instead of trial-level parallelism. Each of
    ``gil_modes`` (0, 1) adds the threads settings run with ``PYTHON_GIL`` set
    to it, in child interpreters: one binary, the GIL switched off and on.
    """
    settings = [CompareSetting("serial", 1, 1)]
    if blas_axis and cores > 1:
        settings.append(CompareSetting("serial", 1, cores))
    for backend in backends:
        # With a GIL axis the threads settings run in child interpreters below.
        if backend == "serial" or (backend == "threads" and gil_modes):
            continue
        for n in n_jobs_list:
            settings.append(CompareSetting(backend, cores if n == -1 else n, 1))
    for gil in gil_modes:
        for n in n_jobs_list:
            settings.append(CompareSetting("threads", cores if n == -1 else n, 1, gil=gil))
    # dict.fromkeys keeps order and drops duplicates.
    return list(dict.fromkeys(settings))


def compare_backends(config, settings, *, repeats, run_dir, space=None, prefix="",
                     progress=False, group_index=0):
    """Run the config's sweep (or ``space``) under every setting, interleaved.

    Repeat ``r`` runs the settings in an order rotated by ``r``, so slow drift
    of a shared machine spreads over all settings instead of biasing one.
    Every run's journal is kept under ``run_dir/compare/`` for the report.

    Returns
    -------
    list of dict
        One record per run: setting, repeat, wall time, per-trial wall and CPU
        times and the worker each trial ran on.
    """
    out = Path(run_dir) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    space = config.search_space() if space is None else space
    records = []
    for r in range(repeats):
        k = r % len(settings)
        for s in settings[k:] + settings[:k]:
            journal = out / f"{prefix}{s.slug}-r{r}.jsonl"
            journal.unlink(missing_ok=True)
            if s.gil is not None:
                wall, rows = _run_in_child(run_dir, group_index, s, journal)
                records.append(_record(s, r, wall, rows, journal, run_dir))
                continue
            t0 = time.perf_counter()
            result = sweep(
                MLPTrial(config.trial_base()), space, n_iter=config.sweep.n_iter,
                seeds=config.sweep.seeds, random_state=config.sweep.random_state,
                backend=s.backend, n_jobs=s.n_jobs, blas_threads=s.blas_threads,
                timeout=config.execution.timeout, retries=config.execution.retries,
                journal=journal, progress=progress,
                **({"address": config.execution.address} if s.backend == "dask" else {}),
            )
            wall = time.perf_counter() - t0
            records.append(_record(s, r, wall, [_as_dict(row) for row in result], journal,
                                   run_dir))
    return records


def _record(s, repeat, wall, rows, journal, run_dir):
    return {
        "backend": s.backend, "n_jobs": s.n_jobs, "blas_threads": s.blas_threads,
        "gil": s.gil, "label": s.label, "repeat": repeat, "wall_time": wall,
        "n_trials": len(rows), "n_ok": sum(1 for row in rows if row["status"] == "ok"),
        "trial_wall": [row.get("wall_time") for row in rows],
        "trial_cpu": [row.get("cpu_time") for row in rows],
        "workers": [f"{row.get('pid')}:{row.get('thread_id')}" for row in rows],
        "journal": str(Path(journal).relative_to(run_dir)),
    }


def _run_in_child(run_dir, group_index, setting, journal):
    """One threads sweep in a child interpreter with PYTHON_GIL set; (wall, rows)."""
    import os
    import subprocess
    import sys

    from .report import load_rows

    env = {**os.environ, "PYTHON_GIL": str(setting.gil)}
    cmd = [sys.executable, "-m", "mlpar._gilchild", str(run_dir), str(group_index),
           str(setting.n_jobs), str(journal)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"the PYTHON_GIL={setting.gil} child failed: "
                           f"{tail[-1] if tail else proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["gil_enabled"] != bool(setting.gil):
        raise RuntimeError(f"PYTHON_GIL={setting.gil} did not take effect in the child "
                           f"(GIL enabled: {out['gil_enabled']})")
    return out["wall_time"], load_rows(journal)


def _as_dict(row):
    from .report import _as_dict as as_dict

    return as_dict(row)


def split_groups(space, group_by):
    """Split a grid space into one sub-grid per combination of ``group_by`` values."""
    if not group_by:
        return [({}, space)]
    grids = space if isinstance(space, list) else [space]
    groups = {}
    for grid in grids:
        missing = [g for g in group_by if g not in grid]
        bad = [g for g in group_by if g in grid and not isinstance(grid[g], list)]
        if missing or bad:
            raise ValueError(
                f"compare.group_by: {', '.join(missing + bad)} must be swept as a list of "
                f"values in every grid of sweep.params")
        for combo in itertools.product(*(grid[g] for g in group_by)):
            key = json.dumps(list(combo), default=str)
            sub = {**grid, **{g: [v] for g, v in zip(group_by, combo)}}
            groups.setdefault(key, (dict(zip(group_by, combo)), []))[1].append(sub)
    return [(label, subs if len(subs) > 1 else subs[0]) for label, subs in groups.values()]


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def summarize(records, settings):
    """Per setting: medians over repeats, speedup, efficiency, utilization, overheads."""
    by = {}
    for r in records:
        by.setdefault((r["backend"], r["n_jobs"], r["blas_threads"], r.get("gil")),
                      []).append(r)
    base = by.get(("serial", 1, 1, None), [])
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
        out.append({
            "backend": s.backend, "n_jobs": s.n_jobs, "blas_threads": s.blas_threads,
            "gil": s.gil, "label": s.label, "repeats": len(runs),
            "wall": _median(walls), "wall_min": min(walls), "wall_max": max(walls),
            "speedup": speedup, "efficiency": speedup / cores,
            "utilization": _median([c / (w * cores) for c, w in zip(cpu, walls)]),
            "inflation": _median([t for r in runs for t in r["trial_wall"]]) / base_trial
            if base_trial == base_trial and base_trial > 0 else float("nan"),
            # Wall time no worker spent in a trial: start-up, dispatch, transfer, tail.
            "overhead": _median([w - b for w, b in zip(walls, busy)]),
            "ok": min(r["n_ok"] for r in runs), "trials": runs[0]["n_trials"],
        })
    return out


def _gil_modes(option):
    """PYTHON_GIL values for ``--gil``; a clear error where the build can't do it."""
    if option is None:
        return ()
    from .environment import free_threaded_build

    if not free_threaded_build():
        import platform

        raise ValueError(
            f"--gil {option} needs a free-threaded CPython (3.13t or later), where "
            f"PYTHON_GIL=0/1 switches the GIL off and on in one binary; this is CPython "
            f"{platform.python_version()} with the GIL. Build one with "
            f"`bash experiments/freethreaded/build.sh && bash experiments/freethreaded/env.sh` "
            f"and run ~/.cache/mlpar/cpython-3.13t/venv/bin/mlpar compare ... --gil {option}")
    return {"on": (1,), "off": (0,), "both": (0, 1)}[option]


def _group_label(label):
    return ", ".join(f"{k}={v}" for k, v in label.items()) or "all trials"


def run_comparison(config, args, argv):
    """The ``mlpar compare`` command."""
    from .advice import (
        _weight, measure_startups, option_setting, predict_options, trial_time_estimates,
    )
    from .gilmodel import (
        calibrate, measure_blas_speedup, measure_handoff_curve, py_spy_available,
        sample_trial_gil,
    )
    from .space import expand_space

    cmp = config.compare
    backends = args.backends or list(cmp.backends)
    n_jobs = args.n_jobs or list(cmp.n_jobs)
    repeats = args.repeats or cmp.repeats
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    cores = environment_info()["joblib_cpu_count"]
    gil_modes = _gil_modes(getattr(args, "gil", None))
    settings = compare_settings(backends, n_jobs, cores=cores, blas_axis=not args.no_blas_axis,
                                gil_modes=gil_modes)
    space = config.search_space()
    groups = split_groups(space, list(getattr(cmp, "group_by", ()) or ()))
    run_dir = prepare_run(config, args.run_dir or new_run_dir(config, kind="compare"),
                          argv=["mlpar", *argv])
    progress = False if args.no_progress else None
    print(f"comparing {len(settings)} settings x {repeats} repeats on {len(groups)} workload "
          f"group(s), {cores} cores; run folder: {run_dir}", flush=True)
    model_ok = gil_enabled()
    curve = measure_handoff_curve() if model_ok else ()
    startups = measure_startups(min(cores, 2), backends) if cores > 1 else {}
    results = []
    for gi, (label, sub) in enumerate(groups):
        trials = expand_space(sub, n_iter=config.sweep.n_iter, seeds=config.sweep.seeds,
                              random_state=config.sweep.random_state)
        print(f"\n[{_group_label(label)}] {len(trials)} trials per run", flush=True)
        # Calibrate on the heaviest configuration, as `mlpar advise` does: it
        # dominates the group's time.
        probe = max(trials, key=lambda t: _weight({**config.trial_base(), **t.params}))
        params = {**config.trial_base(), **probe.params}
        cal = calibrate(params, seed=probe.seed, curve=curve)
        if cores > 1:
            cal["blas_speedup"] = measure_blas_speedup(
                params, seed=probe.seed, threads=cores,
                epochs=max(1, cal["epochs"] // 4))
        if model_ok and py_spy_available():
            # Independent of the engine's instrumentation: a sampling profiler.
            check = sample_trial_gil(params, seed=probe.seed)
            cal["p_check"], cal["p_check_method"] = check["p"], check["method"]
        records = compare_backends(
            config, settings, repeats=repeats, run_dir=run_dir, progress=progress,
            space=sub, prefix=f"g{gi}-", group_index=gi)
        rows = summarize(records, settings)
        for row in rows:
            if row["backend"] == "threads" and model_ok and row.get("gil") is None:
                row["amdahl"] = cal.prediction(row["n_jobs"], handoff_s=0.0)
                row["predicted"] = cal.prediction(row["n_jobs"])
            elif row["backend"] == "threads" and row.get("gil") == 1:
                # The GIL is on in that child: Amdahl's ceiling applies. The
                # hand-off costs were not measurable here (no GIL in this process).
                row["amdahl"] = cal.prediction(row["n_jobs"], handoff_s=0.0)
        # What `mlpar advise` would recommend for this workload, from the
        # serial calibration alone, to set beside what was measured.
        times = trial_time_estimates(
            cal, [{**config.trial_base(), **t.params} for t in trials], params)
        # Advice among the backends this comparison measures, so it can be checked.
        opts = predict_options(cal, cores=cores, trial_times=times, startup_s=startups,
                               backends=["serial", *backends,
                                         *(["threads"] if gil_modes else [])])
        advised = option_setting(max(opts, key=opts.get), cores)
        results.append({"group": label, "calibration": dict(cal), "summary": rows,
                        "runs": records, "advice": {"options": opts, "setting": advised}})
        print(format_table(rows, _COLUMNS), flush=True)
        print(_explain(cal, rows, model_ok), flush=True)
    doc = {"settings": [s.__dict__ for s in settings], "repeats": repeats, "cores": cores,
           "gil_enabled": model_ok, "handoff_curve": [list(c) for c in curve],
           "process_startup_s": startups, "gil_modes": list(gil_modes),
           "groups": results}
    atomic_write(Path(run_dir) / COMPARE_FILE, json.dumps(doc, indent=2, default=str) + "\n")
    table = group_table(doc)
    if len(groups) > 1 or gil_modes:
        print("\n" + format_table(table, group_columns(doc)), flush=True)
    else:
        row = table[0]
        best = next(r for r in results[0]["summary"] if r["label"] == row["best"])
        print(f"\nfastest measured: {row['best']} ({best['speedup']:.2f}x over serial); "
              f"advised from the serial calibration: {row['advised']}", flush=True)
    from .report import write_report

    report = write_report(run_dir)
    print(f"\nreport: {report}", flush=True)
    return 0


_COLUMNS = [("label", "setting"), ("wall", "median wall s"), ("wall_min", "min"),
            ("wall_max", "max"), ("speedup", "speedup"), ("efficiency", "efficiency"),
            ("utilization", "CPU util"), ("inflation", "trial time x"),
            ("overhead", "overhead s"), ("predicted", "predicted"), ("ok", "ok")]

_GROUP_COLUMNS = [("group", "workload"), ("p", "p"), ("p_check", "p (py-spy)"), ("amdahl", "Amdahl threads"),
                  ("predicted", "predicted threads"), ("threads", "measured threads"),
                  ("error", "prediction error"), ("processes", "processes"),
                  ("best", "fastest measured"), ("advised", "advised"),
                  ("advised_vs_best", "advised / fastest")]


def group_columns(doc):
    """The per-workload table's columns: the GIL axis only when it was run."""
    cols = list(_GROUP_COLUMNS)
    if doc.get("gil_modes"):
        at = cols.index(("processes", "processes"))
        cols[at:at] = [("threads_gil0", "threads PYTHON_GIL=0"),
                       ("threads_gil1", "threads PYTHON_GIL=1")]
    return cols


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
        best = max(options, key=lambda r: r["speedup"]) if options else {}
        pred = th.get("predicted")
        meas = th.get("speedup")
        adv = tuple((g.get("advice") or {}).get("setting") or ())
        adv_row = next((r for r in rows
                        if (r["backend"], r["n_jobs"], r["blas_threads"]) == adv), None)
        out.append({
            "group": _group_label(g["group"]), "p": cal.get("p"), "p_check": cal.get("p_check"),
            "amdahl": th.get("amdahl"), "predicted": pred, "threads": meas,
            "error": (pred - meas) / meas if pred and meas else None,
            "processes": pick.get("processes", {}).get("speedup"),
            "best": best.get("label"),
            "threads_gil0": pick.get("threads GIL=0", {}).get("speedup"),
            "threads_gil1": pick.get("threads GIL=1", {}).get("speedup"),
            "advised": adv_row["label"] if adv_row else None,
            "advised_vs_best": adv_row["speedup"] / best["speedup"] if adv_row and best else None,
        })
    return out


def _explain(cal, rows, model_ok):
    if not model_ok:
        return ("GIL disabled (free-threaded build): threads run Python in parallel, "
                "so the GIL model does not apply; speedups above are measured only.")
    return (f"p = {cal['p']:.2f} of a serial training step runs without the GIL "
            f"(GEMMs alone {cal['p_gemm']:.2f}"
            + (f"; {cal['p_check_method']}: {cal['p_check']:.2f}" if "p_check" in cal else "")
            + f"); per step {cal['python_time'] * 1e6:.0f} µs "
            f"Python vs {cal['numeric_time'] * 1e6:.0f} µs numeric, "
            f"{cal['releases_per_step']:.0f} GIL releases. Amdahl's ceiling for 2 threads "
            f"{cal['amdahl_2']:.2f}x; with this machine's GIL hand-off cost "
            f"({cal['handoff_s'] * 1e6:.2f} µs per release at this workload's kernel durations) "
            f"{cal['predicted_2']:.2f}x.")


def comparison_report(run_dir, plt):
    """Markdown lines (and plots) of a comparison for ``report.md``."""
    doc = json.loads((Path(run_dir) / COMPARE_FILE).read_text())
    md = ["## Backend comparison", "",
          f"{doc['repeats']} interleaved repeats per setting, {doc['cores']} cores, "
          f"1 BLAS thread per worker unless stated; speedup = median over repeats of "
          f"serial wall / setting wall in the same repeat.", ""]
    for g in doc["groups"]:
        md += [f"### {_group_label(g['group'])}", "",
               format_table(g["summary"], _COLUMNS, markdown=True), "",
               _explain(g["calibration"], g["summary"], doc["gil_enabled"]), ""]
    if len(doc["groups"]) > 1 or doc.get("gil_modes"):
        md += ["### Per workload", "", format_table(group_table(doc), group_columns(doc),
                                                    markdown=True), ""]
    if plt is not None:
        from .compare_plots import plot_comparison

        for path in plot_comparison(doc, run_dir, plt):
            md += [f"![{path.stem}]({path.name})", ""]
    return md
