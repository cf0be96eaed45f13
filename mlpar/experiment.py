"""A YAML experiment end to end: config -> sweep -> run folder, and its resume.

:func:`sweep_config` is the one place a config becomes a :func:`mlpar.sweep`
call; ``mlpar run``, ``mlpar resume`` and ``mlpar compare`` all go through it.
"""

from __future__ import annotations

from pathlib import Path

from .config import load_config
from .runs import CONFIG_FILE, JOURNAL_FILE, SUMMARY_FILE, check_run_dir, prepare_run
from .sweep import sweep
from .trial import MLPTrial

__all__ = ["sweep_config", "run_experiment", "resume_run"]


def sweep_config(config, *, space=None, journal=None, resume=False, progress=None,
                 **execution):
    """Run ``config``'s sweep (or ``space``, a part of it); returns the SweepResult.

    ``execution`` overrides the config's execution section (backend, n_jobs,
    blas_threads, timeout, retries, address); None values keep the config's.
    """
    ex, sw = config.execution, config.sweep
    opts = dict(backend=ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads,
                timeout=ex.timeout, retries=ex.retries, address=ex.address)
    opts.update({k: v for k, v in execution.items() if v is not None})
    if opts["backend"] != "dask":
        opts.pop("address")
    return sweep(
        MLPTrial(config.trial_base()), config.search_space() if space is None else space,
        n_iter=sw.n_iter, seeds=sw.seeds, random_state=sw.random_state, journal=journal,
        resume=resume, progress=progress, **opts,
    )


def run_experiment(config, *, run_dir=None, progress=None, argv=None):
    """Run a config's sweep into a (new) run folder.

    Returns
    -------
    (Path, SweepResult)
    """
    run_dir = prepare_run(config, run_dir, argv=argv)
    result = sweep_config(config, journal=run_dir / JOURNAL_FILE, progress=progress)
    result.to_csv(run_dir / SUMMARY_FILE)
    return run_dir, result


def resume_run(run_dir, *, progress=None):
    """Finish an interrupted run from its folder alone (config.yaml + journal).

    Returns
    -------
    (ExperimentConfig, SweepResult)
    """
    run_dir = check_run_dir(run_dir)
    config = load_config(Path(run_dir) / CONFIG_FILE)
    result = sweep_config(config, journal=run_dir / JOURNAL_FILE, resume=True,
                          progress=progress)
    result.to_csv(run_dir / SUMMARY_FILE)
    return config, result
