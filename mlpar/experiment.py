"""A YAML experiment end to end: config -> sweep -> run folder, and its resume.

:func:`sweep_config` is the one place a config becomes a :func:`mlpar.sweep`
call; ``mlpar run``, ``mlpar resume`` and ``mlpar compare`` all go through it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .backends import prestart
from .config import load_config
from .runs import (
    CONFIG_FILE,
    JOURNAL_FILE,
    SUMMARY_FILE,
    check_can_create,
    check_run_dir,
    started_run,
)
from .sweep import sweep
from .trial import MLPTrial

__all__ = ["sweep_config", "run_experiment", "resume_run", "check_experiment"]


@contextmanager
def _scheduler(backend, address, timeout):
    """A client of the Dask scheduler at ``address`` (a str), else ``address`` as it is.

    Connected here with ``execution.connect_timeout``, so that a wrong address
    is one clear error in seconds, not Dask's traceback after 30 s.
    """
    if backend != "dask" or not isinstance(address, str):
        yield address
        return
    from .backends._dask import connect

    client = connect(address, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def check_experiment(config, *, run_dir=None, connect=True):
    """Check all that can be checked before a trial runs, creating nothing.

    The config itself is valid by construction; this checks what it names:
    that the backend exists and its optional dependency is installed, that a
    run folder can be created (``run_dir``, or a new one under
    ``output.folder``) and holds no run yet, and, with ``connect``, that the
    Dask scheduler of ``execution.address`` answers within
    ``execution.connect_timeout``.

    Raises
    ------
    ValueError, ImportError
        For an unknown backend, or one whose optional dependency is missing.
    NotADirectoryError, PermissionError
        If the run folder cannot be created or written.
    FileExistsError
        If ``run_dir`` already holds a run's journal.
    ConnectionError
        If the Dask scheduler cannot be reached.
    """
    from .backends import make_backend

    ex = config.execution
    make_backend(ex.backend, n_jobs=ex.n_jobs)
    check_can_create(run_dir if run_dir else Path(config.output.folder) / config.name)
    if run_dir and _has_journal(Path(run_dir)):
        raise FileExistsError(
            f"{run_dir} already holds a run ({JOURNAL_FILE}); finish it "
            f"with mlpar resume {run_dir}, or choose another run folder"
        )
    if connect:
        with _scheduler(ex.backend, ex.address, ex.connect_timeout):
            pass


def _has_journal(run_dir):
    journal = run_dir / JOURNAL_FILE
    return journal.is_file() and journal.stat().st_size > 0


def _has_trials(run_dir):
    """Whether any journal of the run folder has a trial row: then the run is worth resuming."""
    for journal in sorted(Path(run_dir).rglob("*.jsonl")):
        try:
            with open(journal, "rb") as f:
                if any(b'"type": "trial"' in line for line in f):
                    return True
        except OSError:
            continue
    return False


def sweep_config(config, *, space=None, journal=None, resume=False, progress=None, **execution):
    """Run ``config``'s sweep (or ``space``, a part of it); returns the SweepResult.

    ``execution`` overrides the config's execution section (backend, n_jobs,
    blas_threads, timeout, retries, address, stack); None values keep the config's.
    """
    ex, sw = config.execution, config.sweep
    opts = dict(
        backend=ex.backend,
        n_jobs=ex.n_jobs,
        blas_threads=ex.blas_threads,
        timeout=ex.timeout,
        retries=ex.retries,
        address=ex.address,
        stack=ex.stack,
    )
    opts.update({k: v for k, v in execution.items() if v is not None})
    address = opts.pop("address")
    with _scheduler(opts["backend"], address, ex.connect_timeout) as client:
        if opts["backend"] == "dask":
            opts["address"] = client
        space = config.search_space() if space is None else space
        return sweep(
            MLPTrial(config.trial_base()),
            space,
            n_iter=sw.n_iter if sw.sampler is None else sw.sampler.n_trials,
            sampler=_sampler(sw.sampler, space, opts),
            halving=None if sw.halving is None else sw.halving.to_yaml(),
            seeds=sw.seeds,
            random_state=sw.random_state,
            journal=journal,
            resume=resume,
            progress=progress,
            **opts,
        )


def _sampler(spec, space, opts):
    """The ``sampler=`` of :func:`sweep` for a ``sweep.sampler`` section (None without one)."""
    if spec is None:
        return None
    from .samplers import make_sampler

    parallel = opts["backend"] != "serial" and opts.get("n_jobs") != 1
    values = space.values() if isinstance(space, dict) else ()
    categorical = any(not hasattr(v, "rvs") for v in values)
    sampler = make_sampler(
        spec.name, seed=spec.seed, n_jobs=2 if parallel else 1, categorical=categorical
    )
    # The config checked that params hold distributions; its choices come as lists.
    return {
        "sampler": sampler,
        "metric": spec.metric,
        "mode": spec.direction,
        "lists_are_choices": True,
    }


def describe_search(config):
    """What ``mlpar validate`` says the config's sweep is: its kind and its size."""
    from .space import expand_space

    sw = config.sweep
    trials = expand_space(
        config.search_space(), n_iter=sw.n_iter, seeds=sw.seeds, random_state=sw.random_state
    )
    kind = "random search" if config.is_random_search else "grid"
    if sw.halving is None:
        return f"{kind}, {len(trials)} trials"
    from .halving import rung_resources

    h = sw.halving
    rungs = "/".join(map(str, rung_resources(h.min_resource, h.max_resource, h.factor)))
    schedule = "ASHA" if h.mode == "async" else "successive halving"
    return f"{kind} with {schedule}, {len(trials)} trials in rung 0, rungs of {rungs} {h.resource}"


