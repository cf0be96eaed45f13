"""``mlpar compare``: the same sweep under several backends, and why one wins.

For each workload group (by default the whole sweep; with ``compare.group_by``
one group per value, e.g. per hidden width) every backend setting runs the
group's trials, repeated and interleaved. Beside the measured speedups stand
the serially measured GIL-free fraction ``p`` and the thread speedup it
predicts (see :mod:`mlpar.analysis.gilmodel`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from pathlib import Path

from ..environment import environment_info, gil_enabled
from ..experiment import sweep_config
from ..results import SweepResult
from ..runs import COMPARE_FILE, atomic_write, new_run_dir, prepare_run
from .summary import strict_json, summarize

__all__ = [
    "CompareSetting",
    "compare_settings",
    "compare_backends",
    "run_comparison",
    "split_groups",
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
    # None: the config's execution.stack (unstacked by default); K: sweep(stack=K).
    stack: int = None

    @property
    def key(self):
        return (self.backend, self.n_jobs, self.blas_threads, self.gil, self.stack)

    @property
    def label(self):
        tail = "" if self.gil is None else f" GIL={self.gil}"
        tail += "" if self.stack is None else f" stack{self.stack}"
        return f"{self.backend} x{self.n_jobs} blas{self.blas_threads}{tail}"

    @property
    def slug(self):
        tail = "" if self.gil is None else f"-gil{self.gil}"
        tail += "" if self.stack is None else f"-s{self.stack}"
        return f"{self.backend}-j{self.n_jobs}-b{self.blas_threads}{tail}"


def compare_settings(backends, n_jobs_list, *, cores, blas_axis=True, gil_modes=(), stacks=(1,)):
    """The settings a comparison runs, under one thread budget.

    The baseline is ``serial`` with 1 BLAS thread. Parallel backends run each
    ``n_jobs`` with 1 BLAS thread per worker, so the only difference between
    them is how trials are spread, not how many cores each GEMM uses. With
    ``blas_axis``, ``serial`` also runs with BLAS threads = cores: C-level
    parallelism inside each GEMM instead of trial-level parallelism. Each of
    ``gil_modes`` (0, 1) adds the threads settings run with ``PYTHON_GIL`` set
    to it, in child interpreters: one binary, the GIL switched off and on.
    Each stack size in ``stacks`` above 1 adds serial and every parallel
    setting (1 BLAS thread per worker) again, with ``sweep(stack=)`` set to it.
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
    unstacked = [s for s in settings if s.gil is None and s.blas_threads == 1]
    for k in (k for k in stacks if k > 1):
        settings += [dataclasses.replace(s, stack=int(k)) for s in unstacked]
    # dict.fromkeys keeps order and drops duplicates.
    return list(dict.fromkeys(settings))


def compare_backends(
    config,
    settings,
    *,
    repeats,
    run_dir,
    space=None,
    prefix="",
    progress=False,
    group_index=0,
    on_run=None,
):
    """Run the config's sweep (or ``space``) under every setting, interleaved.

    Repeat ``r`` runs the settings in an order rotated by ``r``, so slow drift
    of a shared machine spreads over all settings instead of biasing one.
    Every run's journal is kept under ``run_dir/compare/`` for the report.

    Returns
    -------
    list of dict
        One record per run: setting, repeat, wall time, per-trial wall and CPU
        times and the worker each trial ran on. ``on_run(record)``, when given,
        is called as each run ends.
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
            else:
                t0 = time.perf_counter()
                result = sweep_config(
                    config,
                    space=space,
                    journal=journal,
                    progress=progress,
                    backend=s.backend,
                    n_jobs=s.n_jobs,
                    blas_threads=s.blas_threads,
                    stack=s.stack,
                )
                wall = time.perf_counter() - t0
                rows = [row.to_dict() for row in result]
            records.append(_record(s, r, wall, rows, journal, run_dir))
            if on_run is not None:
                on_run(records[-1])
    return records


def _record(s, repeat, wall, rows, journal, run_dir):
    return {
        "backend": s.backend,
        "n_jobs": s.n_jobs,
        "blas_threads": s.blas_threads,
        "gil": s.gil,
        "stack": s.stack,
        "label": s.label,
        "repeat": repeat,
        "wall_time": wall,
        "n_trials": len(rows),
        "n_ok": sum(1 for row in rows if row["status"] == "ok"),
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

    env = {**os.environ, "PYTHON_GIL": str(setting.gil)}
    cmd = [
        sys.executable,
        "-m",
        "mlpar.analysis._gilchild",
        str(run_dir),
        str(group_index),
        str(setting.n_jobs),
        str(journal),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(
            f"the PYTHON_GIL={setting.gil} child failed: {tail[-1] if tail else proc.returncode}"
        )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["gil_enabled"] != bool(setting.gil):
        raise RuntimeError(
            f"PYTHON_GIL={setting.gil} did not take effect in the child "
            f"(GIL enabled: {out['gil_enabled']})"
        )
    return out["wall_time"], [row.to_dict() for row in SweepResult.from_journal(journal)]


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
                f"values in every grid of sweep.params"
            )
        for combo in itertools.product(*(grid[g] for g in group_by)):
            key = json.dumps(list(combo), default=str)
            sub = {**grid, **{g: [v] for g, v in zip(group_by, combo)}}
            groups.setdefault(key, (dict(zip(group_by, combo)), []))[1].append(sub)
    return [(label, subs if len(subs) > 1 else subs[0]) for label, subs in groups.values()]


def _gil_modes(option):
    """PYTHON_GIL values for ``--gil``; a clear error where the build can't do it."""
    if option is None:
        return ()
    from ..environment import free_threaded_build

    if not free_threaded_build():
        import platform

        raise ValueError(
            f"--gil {option} needs a free-threaded CPython (3.13t or later), where "
            f"PYTHON_GIL=0/1 switches the GIL off and on in one binary; this is CPython "
            f"{platform.python_version()} with the GIL. Build one with "
            f"`bash experiments/freethreaded/build.sh && bash experiments/freethreaded/env.sh` "
            f"and run ~/.cache/mlpar/cpython-3.13t/venv/bin/mlpar compare ... --gil {option}"
        )
    return {"on": (1,), "off": (0,), "both": (0, 1)}[option]


