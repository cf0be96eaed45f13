"""``mlpar advise``: which backend, n_jobs and blas_threads pay for a workload.

A short serial calibration measures the workload's GIL-free fraction ``p``
(:mod:`mlpar.analysis.gilmodel`), the time of one trial and this machine's cost of
starting worker processes; from those it predicts every option's speedup over
serial and recommends the best.
"""

from __future__ import annotations

import dataclasses

from ._draws import mix_calibrations, trial_time_estimates, workload_weight
from ._stacking import measure_stack_gain, stacked_calibration, stacked_speedup
from ._startup import measure_process_startup, measure_startups

__all__ = [
    "advise",
    "Advice",
    "predict_options",
    "option_setting",
    "option_stack",
    "best_option",
    "predict_stacked_options",
    "stacked_speedup",
    "measure_stack_gain",
    "measure_process_startup",
    "trial_time_estimates",
    "calibrate_heaviest",
    "workload_weight",
]

# Epochs of the calibration runs: enough minibatch steps for a stable mix of
# Python and numeric time, few enough that advise stays a few seconds.
CALIBRATION_EPOCHS = 10
# A sweep of mixed shapes (random widths, batch sizes) is calibrated on up to
# this many draws, one per equal share of its time.
MIX_DRAWS = 3
# The largest stack advise considers: sweep(stack="auto")'s own limit.
ADVISE_STACK = 16
# How much faster forked must be predicted than processes to be advised.
FORKED_MARGIN = 1.05


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
    bands: dict = dataclasses.field(default_factory=dict)  # label -> [low, high]
    # Options whose band reaches the recommended one's: too close to call.
    undecided: tuple = ()
    # sweep(stack=) / execution.stack: None, unstacked.
    stack: int = None

    def format(self):
        stack = f" stack={self.stack}" if self.stack else ""
        lines = [
            f"recommended: backend={self.backend} n_jobs={self.n_jobs} "
            f"blas_threads={self.blas_threads}{stack} (predicted {self.predicted_speedup:.2f}x "
            f"over serial)",
            "",
        ]
        width = max([28, *(len(label) for label in self.options)])
        for label, s in sorted(self.options.items(), key=lambda kv: -kv[1]):
            lo, hi = self.bands.get(label, (s, s))
            band = f"  (band {lo:.2f}-{hi:.2f}x)" if hi - lo > 0.005 else ""
            lines.append(f"  {label:<{width}} {s:.2f}x{band}")
        lines += ["", self.explanation]
        if self.undecided:
            lines += ["", undecided_text(self.options, self.bands, self.undecided)]
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)


def option_stack(label):
    """The stack size of an option label (``..., stack=K``), or None."""
    _, sep, k = label.rpartition(", stack=")
    return int(k) if sep else None


def option_setting(label, cores):
    """``(backend, n_jobs, blas_threads)`` of an option label of :func:`predict_options`."""
    label = label.split(", stack=")[0]
    if label.startswith("serial, blas"):
        return "serial", 1, cores
    if label == "serial":
        return "serial", 1, 1
    backend = label.split(",")[0]
    n_jobs = int(label.rsplit("=", 1)[1])
    return backend, n_jobs, 1


