"""YAML experiments end to end: run folders, runs, resumes and backend comparisons.

A run folder ``<output.folder>/<name>/<timestamp>/`` holds everything needed to
understand and repeat a run: ``config.yaml`` (fully resolved, overrides
applied), ``environment.json``, ``results.jsonl`` (the journal) and
``summary.csv``; ``mlpar report`` adds ``report.md`` and plots.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from .config import load_config
from .environment import environment_info
from .sweep import sweep
from .trial import MLPTrial

__all__ = [
    "atomic_write", "new_run_dir", "prepare_run", "run_experiment", "resume_run",
]

CONFIG_FILE, ENV_FILE, JOURNAL_FILE, SUMMARY_FILE = (
    "config.yaml", "environment.json", "results.jsonl", "summary.csv")
COMPARE_FILE = "compare.json"


def atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, even if the process dies.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run_dir(config, *, kind="") -> Path:
    """A new, empty run folder ``<folder>/<name>/<timestamp>[-N]``."""
    root = Path(config.output.folder) / config.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{kind}" if kind else "")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        candidate = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run folder under {root}")


def prepare_run(config, run_dir=None, *, argv=None, kind="") -> Path:
    """Create the run folder and write the resolved config and the environment."""
    run_dir = Path(run_dir) if run_dir else new_run_dir(config, kind=kind)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, config.to_yaml())
    atomic_write(run_dir / ENV_FILE, json.dumps(environment_info(argv), indent=2) + "\n")
    return run_dir


def _sweep_config(config, *, run_dir, resume, progress, **execution):
    ex = config.execution
    sw = config.sweep
    opts = dict(backend=ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads,
                timeout=ex.timeout, retries=ex.retries, address=ex.address)
    opts.update({k: v for k, v in execution.items() if v is not None})
    if opts["backend"] != "dask":
        opts.pop("address")
    journal = None if run_dir is None else Path(run_dir) / JOURNAL_FILE
    return sweep(
        MLPTrial(config.trial_base()), config.search_space(), n_iter=sw.n_iter,
        seeds=sw.seeds, random_state=sw.random_state, journal=journal, resume=resume,
        progress=progress, **opts,
    )


def run_experiment(config, *, run_dir=None, progress=None, argv=None):
    """Run a config's sweep into a (new) run folder.

    Returns
    -------
    (Path, SweepResult)
    """
    run_dir = prepare_run(config, run_dir, argv=argv)
    result = _sweep_config(config, run_dir=run_dir, resume=False, progress=progress)
    result.to_csv(run_dir / SUMMARY_FILE)
    return run_dir, result


def resume_run(run_dir, *, progress=None):
    """Finish an interrupted run from its folder alone (config.yaml + journal)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    config = load_config(cfg_path)
    result = _sweep_config(config, run_dir=run_dir, resume=True, progress=progress)
    result.to_csv(run_dir / SUMMARY_FILE)
    return config, result
