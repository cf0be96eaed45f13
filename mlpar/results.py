"""Results of a sweep: one row per trial, the JSONL journal, summaries and export."""

import csv
import dataclasses
import datetime
import json
import math
import numbers
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .space import canonical_json

__all__ = ["TrialRow", "SweepResult", "Journal", "read_journal", "STATUSES"]

#: Every trial ends in one of these. Only ``ok`` rows feed the summary's means.
STATUSES = ("ok", "failed", "diverged", "timeout", "crashed")

JOURNAL_VERSION = 1

# Header fields that define *which* sweep a journal belongs to; a journal
# may be resumed with another backend, n_jobs or timeout, never another one of these.
IDENTITY_FIELDS = ("fn", "trials", "random_state", "seeds", "n_iter")


@dataclass
class TrialRow:
    """The record of one finished trial, as written to the journal.

    Attributes
    ----------
    key, index, params, repeat, seed
        The trial: stable key, position in the expanded space, configuration,
        repeat index and seed.
    status : {'ok', 'failed', 'diverged', 'timeout', 'crashed'}
        How it ended.
    metrics : dict
        What ``fn`` returned (kept for ``timeout`` and ``diverged`` rows too).
    error_type, error_message, traceback : str or None
        Why it did not end ``ok``.
    attempts : int
        Times it ran (``retries`` re-runs failed, timed-out and crashed trials).
    wall_time, cpu_time : float or None
        Seconds, for the last attempt. ``cpu_time`` is the trial thread's own
        CPU time (``time.thread_time``): other trials' threads are excluded,
        and so are BLAS helper threads when ``blas_threads > 1``.
    started_at, ended_at : float or None
        Wall clock, seconds since the epoch.
    pid, thread_name, thread_id
        Where it ran (``thread_id`` is the OS thread id).
    backend, n_jobs, blas_threads : str, int, int
        The sweep's effective settings.
    blas_threads_seen : int or None
        The largest thread count among the BLAS libraries loaded in the
        worker, read while the trial ran; None if no BLAS was loaded.
    """

    key: str
    index: int
    params: dict
    repeat: int
    seed: int
    status: str
    metrics: dict = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 1
    wall_time: float | None = None
    cpu_time: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    thread_name: str | None = None
    thread_id: int | None = None
    backend: str | None = None
    n_jobs: int | None = None
    blas_threads: int | None = None
    blas_threads_seen: int | None = None

    def to_dict(self):
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a row from :meth:`to_dict` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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