def predict_options(
    cal,
    *,
    cores,
    n_trials=None,
    trial_time=None,
    startup_s,
    trial_times=None,
    backends=("serial", "threads", "processes"),
):
    """Predicted speedup over serial (1 BLAS thread) of each option for a sweep.

    ``cal`` is a :class:`mlpar.analysis.gilmodel.Calibration`. Give the estimated time
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
            cal["p_gemm"], cores
        )
    startups = startup_s if isinstance(startup_s, dict) else {"processes": startup_s}
    for n in sorted({k for k in (2, cores) if 1 < k <= cores}):
        busy = min(n, n_trials)
        if "threads" in backends:
            # Fewer trials than workers: only `busy` threads contend, the rest idle.
            opts[f"threads, n_jobs={n}"] = min(cal.prediction(busy), busy) if busy > 1 else 1.0
        # Processes share no GIL, but their kernels still contend (memory,
        # caches): each trial runs busy / no_gil(busy) times longer.
        slower = busy / cal.prediction(busy, gil=False) if busy > 1 else 1.0
        for backend, startup in startups.items():
            if backend in backends:
                wall = max(serial_total / n, longest) * slower + startup
                opts[f"{backend}, n_jobs={n}"] = serial_total / wall
    opts["serial"] = 1.0
    return opts


def predict_stacked_options(cal, k, *, cores, trial_times, startup_s, backends):
    """:func:`predict_options` for the sweep run in stacks of up to ``k`` trials.

    Labels end in ``, stack=k``. The trials are taken as compatible, stacked in
    order: a task of ``j`` trials runs :func:`stacked_speedup` ``(cal, j)`` faster
    than they would one by one. Threads and processes' contention follow the
    model of a stacked step (:func:`~mlpar.analysis._stacking.stacked_calibration`):
    the same Python segments around kernels that do the stack's work.
    """
    tasks = [
        sum(trial_times[i : i + k]) / stacked_speedup(cal, len(trial_times[i : i + k]))
        for i in range(0, len(trial_times), k)
    ]
    gain = sum(trial_times) / sum(tasks)
    opts = predict_options(
        stacked_calibration(cal, min(k, len(trial_times))),
        cores=cores,
        trial_times=tasks,
        startup_s=startup_s,
        backends=backends,
    )
    opts.pop(f"serial, blas_threads={cores}", None)
    return {f"{label}, stack={k}": speedup * gain for label, speedup in opts.items()}


def option_bands(cal, opts, cores, n_trials):
    """``{label: [low, high]}``: each option's prediction over the calibration's band.

    Unstacked threads options carry the band of the machine probe's rounds
    (:func:`mlpar.analysis.gilmodel.prediction_band`); the others, stacked
    threads included (their step is not the calibrated one), are points.
    """
    from .gilmodel import prediction_band

    bands = {}
    for label, s in opts.items():
        bands[label] = [s, s]
        if label.startswith("threads, n_jobs=") and option_stack(label) is None:
            busy = min(int(label.rsplit("=", 1)[1]), n_trials)
            if busy > 1:
                band = cal.get("predicted_2_band") if busy == 2 else None
                lo, hi = band or prediction_band(cal, busy)
                bands[label] = [min(lo, busy), min(hi, busy)]
    return bands


def best_option(opts):
    """The option to advise: the fastest predicted, but ``processes`` over a close ``forked``.

    The model tells the two apart only by their start-up, so forked is
    advised only where that start-up gains more than :data:`FORKED_MARGIN`:
    ``processes`` is the default, safe with any library (see
    :class:`~mlpar.backends._process.ForkProcessBackend`), and forked workers' trials
    measured 3-17% slower in 18 of 20 width-scan groups.
    """
    best = max(opts, key=opts.get)
    if best.startswith("forked"):
        twin = "processes" + best[len("forked") :]
        if twin in opts and opts[best] < FORKED_MARGIN * opts[twin]:
            return twin
    return best


def undecided_options(opts, bands):
    """The options whose band reaches the best one's low end: too close to call."""
    best = best_option(opts)
    low = bands.get(best, (opts[best],))[0]
    return tuple(
        label
        for label in sorted(opts, key=lambda k: -opts[k])
        if label != best and bands.get(label, (0, opts[label]))[1] >= low
    )


def undecided_text(opts, bands, undecided):
    """The sentence ``advise`` adds when the band is too wide to decide."""
    best = best_option(opts)

    def text(label):
        lo, hi = bands.get(label, (opts[label], opts[label]))
        return f"{label} ({lo:.2f}-{hi:.2f}x)" if hi > lo else f"{label} ({opts[label]:.2f}x)"

    return (
        f"Too close to decide on this calibration: {text(best)} against "
        f"{', '.join(text(u) for u in undecided)}; the band is the range over the machine "
        f"probe's interleaved rounds, so a noisy machine widens it. Measure them with "
        f"`mlpar compare`, or advise again on a quieter machine."
    )