def run_comparison(
    config,
    *,
    backends=None,
    n_jobs=None,
    repeats=None,
    blas_axis=True,
    gil=None,
    run_dir=None,
    progress=None,
    argv=None,
    on_event=None,
):
    """Compare backends on a config's sweep: calibrate, run, summarize, save.

    Parameters
    ----------
    config : ExperimentConfig
    backends, n_jobs, repeats : optional
        Override the config's ``compare`` section.
    blas_axis : bool, default=True
        Also run serial with BLAS threads = cores.
    gil : {"on", "off", "both"} or None
        Free-threaded CPython only: threads in child interpreters with PYTHON_GIL set.
    run_dir : path, optional
        Where to write; default a new ``<name>/<timestamp>-compare`` folder.
    progress : bool or None
        Progress bars of the sweeps (None: when the output is a terminal).
    argv : list of str, optional
        Recorded in ``environment.json``.
    on_event : callable, optional
        ``on_event(kind, **data)`` as the comparison goes: ``"start"``, ``"group"``,
        ``"run"`` (each finished run), ``"group_done"``. The caller decides what to show.

    Returns
    -------
    (Path, dict)
        The run folder and the comparison document also saved as ``compare.json``.
    """
    from .advice import (
        best_option,
        calibrate_heaviest,
        measure_stack_gain,
        measure_startups,
        option_bands,
        option_setting,
        option_stack,
        predict_options,
        predict_stacked_options,
        trial_time_estimates,
        undecided_options,
    )
    from .gilmodel import measure_gil_machine

    def emit(kind, **data):
        if on_event is not None:
            on_event(kind, **data)

    cmp = config.compare
    backends = list(backends or cmp.backends)
    n_jobs = list(n_jobs or cmp.n_jobs)
    repeats = repeats or cmp.repeats
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    cores = environment_info()["joblib_cpu_count"]
    gil_modes = _gil_modes(gil)
    settings = compare_settings(
        backends,
        n_jobs,
        cores=cores,
        blas_axis=blas_axis,
        gil_modes=gil_modes,
        stacks=tuple(getattr(cmp, "stack", (1,)) or (1,)),
    )
    groups = split_groups(config.search_space(), list(getattr(cmp, "group_by", ()) or ()))
    run_dir = prepare_run(config, run_dir or new_run_dir(config, kind="compare"), argv=argv)
    emit(
        "start",
        settings=settings,
        repeats=repeats,
        n_groups=len(groups),
        cores=cores,
        run_dir=run_dir,
    )
    model_ok = gil_enabled()
    # Measured with or without a GIL: the kernels' contention matters to both.
    machine = measure_gil_machine()
    startups = measure_startups(min(cores, 2), backends) if cores > 1 else {}
    if "processes" in startups:  # once: the runs below reuse the fork server it started
        startups["processes"] = measure_startups(min(cores, 2), ["processes"])["processes"]
    results = []
    for gi, (label, sub) in enumerate(groups):
        trials, probe, cal = calibrate_heaviest(
            config, space=sub, cores=cores, machine=machine, gil=model_ok, check_gil=model_ok
        )
        params = {**config.trial_base(), **probe.params}
        emit("group", label=label, n_trials=len(trials))
        records = compare_backends(
            config,
            settings,
            repeats=repeats,
            run_dir=run_dir,
            progress=progress,
            space=sub,
            prefix=f"g{gi}-",
            group_index=gi,
            on_run=lambda record: emit("run", record=record),
        )
        rows = summarize(records, settings)
        # What `mlpar advise` would recommend for this workload from the serial
        # calibration alone, among the backends measured here, so it can be checked.
        times = trial_time_estimates(
            cal, [{**config.trial_base(), **t.params} for t in trials], params
        )
        opts = predict_options(
            cal,
            cores=cores,
            trial_times=times,
            startup_s=startups,
            backends=["serial", *backends, *(["threads"] if gil_modes else [])],
        )
        # The stacked settings measured are predicted too, from a short stacked
        # run of the probe's configuration, and can be the advised one.
        predicted = dict(opts)
        for k in sorted({s.stack for s in settings if s.stack}):
            # Keyed by the size timed: a group of 4 trials stacks 4, whatever k.
            size = min(k, len(trials))
            gains = cal.setdefault("stack_gain", {})
            gains[str(size)] = measure_stack_gain(params, size, seed=probe.seed)
            predicted.update(
                predict_stacked_options(
                    cal, k, cores=cores, trial_times=times, startup_s=startups, backends=backends
                )
            )
        _add_predictions(rows, cal, model_ok, predicted, cores)
        best = best_option(predicted)
        advised = [*option_setting(best, cores), option_stack(best)]
        bands = option_bands(cal, predicted, cores, len(times))
        advice = {"options": predicted, "setting": advised, "bands": bands}
        advice["undecided"] = list(undecided_options(predicted, bands))
        results.append(
            {
                "group": label,
                "calibration": dict(cal),
                "summary": rows,
                "runs": records,
                "advice": advice,
            }
        )
        emit("group_done", result=results[-1], model_ok=model_ok)
    doc = {
        "settings": [s.__dict__ for s in settings],
        "repeats": repeats,
        "cores": cores,
        "gil_enabled": model_ok,
        "gil_machine": machine,
        "process_startup_s": startups,
        "gil_modes": list(gil_modes),
        "groups": results,
    }
    doc = strict_json(doc)
    atomic_write(Path(run_dir) / COMPARE_FILE, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return run_dir, doc


def _add_predictions(rows, cal, model_ok, opts, cores):
    """Put the model's prediction, and measured / predicted, beside each measured row.

    Threads rows get the hand-off simulation (on a free-threaded build's GIL-off
    child, its no-GIL mode; a GIL-on child only Amdahl's ceiling, as this process
    could not measure GIL constants); the other settings what ``advise``
    predicts for them (:func:`~mlpar.analysis.advice.predict_options`, and
    :func:`~mlpar.analysis.advice.predict_stacked_options` for stacked ones).
    """
    for row in rows:
        backend, n, gil = row["backend"], row["n_jobs"], row.get("gil")
        pred = None
        if row.get("stack"):
            base = "serial" if backend == "serial" else f"{backend}, n_jobs={n}"
            pred = opts.get(f"{base}, stack={row['stack']}")
        elif backend == "threads":
            row["amdahl"] = amdahl_of(cal, n)
            if gil is None:
                pred = opts.get(f"threads, n_jobs={n}") or cal.prediction(n, gil=model_ok)
                if n == 2 and model_ok:
                    row["predicted_band"] = list(cal.get("predicted_2_band") or ())
            elif gil == 0:
                pred = cal.prediction(n, gil=False)
        elif backend == "serial":
            pred = 1.0 if row["blas_threads"] == 1 else opts.get(f"serial, blas_threads={cores}")
        elif n > 1:
            pred = opts.get(f"{backend}, n_jobs={n}")
        if pred is not None:
            row["predicted"] = pred
            speedup = row.get("speedup")
            if speedup is not None and speedup == speedup and pred > 0:
                row["measured_over_predicted"] = speedup / pred


def amdahl_of(cal, n):
    """Amdahl's ceiling for ``n`` threads on a calibration."""
    from .gilmodel import amdahl

    return amdahl(cal["p"], n)