def _write_summary(result, path):
    """summary.csv: with ``rung`` and ``resource`` columns for a halving run."""
    halving = getattr(result, "halving", None)
    (halving or result).to_csv(path)


def run_experiment(config, *, run_dir=None, progress=None, argv=None, on_start=None):
    """Run a config's sweep into a (new) run folder.

    Everything :func:`check_experiment` checks is checked before the folder
    is created, and a run that fails before its first trial lands in the
    journal (a backend that cannot start, data that cannot be prepared,
    Ctrl-C) leaves no folder behind. Once trials have landed, the folder
    stays, ready for :func:`resume_run`.

    Parameters
    ----------
    config : ExperimentConfig
    run_dir : path, default=None
        None: a new ``<output.folder>/<name>/<timestamp>`` folder.
    progress : bool or None, default=None
        The sweep's progress bar (None: when stderr is a terminal).
    argv : list of str, default=None
        Recorded in ``environment.json``.
    on_start : callable, default=None
        ``on_start(run_dir)``, once the folder exists and before the sweep starts.

    Returns
    -------
    (Path, SweepResult)
    """
    check_experiment(config, run_dir=run_dir, connect=False)
    ex = config.execution
    # The processes backend's fork server boots while this process prepares the run.
    prestart(ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads)
    # Connected before the folder exists: an unreachable scheduler leaves nothing.
    with (
        _scheduler(ex.backend, ex.address, ex.connect_timeout) as address,
        started_run(config, run_dir, argv=argv, keep=_has_trials) as run_dir,
    ):
        if on_start is not None:
            on_start(run_dir)
        result = sweep_config(
            config, journal=run_dir / JOURNAL_FILE, progress=progress, address=address
        )
        _write_summary(result, run_dir / SUMMARY_FILE)
    return run_dir, result


def resume_run(run_dir, *, progress=None):
    """Finish an interrupted run from its folder alone (config.yaml + journal).

    Returns
    -------
    (ExperimentConfig, SweepResult)
    """
    run_dir = check_run_dir(run_dir)
    config = load_config(Path(run_dir) / CONFIG_FILE)
    ex = config.execution
    prestart(ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads)
    result = sweep_config(config, journal=run_dir / JOURNAL_FILE, resume=True, progress=progress)
    _write_summary(result, run_dir / SUMMARY_FILE)
    return config, result
