"""The JSONL journal of a sweep: written as trials finish, read back to resume.

Every line is strict JSON (RFC 8259), which ``jq``, JavaScript and databases'
JSON loaders read. JSON has no NaN or infinity, so a non-finite float (a
diverged trial's loss, the default ``error_score``) is written as one of the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and read back as the
float. Only the values of ``metrics`` and ``params`` and the header's settings
are read that way: a metric or parameter whose value is one of those three
strings comes back as the float. Error messages and tracebacks are never
converted.

Version 1 journals (before mlpar wrote strict JSON) held bare ``NaN`` tokens;
they are still read, and resuming one rewrites it, atomically, as version 2.
"""

import datetime
import json
import math
import threading
import warnings
from pathlib import Path

from ..runs import atomic_write
from ._rows import TrialRow

__all__ = ["Journal", "read_journal", "JOURNAL_VERSION", "IDENTITY_FIELDS", "strict_json"]

#: 2: strict JSON, non-finite floats as strings. 1 (read, and upgraded on resume): bare NaN.
JOURNAL_VERSION = 2
READABLE_VERSIONS = (1, 2)

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# Header fields that define *which* sweep a journal belongs to; a journal
# may be resumed with another backend, n_jobs or timeout, never another one of these.
IDENTITY_FIELDS = ("fn", "trials", "random_state", "seeds", "n_iter", "halving")


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _encode(value):
    """``value`` with every non-finite float, at any depth, as its JSON-safe string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    """The inverse of :func:`_encode`: the three strings back to floats, at any depth."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def strict_json(record):
    """One journal line for ``record`` (a dict): strict JSON, non-finite floats as strings."""
    # allow_nan=False: a non-finite value that escaped _encode is a bug, not a line.
    return json.dumps(_encode(record), allow_nan=False)


def _decoded(record):
    """A record as read: metrics and params of a trial, or a header's settings, decoded."""
    if record.get("type") == "trial":
        return {**record, **{k: _decode(record[k]) for k in ("metrics", "params") if k in record}}
    return {k: _decode(v) for k, v in record.items()}


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
    header, rows, _, _ = _read(Path(path))
    return header, rows


def _read(path):
    """Return ``(header, rows, size of the intact prefix in bytes, records)``."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, good = [], 0
    for number, raw in enumerate(lines, start=1):
        is_last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        if number == len(lines) and raw == b"":
            break
        try:
            # json.loads reads the bare NaN of version 1 journals as well.
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
        records.append(_decoded(record))
        good += len(raw) + 1
    if not records or records[0].get("type") != "header":
        raise ValueError(f"{path} is not an mlpar journal: its first line is not a header record")
    header = records[0]
    if header.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}: journal version {header.get('version')!r} is not supported "
            f"(this mlpar reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
            f"it was written by a newer mlpar"
        )
    by_key = {}
    for record in records[1:]:
        if record.get("type") == "trial":
            if record.get("key") in by_key:
                warnings.warn(
                    f"{path}: trial {record['key']} appears twice; keeping the later row",
                    RuntimeWarning,
                    stacklevel=3,
                )
            by_key[record["key"]] = TrialRow.from_dict(record)
    return header, list(by_key.values()), good, records


class Journal:
    """The append-only JSONL record of a sweep, written as trials finish.

    The first line is a header (``{"type": "header", ...}``) with the sweep's
    identity; every other line is a :class:`TrialRow` with ``"type": "trial"``
    or a search's decision with ``"type": "event"`` (ASHA's promotions),
    written and flushed the moment its trial is final, from the sweep's own
    process only. A crash therefore loses at most the line being written,
    which :func:`read_journal` recognises as torn.

    Use :meth:`open`; instances are not created directly.
    """

    def __init__(self, path, file):
        self.path = path
        #: The ``{"type": "event"}`` records read when resuming (a search's
        #: decisions, see :meth:`event`), in journal order.
        self.events = []
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
            old, rows, good, records = _read(path)
            for name in IDENTITY_FIELDS:
                if old.get(name) != header.get(name):
                    raise ValueError(
                        f"journal {path} belongs to a different sweep: {name} is "
                        f"{old.get(name)!r} there but {header.get(name)!r} here; resume "
                        "with the original fn, space and seeds, or choose another journal path"
                    )
            if old.get("version") != JOURNAL_VERSION:
                # Rewritten whole before anything is appended, so that every
                # line of the journal is strict JSON of one version.
                records[0] = {**old, "version": JOURNAL_VERSION}
                text = "".join(strict_json(record) + "\n" for record in records)
                atomic_write(path, text)
                good = len(text.encode("utf-8"))
            file = open(path, "r+b")
            # Cut a torn last line so that appended rows start on a fresh line.
            file.truncate(good)
            file.seek(good)
            journal = cls(path, file)
            journal.events = [r for r in records[1:] if r.get("type") == "event"]
            return journal, rows
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(path, open(path, "wb"))
        journal._write(
            {"type": "header", "version": JOURNAL_VERSION, "created_at": _now_iso(), **header}
        )
        return journal, []

    def _write(self, record):
        line = (strict_json(record) + "\n").encode("utf-8")
        with self._lock:
            self._file.write(line)
            # Flushed to the OS at once: a killed sweep keeps every finished trial.
            self._file.flush()

    def append(self, row):
        """Write one final row and flush it."""
        self._write({"type": "trial", **row.to_dict()})

    def event(self, record):
        """Write one decision of the search (``{"type": "event", ...}``) and flush it.

        Readers of rows skip events; a resumed search gets them back in
        :attr:`events` and replays them instead of deciding again.
        """
        self._write({**record, "type": "event"})

    def close(self):
        """Close the file."""
        with self._lock:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
