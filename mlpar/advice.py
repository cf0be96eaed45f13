"""``mlpar advise``: which backend, n_jobs and blas_threads pay for a workload.

A short serial calibration measures the workload's GIL-free fraction ``p``
(:mod:`mlpar.gilmodel`), the time of one trial and this machine's cost of
starting worker processes; from those it predicts every option's speedup over
serial and recommends the best.
"""

from __future__ import annotations

import dataclasses
import time

__all__ = [
    "advise", "Advice", "predict_options", "option_setting", "measure_process_startup",
    "trial_time_estimates",
]


@dataclasses.dataclass(frozen=True)
class Advice:
    """A recommendation with the predictions and measurements behind it."""

    backend: str
    n_jobs: int
    blas_threads: int
    predicted_speedup: float
    options: dict  # option label -> predicted speedup over serial, 1 BLAS thread
    calibration: dict
    explanation: str

    def format(self):
        lines = [f"recommended: backend={self.backend} n_jobs={self.n_jobs} "
                 f"blas_threads={self.blas_threads} (predicted {self.predicted_speedup:.2f}x "
                 f"over serial)", ""]
        lines += [f"  {label:<28} {s:.2f}x" for label, s in
                  sorted(self.options.items(), key=lambda kv: -kv[1])]
        lines += ["", self.explanation]
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)


def measure_process_startup(n_jobs, *, backend="processes"):
    """Seconds a processes sweep spends before its workers can train.

    Starts ``n_jobs`` workers of ``backend`` ("processes": fresh interpreters;
    "forked": copies of this process), each importing what an MLP trial needs
    (NumPy, scikit-learn, mlpar's engine and data), exactly as a real sweep's
    workers do, and times the whole sweep of those no-op trials.
    """
    from .sweep import sweep

    t0 = time.perf_counter()
    sweep(_import_trial, {"i": list(range(n_jobs))}, backend=backend, n_jobs=n_jobs,
          blas_threads=1, progress=False)
    return time.perf_counter() - t0


def measure_startups(n_jobs, backends):
    """Start-up seconds of each process-based backend among ``backends``."""
    return {b: measure_process_startup(n_jobs, backend=b)
            for b in ("processes", "forked") if b in backends}


def _import_trial(params, seed):
    import mlpar.trial  # noqa: F401  (the import is what is being timed)

    return {"ok": 1.0}


def option_setting(label, cores):
    """``(backend, n_jobs, blas_threads)`` of an option label of :func:`predict_options`."""
    if label.startswith("serial, blas"):
        return "serial", 1, cores
    if label == "serial":
        return "serial", 1, 1
    backend = label.split(",")[0]
    n_jobs = int(label.rsplit("=", 1)[1])
    return backend, n_jobs, 1


def predict_options(cal, *, cores, n_trials=None, trial_time=None, startup_s,
                    trial_times=None, backends=("serial", "threads", "processes")):
    """Predicted speedup over serial (1 BLAS thread) of each option for a sweep.

    ``cal`` is a :class:`mlpar.gilmodel.Calibration`. Give the estimated time
    of every trial (``trial_times``), or ``n_trials`` alike trials of
    ``trial_time`` seconds. Processes are bounded by the longest trial and pay
    their start-up: ``startup_s`` is a number (processes) or a dict per
    process backend ("processes", "forked"). Threads follow the GIL model,
    and idle when there are fewer trials than workers. Only ``backends`` are
    considered.
    """
    from .gilmodel import amdahl

    if trial_times is None:
        trial_times = [trial_time] * n_trials
    n_trials = len(trial_times)
    serial_total = sum(trial_times)
    longest = max(trial_times)
    opts = {}
    if cores > 1:
        # Measured when the calibration has it (see gilmodel.measure_blas_speedup):
        # small GEMMs do not gain from BLAS threads. Else Amdahl on the GEMMs.
        opts[f"serial, blas_threads={cores}"] = cal.get("blas_speedup") or amdahl(
            cal["p_gemm"], cores)
    startups = startup_s if isinstance(startup_s, dict) else {"processes": startup_s}
    for n in sorted({k for k in (2, cores) if 1 < k <= cores}):
        busy = min(n, n_trials)
        if "threads" in backends:
            # Fewer trials than workers: only `busy` threads contend, the rest idle.
            opts[f"threads, n_jobs={n}"] = min(cal.prediction(busy), busy) if busy > 1 else 1.0
        for backend, startup in startups.items():
            if backend in backends:
                wall = max(serial_total / n, longest) + startup
                opts[f"{backend}, n_jobs={n}"] = serial_total / wall
    opts["serial"] = 1.0
    return opts