def _as_float(value):
    """Return a numeric metric as float, or NaN for anything else."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _rank(means, mode):
    """Rank means 1, 2, ... best first (ties share the lower rank); NaN ranks last."""
    values = np.asarray(means, dtype=float)
    values = -values if mode == "max" else values
    finite = ~np.isnan(values)
    ranks = np.full(len(values), int(finite.sum()) + 1)
    ordered = np.sort(values[finite])
    ranks[finite] = np.searchsorted(ordered, values[finite], side="left") + 1
    return ranks.tolist()


class SweepResult:
    """The rows of a sweep, and summaries over its seeds.

    Iterating gives :class:`TrialRow` objects in the order of the expanded
    space (not completion order), so equal sweeps give equal results on every
    backend.

    Parameters
    ----------
    rows : iterable of TrialRow
    info : dict, default=None
        The sweep's settings (the journal header).
    wall_time : float, default=None
        Seconds the sweep took.

    Attributes
    ----------
    rows : list of TrialRow
    info : dict
    wall_time : float or None
        For a sweep run in this process, the time of this call (only the
        resumed part when resuming); for one read with :meth:`from_journal`,
        the span from the first trial's start to the last one's end.
    """

    def __init__(self, rows, *, info=None, wall_time=None):
        self.rows = sorted(rows, key=lambda r: r.index)
        self.info = dict(info or {})
        self.wall_time = wall_time

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __repr__(self):
        counts = {s: 0 for s in STATUSES}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        wall = "" if self.wall_time is None else f", wall_time={self.wall_time:.3g}s"
        return f"SweepResult({len(self)} trials: {parts or 'none'}{wall})"

    @classmethod
    def from_journal(cls, path):
        """Load the result of a sweep (finished or not) from its journal.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        result : SweepResult
        """
        header, rows = read_journal(path)
        starts = [r.started_at for r in rows if r.started_at is not None]
        ends = [r.ended_at for r in rows if r.ended_at is not None]
        wall = max(ends) - min(starts) if starts and ends else None
        return cls(rows, info=header, wall_time=wall)

    def failures(self):
        """Return the rows that did not end ``ok``.

        Returns
        -------
        rows : list of TrialRow
        """
        return [row for row in self.rows if row.status != "ok"]

    def summary(self, *, mode="max"):
        """Aggregate the repeats of every configuration, like ``cv_results_``.

        Means and standard deviations (``ddof=0``) are taken over a
        configuration's repeats. A repeat that did not end ``ok`` counts as
        the sweep's ``error_score`` (NaN by default, which makes the mean NaN
        and ranks the configuration last), so a configuration that fails for
        some seeds never outranks one that always works.

        Parameters
        ----------
        mode : {'max', 'min'} or dict, default='max'
            Whether a larger or a smaller mean ranks first; a dict maps metric
            names to a mode (unlisted metrics use 'max'), e.g. ``{"loss": "min"}``.

        Returns
        -------
        summary : dict of lists
            One entry per configuration, in the space's order: ``params``,
            ``param_<name>`` (None where a configuration lacks the parameter),
            ``n_trials``, ``n_ok``, ``keys`` and, per numeric metric,
            ``mean_<metric>``, ``std_<metric>``, ``rank_<metric>``. Ready for
            ``pandas.DataFrame(summary)``.
        """
        groups = {}
        for row in self.rows:
            groups.setdefault(canonical_json(row.params), []).append(row)
        groups = list(groups.values())
        param_names = sorted({name for g in groups for name in g[0].params})
        metric_names = list(dict.fromkeys(
            name for row in self.rows for name, value in row.metrics.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        ))
        modes = self._modes(mode, metric_names)
        error_score = self.info.get("error_score", math.nan)
        error_score = _as_float(error_score)
        out = {"params": [dict(g[0].params) for g in groups]}
        for name in param_names:
            out[f"param_{name}"] = [g[0].params.get(name) for g in groups]
        out["n_trials"] = [len(g) for g in groups]
        out["n_ok"] = [sum(r.status == "ok" for r in g) for g in groups]
        out["keys"] = [[r.key for r in g] for g in groups]
        for name in metric_names:
            values = [
                [_as_float(r.metrics.get(name)) if r.status == "ok" else error_score for r in g]
                for g in groups
            ]
            means = [float(np.mean(v)) for v in values]
            out[f"mean_{name}"] = means
            out[f"std_{name}"] = [float(np.std(v)) for v in values]
            out[f"rank_{name}"] = _rank(means, modes[name])
        return out

    @staticmethod
    def _modes(mode, metric_names):
        """Return ``{metric: 'max' | 'min'}`` from the ``mode`` argument."""
        per_metric = mode if isinstance(mode, dict) else {}
        default = "max" if isinstance(mode, dict) else mode
        for value in [default, *per_metric.values()]:
            if value not in ("max", "min"):
                raise ValueError(f"mode must be 'max' or 'min', got {value!r}")
        unknown = set(per_metric) - set(metric_names)
        if unknown:
            raise ValueError(
                f"mode names unknown metrics {sorted(unknown)}; the metrics are {metric_names}"
            )
        return {name: per_metric.get(name, default) for name in metric_names}

    def best(self, metric, *, mode="max"):
        """Return the summary entry of the configuration ranked first on ``metric``.

        Parameters
        ----------
        metric : str
        mode : {'max', 'min'}, default='max'

        Returns
        -------
        best : dict
            The configuration's :meth:`summary` columns, e.g. ``best["params"]``
            and ``best[f"mean_{metric}"]``.

        Raises
        ------
        ValueError
            If no trial reported ``metric`` or no configuration has a finite mean.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        summary = self.summary(mode=mode)
        if f"mean_{metric}" not in summary:
            names = [k[5:] for k in summary if k.startswith("mean_")]
            raise ValueError(f"no trial reported metric {metric!r}; the metrics are {names}")
        means = summary[f"mean_{metric}"]
        candidates = [i for i, m in enumerate(means) if not math.isnan(m)]
        if not candidates:
            raise ValueError(f"no configuration has a finite mean {metric!r}: every one has a failed trial")
        i = min(candidates, key=lambda j: summary[f"rank_{metric}"][j])
        return {column: values[i] for column, values in summary.items()}

    def _table(self):
        """Return one flat dict per row: ``param_<name>`` and ``metric_<name>`` columns."""
        table = []
        for row in self.rows:
            data = row.to_dict()
            params, metrics = data.pop("params"), data.pop("metrics")
            flat = {name: data[name] for name in ("key", "index", "repeat", "seed", "status")}
            flat.update({f"param_{k}": v for k, v in params.items()})
            flat.update({f"metric_{k}": v for k, v in metrics.items()})
            flat.update({k: v for k, v in data.items() if k not in flat})
            table.append(flat)
        return table

    def to_pandas(self):
        """Return the rows as a ``pandas.DataFrame``, one row per trial.

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``key``, ``index``, ``repeat``, ``seed``, ``status``,
            ``param_<name>``, ``metric_<name>``, then the other row fields.
        """
        try:
            import pandas
        except ImportError as exc:
            raise ImportError(
                "SweepResult.to_pandas needs pandas, which is not installed; "
                "install it with: pip install pandas"
            ) from exc
        return pandas.DataFrame(self._table())

    def to_csv(self, path):
        """Write the rows as CSV, atomically (a temporary file, then ``os.replace``).

        Columns are those of :meth:`to_pandas`; lists and dicts are written as JSON.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path : pathlib.Path
        """
        path = Path(path)
        table = self._table()
        columns = list(dict.fromkeys(k for flat in table for k in flat)) or ["key"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                for flat in table:
                    writer.writerow({
                        k: json.dumps(v) if isinstance(v, (list, dict)) else v
                        for k, v in flat.items()
                    })
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path
