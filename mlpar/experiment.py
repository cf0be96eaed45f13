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
    blas_threads, timeout, retries, address, stack); None values keep the config's.
    """
    ex, sw = config.execution, config.sweep
    opts = dict(backend=ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads,
                timeout=ex.timeout, retries=ex.retries, address=ex.address, stack=ex.stack)
    opts.update({k: v for k, v in execution.items() if v is not None})
    if opts["backend"] != "dask":
        opts.pop("address")
    if sw.halving is not None:
        return _halving(config, space=space, journal=journal, resume=resume, progress=progress,
                        **opts)
    return sweep(
        MLPTrial(config.trial_base()), config.search_space() if space is None else space,
        n_iter=sw.n_iter, seeds=sw.seeds, random_state=sw.random_state, journal=journal,
        resume=resume, progress=progress, **opts,
    )


def halving_dir(journal):
    """The folder of the rung journals of a halving run whose journal would be ``journal``."""
    journal = Path(journal)
    return journal.with_name(f"{journal.stem}.rungs")


def _halving(config, *, space, journal, resume, progress, **opts):
    """The halving branch of :func:`sweep_config`: every rung's rows as one SweepResult.

    Rows are re-indexed rung after rung (their params carry the resource); the
    :class:`~mlpar.halving.HalvingResult` is the ``halving`` attribute.
    """
    import dataclasses

    from .halving import successive_halving
    from .results import SweepResult

    sw, h = config.sweep, config.sweep.halving
    out = successive_halving(
        MLPTrial(config.trial_base()), config.search_space() if space is None else space,
        resource=h.resource, min_resource=h.min_resource, max_resource=h.max_resource,
        factor=h.factor, metric=h.metric, mode=h.direction, n_iter=sw.n_iter, seeds=sw.seeds,
        random_state=sw.random_state, resume=resume, progress=progress,
        journal_dir=None if journal is None else halving_dir(journal), **opts)
    rows, offset = [], 0
    for rung in out.rungs:
        rows.extend(dataclasses.replace(row, index=offset + row.index) for row in rung.result)
        offset += len(rung.result)
    last = out.rungs[-1].result
    used, full = out.budget()
    info = {**last.info, "halving": {**h.to_yaml(), "resources": out.resources,
                                     "budget_used": used, "budget_full": full}}
    result = SweepResult(rows, info=info,
                         wall_time=sum(r.result.wall_time or 0.0 for r in out.rungs))
    result.halving = out
    return result


def _write_summary(result, path):
    """summary.csv: with ``rung`` and ``resource`` columns for a halving run."""
    halving = getattr(result, "halving", None)
    (halving or result).to_csv(path)


def run_experiment(config, *, run_dir=None, progress=None, argv=None):
    """Run a config's sweep into a (new) run folder.

    Returns
    -------
    (Path, SweepResult)
    """
    run_dir = prepare_run(config, run_dir, argv=argv)
    result = sweep_config(config, journal=run_dir / JOURNAL_FILE, progress=progress)
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
    result = sweep_config(config, journal=run_dir / JOURNAL_FILE, resume=True,
                          progress=progress)
    _write_summary(result, run_dir / SUMMARY_FILE)
    return config, result