def trial_time_estimates(cal, params_list, probe_params):
    """Seconds each trial should take serially, scaled from the calibrated one.

    A trial's training time is taken proportional to its weights x samples
    seen (epochs over the same data); data loading and scoring are added as
    measured. Rough, but it ranks a sweep of mixed sizes correctly.
    """
    ref = _weight(probe_params)
    ref_epochs = probe_params.get("epochs", 1)
    epoch = cal["epoch_time"]
    return [cal["overhead_time"] + epoch * p.get("epochs", ref_epochs)
            * (_weight(p) / max(1, p.get("epochs", 1))) / (ref / max(1, ref_epochs))
            for p in params_list]


def advise(config, *, n_cores=None, seed=0):
    """Recommend a backend, n_jobs and blas_threads for a config's sweep.

    Parameters
    ----------
    config : ExperimentConfig or path
        A loaded config, or the path of a YAML config.
    n_cores : int, optional
        Cores to plan for; default all of this machine's.
    seed : int, default=0

    Returns
    -------
    Advice
    """
    import joblib

    from .config import load_config
    from .gilmodel import calibrate, measure_blas_speedup
    from .space import expand_space

    if not hasattr(config, "search_space"):
        config = load_config(config)
    cores = n_cores or joblib.cpu_count()
    if cores < 1:
        raise ValueError(f"n_cores must be >= 1, got {cores}")
    trials = expand_space(config.search_space(), n_iter=config.sweep.n_iter,
                          seeds=config.sweep.seeds, random_state=config.sweep.random_state)
    # Calibrate on the heaviest configuration: it dominates the sweep's time.
    probe = max(trials, key=lambda t: _weight({**config.trial_base(), **t.params}))
    params = {**config.trial_base(), **probe.params}
    epochs = params.get("epochs", 1)
    cal = calibrate(params, seed=seed, epochs=min(2, epochs))
    if cores > 1:
        cal["blas_speedup"] = measure_blas_speedup(params, seed=seed, threads=cores,
                                                   epochs=min(2, epochs))
    times = trial_time_estimates(cal, [{**config.trial_base(), **t.params} for t in trials],
                                 params)
    from .backends import available_backends

    backends = [b for b in ("serial", "threads", "processes", "forked")
                if b in available_backends()]
    startups = measure_startups(min(cores, 2), backends) if cores > 1 else {}
    opts = predict_options(cal, cores=cores, trial_times=times, startup_s=startups,
                           backends=backends)
    best = max(opts, key=opts.get)
    backend, n_jobs, blas = option_setting(best, cores)
    if backend != "serial":
        blas = max(1, cores // n_jobs)
    why = (
        f"A serial calibration of the heaviest configuration ({_describe(probe.params)}) "
        f"spends p = {cal['p']:.2f} of each training step inside GIL-releasing kernels "
        f"({cal['python_time'] * 1e6:.0f} µs Python vs {cal['numeric_time'] * 1e6:.0f} µs "
        f"numeric per step), so {cores} threads can reach at most "
        f"{cal.prediction(cores, handoff_s=0.0):.2f}x by Amdahl's law and "
        f"{cal.prediction(cores):.2f}x once GIL hand-offs are counted; processes avoid the "
        f"GIL but pay {_startups_text(startups)} to start, against {len(trials)} trials "
        f"estimated at "
        f"{sum(times):.1f} s of serial work (the longest {max(times):.2f} s). "
        f"Best predicted: {best} at {opts[best]:.2f}x."
    )
    return Advice(backend=backend, n_jobs=n_jobs, blas_threads=blas,
                  predicted_speedup=opts[best], options=opts, calibration=dict(cal),
                  explanation=why)


def _startups_text(startups):
    return " or ".join(f"{s:.2f} s ({b})" for b, s in startups.items()) or "nothing"


def _weight(params):
    hidden = params.get("hidden") or [64]
    if "units" in params:
        hidden = [params["units"]] * int(params.get("layers") or len(hidden))
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [64] + hidden + [10]
    return sum(a * b for a, b in zip(sizes, sizes[1:])) * params.get("epochs", 1)


def _describe(params):
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "the base settings"
