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
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .environment import environment_info

__all__ = [
    "atomic_write",
    "new_run_dir",
    "prepare_run",
    "check_run_dir",
    "check_can_create",
    "started_run",
    "CONFIG_FILE",
    "ENV_FILE",
    "JOURNAL_FILE",
    "SUMMARY_FILE",
    "COMPARE_FILE",
    "REPORT_FILE",
]

CONFIG_FILE, ENV_FILE, JOURNAL_FILE, SUMMARY_FILE = (
    "config.yaml",
    "environment.json",
    "results.jsonl",
    "summary.csv",
)
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


def check_can_create(path):
    """Raise, creating nothing, if a run folder cannot be made (or written) at ``path``.

    Raises
    ------
    NotADirectoryError
        If ``path`` or a folder above it is a file.
    PermissionError
        If the deepest existing folder on the way cannot be written.
    """
    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(
            f"cannot create the run folder {path}: {probe} is a file, not a folder"
        )
    try:
        # A file that is never linked into the folder where the OS allows it:
        # the check itself leaves nothing behind.
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise PermissionError(
            f"cannot create the run folder {path}: cannot write in {probe} ({reason})"
        ) from None


def _absent(path):
    """``path`` and the folders above it that do not exist yet, deepest first."""
    out = []
    path = Path(path)
    while not os.path.lexists(path) and path.parent != path:
        out.append(path)
        path = path.parent
    return out


@contextmanager
def started_run(config, run_dir=None, *, argv=None, kind="", keep=None):
    """Create a run folder (see :func:`prepare_run`), and take it back if the run fails early.

    If the body raises (a backend that cannot start, Ctrl-C before the first
    trial) and ``keep(run_dir)`` is false, everything this call created is
    removed: the folder and the empty folders above it that it made, or, in
    a folder that existed before, the files and folders that appeared in it.
    A run whose trials have started to land (``keep`` true) stays, resumable.

    Parameters
    ----------
    config : ExperimentConfig
    run_dir : path, default=None
        None: a new ``<output.folder>/<name>/<timestamp>`` folder.
    argv : list of str, default=None
        Recorded in ``environment.json``.
    kind : str, default=""
        Suffix of a new folder's name (``compare``).
    keep : callable, default=None
        ``keep(run_dir) -> bool``: whether a failed run has results worth keeping.

    Yields
    ------
    pathlib.Path
    """
    target = Path(run_dir) if run_dir else Path(config.output.folder) / config.name
    check_can_create(target)
    created = _absent(target)
    before = set(os.listdir(target)) if run_dir and not created else None
    run_dir = prepare_run(config, run_dir, argv=argv, kind=kind)
    if before is None and not run_dir.samefile(target):
        created.insert(0, run_dir)  # the new timestamped folder inside target
    try:
        yield run_dir
    except BaseException:
        if keep is None or not keep(run_dir):
            _take_back(run_dir, created, before)
        raise


def _take_back(run_dir, created, before):
    """Remove what :func:`started_run` created."""
    if before is not None:
        for name in set(os.listdir(run_dir)) - before:
            entry = run_dir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return
    for i, folder in enumerate(created):
        if i == 0:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            try:
                folder.rmdir()  # only if empty: another run may have started there
            except OSError:
                break
