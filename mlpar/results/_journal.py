"""The JSONL journal of a sweep: written as trials finish, read back to resume."""

import datetime
import json
import threading
import warnings
from pathlib import Path

from ._rows import TrialRow

__all__ = ["Journal", "read_journal", "JOURNAL_VERSION", "IDENTITY_FIELDS"]

JOURNAL_VERSION = 1

# Header fields that define *which* sweep a journal belongs to; a journal
# may be resumed with another backend, n_jobs or timeout, never another one of these.
IDENTITY_FIELDS = ("fn", "trials", "random_state", "seeds", "n_iter")


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_journal(path):
    """Read a journal: its header and its rows.

    A torn last line (a write cut short by a crash or a kill) is ignored with
    a warning; a malformed line anywhere else is an error. When a key appears
    twice the later row wins.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    header : dict
    rows : list of TrialRow
        In journal order.
    """
    header, rows, _ = _read(Path(path))
    return header, rows


def _read(path):
    """Return ``(header, rows, size of the intact prefix in bytes)``."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, good = [], 0
    for number, raw in enumerate(lines, start=1):
        is_last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        if number == len(lines) and raw == b"":
            break
        try:
            record = json.loads(raw)
            complete = number < len(lines) and isinstance(record, dict)
        except ValueError:
            complete = False
        if not complete:
            if is_last:
                warnings.warn(
                    f"{path}:{number}: ignoring a torn last line (an interrupted "
                    "write); that trial will run again on resume",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            raise ValueError(f"{path}:{number}: not a JSON object; the journal is corrupt")
        records.append(record)
        good += len(raw) + 1
    if not records or records[0].get("type") != "header":
        raise ValueError(f"{path} is not an mlpar journal: its first line is not a header record")
    header = records[0]
    if header.get("version") != JOURNAL_VERSION:
        raise ValueError(
            f"{path}: journal version {header.get('version')!r} is not supported "
            f"(this mlpar reads version {JOURNAL_VERSION})"
        )
    by_key = {}
    for record in records[1:]:
        if record.get("type") == "trial":
            if record.get("key") in by_key:
                warnings.warn(f"{path}: trial {record['key']} appears twice; keeping the later row", RuntimeWarning, stacklevel=3)
            by_key[record["key"]] = TrialRow.from_dict(record)
    return header, list(by_key.values()), good


class Journal:
    """The append-only JSONL record of a sweep, written as trials finish.

    The first line is a header (``{"type": "header", ...}``) with the sweep's
    identity; every other line is a :class:`TrialRow` with ``"type": "trial"``,
    written and flushed the moment its trial is final, from the sweep's own
    process only. A crash therefore loses at most the line being written,
    which :func:`read_journal` recognises as torn.

    Use :meth:`open`; instances are not created directly.
    """

    def __init__(self, path, file):
        self.path = path
        self._file = file
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path, header, *, resume=False):
        """Create a journal, or reopen one to resume its sweep.

        Parameters
        ----------
        path : str or path-like
        header : dict
            The sweep's header; its :data:`IDENTITY_FIELDS` must match an
            existing journal's when resuming.
        resume : bool, default=False
            Reopen an existing journal and return its rows. Without it an
            existing, non-empty journal is an error: it is never overwritten.

        Returns
        -------
        journal : Journal
        rows : list of TrialRow
            The rows already recorded (empty for a new journal).
        """
        path = Path(path)
        if path.exists() and path.stat().st_size > 0:
            if not resume:
                raise FileExistsError(
                    f"journal {path} already exists; pass resume=True to finish "
                    "that sweep, or choose another journal path"
                )
            old, rows, good = _read(path)
            for name in IDENTITY_FIELDS:
                if old.get(name) != header.get(name):
                    raise ValueError(
                        f"journal {path} belongs to a different sweep: {name} is "
                        f"{old.get(name)!r} there but {header.get(name)!r} here; resume "
                        "with the original fn, space and seeds, or choose another journal path"
                    )
            file = open(path, "r+b")
            # Cut a torn last line so that appended rows start on a fresh line.
            file.truncate(good)
            file.seek(good)
            return cls(path, file), rows
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(path, open(path, "wb"))
        journal._write({"type": "header", "version": JOURNAL_VERSION, "created_at": _now_iso(), **header})
        return journal, []

    def _write(self, record):
        line = (json.dumps(record) + "\n").encode("utf-8")
        with self._lock:
            self._file.write(line)
            # Flushed to the OS at once: a killed sweep keeps every finished trial.
            self._file.flush()

    def append(self, row):
        """Write one final row and flush it."""
        self._write({"type": "trial", **row.to_dict()})

    def close(self):
        """Close the file."""
        with self._lock:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