def calibrate_heaviest(
    config, *, space=None, cores, seed=None, machine=None, gil=True, check_gil=False
):
    """Calibrate the GIL model on the heaviest configuration of a sweep, and its mix.

    The heaviest configuration (weights x epochs) dominates a sweep's time, so
    its decomposition is the one that decides between backends. ``mlpar advise``
    and ``mlpar compare`` both calibrate through here. Where the sweep's
    trials differ in shape, up to :data:`MIX_DRAWS` draws, one per equal share
    of its time, are calibrated too, and the threads predictions are their
    time-weighted harmonic mean (:func:`~mlpar.analysis.gilmodel.mix_draws`).

    Parameters
    ----------
    config : ExperimentConfig
    space : dict or list of dict, optional
        Part of the config's space (a compare workload group); default all of it.
    cores : int
        With more than one, the speedup of ``cores`` BLAS threads is measured too.
    seed : int, optional
        Default: the heaviest trial's own seed.
    machine : dict, optional
        This machine's GIL constants (see :func:`mlpar.analysis.gilmodel.calibrate`).
    gil : bool, default=True
        Whether threads here contend for a GIL.
    check_gil : bool, default=False
        Cross-check ``p`` with a sampling profiler when py-spy is installed.

    Returns
    -------
    (list of Trial, Trial, Calibration)
        The expanded trials, the heaviest one and its calibration.
    """
    from ..space import expand_space
    from .gilmodel import calibrate, measure_blas_speedup, py_spy_available, sample_trial_gil

    base = config.trial_base()
    trials = expand_space(
        config.search_space() if space is None else space,
        n_iter=config.sweep.n_iter,
        seeds=config.sweep.seeds,
        random_state=config.sweep.random_state,
    )
    probe = max(trials, key=lambda t: workload_weight({**base, **t.params}))
    params = {**base, **probe.params}
    seed = probe.seed if seed is None else seed
    epochs = min(CALIBRATION_EPOCHS, params.get("epochs", CALIBRATION_EPOCHS))
    cal = calibrate(params, seed=seed, epochs=epochs, machine=machine, gil=gil)
    if cores > 1:
        cal["blas_speedup"] = measure_blas_speedup(
            params, seed=seed, threads=cores, epochs=max(1, epochs // 4)
        )
    if check_gil and py_spy_available():
        # Independent of the engine's instrumentation: a sampling profiler.
        check = sample_trial_gil(params, seed=seed)
        cal["p_check"], cal["p_check_method"] = check["p"], check["method"]
    # The same machine constants for every draw (False: none were measured).
    same = cal.get("gil_machine") or (machine if machine is not None else False)

    def calibrate_one(trial):
        p = {**base, **trial.params}
        n = min(CALIBRATION_EPOCHS, p.get("epochs", CALIBRATION_EPOCHS))
        return calibrate(p, seed=trial.seed, epochs=n, machine=same, gil=gil)

    cal = mix_calibrations(cal, probe, trials, base, calibrate_one=calibrate_one, draws=MIX_DRAWS)
    return trials, probe, cal


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

    from ..backends import available_backends
    from ..config import load_config
    from .gilmodel import amdahl

    if not hasattr(config, "search_space"):
        config = load_config(config)
    cores = n_cores or joblib.cpu_count()
    if cores < 1:
        raise ValueError(f"n_cores must be >= 1, got {cores}")
    trials, probe, cal = calibrate_heaviest(config, cores=cores, seed=seed)
    params = {**config.trial_base(), **probe.params}
    times = trial_time_estimates(cal, [{**config.trial_base(), **t.params} for t in trials], params)
    backends = [
        b for b in ("serial", "threads", "processes", "forked") if b in available_backends()
    ]
    startups = measure_startups(min(cores, 2), backends) if cores > 1 else {}
    opts = predict_options(
        cal, cores=cores, trial_times=times, startup_s=startups, backends=backends
    )
    stacking = _stack_options(config, trials, probe, cal, cores, times, startups, backends)
    opts.update(stacking)
    best = best_option(opts)
    bands = option_bands(cal, opts, cores, len(times))
    backend, n_jobs, blas = option_setting(best, cores)
    if backend != "serial":
        blas = max(1, cores // n_jobs)
    m = cal.get("gil_machine") or {}
    why = (
        f"A serial calibration of the heaviest configuration ({_describe(probe.params)}) "
        f"spends p = {cal['p']:.2f} of each training step inside GIL-releasing kernels "
        f"({cal['python_time'] * 1e6:.0f} µs Python vs {cal['numeric_time'] * 1e6:.0f} µs "
        f"numeric per step, {cal['releases_per_step']:.0f} releases), so {cores} threads "
        f"can reach at most {amdahl(cal['p'], cores):.2f}x by Amdahl's law; simulating "
        f"their hand-offs of the GIL with this machine's wake-up latency "
        f"({m.get('wake_s', 0.0) * 1e6:.0f} µs) and release cost "
        f"({m.get('release_cost_s', 0.0) * 1e6:.2f} µs) predicts "
        + (
            f"{cal.prediction(cores):.2f}x (mixed over {len(cal['draws'])} calibrated draws "
            "by their share of the sweep's time); "
            if cal.get("draws")
            else f"{cal.prediction(cores):.2f}x; "
        )
        + f"processes avoid the "
        f"GIL but pay {_startups_text(startups)} to start, against {len(trials)} trials "
        f"estimated at "
        f"{sum(times):.1f} s of serial work (the longest {max(times):.2f} s). "
        + (
            f"Stacking {next(iter(cal['stack_gain']))} trials measured "
            f"{next(iter(cal['stack_gain'].values())):.2f}x faster serially than one by one. "
            if stacking
            else ""
        )
        + f"Best predicted: {best} at {opts[best]:.2f}x."
    )
    return Advice(
        backend=backend,
        n_jobs=n_jobs,
        blas_threads=blas,
        predicted_speedup=opts[best],
        options=opts,
        calibration=dict(cal),
        explanation=why,
        bands=bands,
        undecided=undecided_options(opts, bands),
        stack=option_stack(best),
    )


def _stack_options(config, trials, probe, cal, cores, times, startups, backends):
    """The stacked options of a sweep whose trials can all share one stack, measured.

    Up to :data:`ADVISE_STACK` trials like the probe are timed stacked and one
    by one (:func:`measure_stack_gain`); ``{}`` when the trials cannot stack
    together, when the calibrated step is so numeric that no stack can gain 5%
    (its ceiling is ``1 + P / N``: nothing is timed then), or when stacking
    measured no faster.
    """
    from ..trial import stack_key

    base = config.trial_base()
    keys = {stack_key({**base, **t.params}) for t in trials}
    k = min(ADVISE_STACK, len(trials))
    ceiling = 1 + cal["python_time"] / max(cal["numeric_time"], 1e-12)
    if k < 2 or len(keys) != 1 or None in keys or ceiling < 1.05:
        return {}
    gain = measure_stack_gain({**base, **probe.params}, k, seed=probe.seed)
    if gain <= 1.0:
        return {}
    cal["stack_gain"] = {str(k): gain}
    return predict_stacked_options(
        cal, k, cores=cores, trial_times=times, startup_s=startups, backends=backends
    )


def _startups_text(startups):
    return " or ".join(f"{s:.2f} s ({b})" for b, s in startups.items()) or "nothing"


def _describe(params):
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "the base settings"
