"""Run folders, and the one atomic write every file of a run goes through.

A run folder ``<output.folder>/<name>/<timestamp>/`` holds everything needed to
understand and repeat a run: ``config.yaml`` (fully resolved, overrides
applied), ``environment.json``, ``results.jsonl`` (the journal) and
``summary.csv``; a comparison adds ``compare.json``, and ``mlpar report`` adds
``report.md`` and plots.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from .environment import environment_info

__all__ = [
    "atomic_write", "new_run_dir", "prepare_run", "check_run_dir",
    "CONFIG_FILE", "ENV_FILE", "JOURNAL_FILE", "SUMMARY_FILE", "COMPARE_FILE", "REPORT_FILE",
]

CONFIG_FILE, ENV_FILE, JOURNAL_FILE, SUMMARY_FILE = (
    "config.yaml", "environment.json", "results.jsonl", "summary.csv")
COMPARE_FILE, REPORT_FILE = "compare.json", "report.md"


def atomic_write(path, text, *, newline=None):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, even if the process dies: the
    old file stays whole until ``os.replace`` swaps the new one in.

    Parameters
    ----------
    path : str or path-like
    text : str
    newline : str or None, default=None
        Passed to ``open`` (the csv module wants ``""``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_run_dir(config, *, kind="") -> Path:
    """A new, empty run folder ``<folder>/<name>/<timestamp>[-kind][-N]``."""
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


def check_run_dir(run_dir, *, needs=(CONFIG_FILE,)) -> Path:
    """``run_dir`` as a Path, or FileNotFoundError saying why it is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    if not any((run_dir / name).is_file() for name in needs):
        raise FileNotFoundError(f"{run_dir}: not a run folder (no {' or '.join(needs)})")
    return run_dir
