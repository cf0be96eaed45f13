"""Results of a sweep: one row per trial, the JSONL journal, summaries and export."""

import csv
import io
import json
import math
import numbers
from pathlib import Path

import numpy as np

from ..runs import atomic_write
from ..space import canonical_json
from ._follow import JournalFollower, Progress, duration
from ._journal import IDENTITY_FIELDS, JOURNAL_VERSION, Journal, read_journal
from ._rows import STATUSES, TrialRow

__all__ = [
    "TrialRow",
    "SweepResult",
    "write_csv",
    "Journal",
    "read_journal",
    "STATUSES",
    "IDENTITY_FIELDS",
    "JOURNAL_VERSION",
    "JournalFollower",
    "Progress",
    "duration",
]


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
        #: For a halving search, its :class:`~mlpar.halving.HalvingResult`; else None.
        self.halving = None

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
        metric_names = list(
            dict.fromkeys(
                name
                for row in self.rows
                for name, value in row.metrics.items()
                if isinstance(value, numbers.Real) and not isinstance(value, bool)
            )
        )
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

        Notes
        -----
        For a halving search (rows with a ``rung``), only the last rung ranks.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        rungs = [row.rung for row in self.rows if row.rung is not None]
        # Halving: only the last rung's configurations had the full budget.
        ranked = (
            SweepResult([r for r in self.rows if r.rung == max(rungs)], info=self.info)
            if rungs
            else self
        )
        summary = ranked.summary(mode=mode)
        if f"mean_{metric}" not in summary:
            names = [k[5:] for k in summary if k.startswith("mean_")]
            raise ValueError(f"no trial reported metric {metric!r}; the metrics are {names}")
        means = summary[f"mean_{metric}"]
        candidates = [i for i, m in enumerate(means) if not math.isnan(m)]
        if not candidates:
            raise ValueError(
                f"no configuration has a finite mean {metric!r}: every one has a failed trial"
            )
        i = min(candidates, key=lambda j: summary[f"rank_{metric}"][j])
        return {column: values[i] for column, values in summary.items()}

    def table(self):
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
        return pandas.DataFrame(self.table())

    def to_csv(self, path):
        """Write the rows as CSV, atomically (see :func:`mlpar.runs.atomic_write`).

        Columns are those of :meth:`to_pandas`; lists and dicts are written as JSON.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path : pathlib.Path
        """
        return write_csv(path, self.table(), empty=["key"])


def write_csv(path, table, *, empty=("key",)):
    """Write flat dicts as CSV, atomically; lists and dicts as JSON; ``empty``: the header of none.

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    columns = list(dict.fromkeys(k for flat in table for k in flat)) or list(empty)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for flat in table:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()}
        )
    atomic_write(path, buffer.getvalue(), newline="")
    return path
