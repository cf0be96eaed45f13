"""What the four lessons share: the result object, timing, tables, plots, environment."""

import json
import os
import platform
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..environment import free_threaded_build, gil_enabled
from ..report.tables import format_table

# How each row key is shown: (header, kind). A lesson lists the keys it shows.
COLUMNS = {
    "setting": ("setting", "text"),
    "workers": ("workers", "int"),
    "median_s": ("median", "seconds"),
    "spread": ("spread (min-max)", "spread"),
    "speedup": ("vs serial", "ratio"),
    "cores_busy": ("cores busy", "float2"),
    "same_as_serial": ("same result", "bool"),
    "identical": ("data identical", "bool"),
    "expected": ("updates", "int"),
    "observed": ("kept", "int"),
    "lost": ("lost", "int"),
    "lost_range": ("lost (min-max)", "int_range"),
    "final_loss": ("final loss", "float3"),
    "payload": ("payload", "bytes"),
}


@dataclass
class LessonResult:
    """The measured outcome of one lesson.

    Attributes
    ----------
    name : str
        Short name: ``"cpu"``, ``"io"``, ``"race"`` or ``"processes"``.
    title : str
        One-line title of the lesson.
    claim : str
        The essay's claim that the lesson tests, in one sentence.
    setup : str
        The workload and how it was timed.
    columns : tuple of str
        The row keys shown in the table, in order.
    rows : list of dict
        One dict per setting. Timing rows hold ``setting``, ``workers``,
        ``median_s``, ``min_s``, ``max_s``, ``times_s`` (every repeat) and
        ``speedup`` (serial median / this median, None where it does not apply);
        lessons add their own keys (``lost``, ``same_as_serial``, ...).
    headline : str
        The key measured figure, e.g. ``"threads 2: 0.93x serial"``.
    explanation : str
        What happened, why, and what it means for training, written from the
        measurements.
    environment : dict
        Cores, Python version and build, whether the GIL is enabled.
    options : dict
        The options the lesson ran with (``n_jobs``, ``repeats``, ``size``, ...).
    png : str or None
        Path of the plot, when one was written.
    notes : list of str
        Anything the reader should know that is not a measurement (e.g. a
        skipped plot).
    """

    name: str
    title: str
    claim: str
    setup: str
    columns: tuple
    rows: list
    headline: str
    explanation: str
    environment: dict
    options: dict
    png: str | None = None
    notes: list = field(default_factory=list)

    def format_table(self):
        """The table as aligned plain text."""
        return self._table(markdown=False)

    def format_markdown_table(self):
        """The table as a GitHub-flavoured markdown table."""
        return self._table(markdown=True)

    def _table(self, *, markdown):
        columns = [(key, COLUMNS[key][0]) for key in self.columns]
        right = {key for key in self.columns if COLUMNS[key][1] != "text"}
        return format_table(self.rows, columns, markdown=markdown, cell=format_cell, right=right)

    def format_report(self):
        """The whole lesson as plain text: claim, setup, table, headline, explanation."""
        # No breaks at hyphens: "read-modify-write" and "byte-identical" stay whole.
        wrap = textwrap.TextWrapper(width=88, break_on_hyphens=False, break_long_words=False)
        parts = [
            f"Lesson {self.name}: {self.title}",
            wrap.fill(f"Claim: {self.claim}"),
            wrap.fill(f"Setup: {self.setup}"),
            "",
            self.format_table(),
            "",
            f"Measured: {self.headline}",
            wrap.fill(self.explanation),
        ]
        if self.png:
            parts.append(f"Plot: {self.png}")
        parts.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(parts)

    def to_markdown(self):
        """The whole lesson as a markdown section (the plot linked by file name)."""
        parts = [
            f"## Lesson `{self.name}`: {self.title}",
            f"> {self.claim}",
            f"**Setup.** {self.setup}",
            self.format_markdown_table(),
            f"**Measured:** {self.headline}",
            self.explanation,
        ]
        if self.png:
            parts.append(f"![{self.title}]({Path(self.png).name})")
        parts.extend(f"*Note: {note}*" for note in self.notes)
        return "\n\n".join(parts) + "\n"

    def to_dict(self):
        """A JSON-serialisable dict of everything measured."""
        return {
            "name": self.name,
            "title": self.title,
            "claim": self.claim,
            "setup": self.setup,
            "columns": list(self.columns),
            "rows": [dict(row) for row in self.rows],
            "headline": self.headline,
            "explanation": self.explanation,
            "environment": dict(self.environment),
            "options": dict(self.options),
            "png": self.png,
            "notes": list(self.notes),
        }


def format_seconds(seconds):
    """``0.0123`` -> ``'12.3 ms'``: three significant digits in a readable unit."""
    unit, scale = _time_unit(seconds)
    return f"{_three_digits(seconds * scale)} {unit}"


def _time_unit(seconds):
    if seconds >= 1.0:
        return "s", 1.0
    if seconds >= 1e-3:
        return "ms", 1e3
    return "us", 1e6


def _three_digits(value):
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_bytes(n_bytes):
    """``123456`` -> ``'121 kB'`` (powers of 1024)."""
    for unit in ("B", "kB", "MB"):
        if n_bytes < 1024 or unit == "MB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{_three_digits(n_bytes)} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_cell(key, row):
    """One table cell; ``'-'`` where the row has no value for ``key``."""
    kind = COLUMNS[key][1]
    if kind == "spread":
        if row.get("min_s") is None:
            return "-"
        unit, scale = _time_unit(row["max_s"])
        return f"{_three_digits(row['min_s'] * scale)}-{_three_digits(row['max_s'] * scale)} {unit}"
    if kind == "int_range":
        if row.get("lost_min") is None:
            return "-"
        return f"{row['lost_min']}-{row['lost_max']}"
    value = row.get(key)
    if value is None:
        return "-"
    if kind == "text":
        return str(value)
    if kind == "int":
        return f"{value:.0f}"
    if kind == "seconds":
        return format_seconds(value)
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "float2":
        return f"{value:.2f}"
    if kind == "float3":
        return f"{value:.3f}"
    if kind == "bool":
        return "yes" if value else "NO"
    if kind == "bytes":
        return format_bytes(value)
    raise ValueError(f"unknown column kind {kind!r} for column {key!r}")


@dataclass
class Measurements:
    """Wall and CPU seconds of every timed repeat of one setting, and what it returned."""

    wall: list = field(default_factory=list)
    cpu: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def time_interleaved(settings, *, repeats, warmup=True, progress=None):
    """Time several settings round-robin: setting 1, 2, ..., then again, ``repeats`` times.

    Interleaving spreads slow drifts of a shared machine (other jobs, CPU
    frequency) over all settings instead of penalising whichever ran last.

    Parameters
    ----------
    settings : list of (str, callable)
        Label and zero-argument function of each setting.
    repeats : int
        Timed rounds.
    warmup : bool, default=True
        Run one untimed round first (imports, caches, page faults).
    progress : callable or None, default=None
        Called with a one-line message after each round.

    Returns
    -------
    dict of str to Measurements
    """
    results = {label: Measurements() for label, _ in settings}
    if warmup:
        for _, fn in settings:
            fn()
    for r in range(repeats):
        for label, fn in settings:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = fn()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            m = results[label]
            m.wall.append(wall)
            m.cpu.append(cpu)
            m.outputs.append(out)
        if progress is not None:
            progress(f"round {r + 1}/{repeats} done")
    return results


def timing_words(repeats, *, warmup):
    """How a lesson was timed, for its setup text."""
    first = "after one untimed warm-up round" if warmup else "without a warm-up round (quick size)"
    return f"Medians of {repeats} interleaved repeats {first}."


def timing_row(setting, workers, m, *, serial_median=None, cores_busy=False, **extra):
    """A table row of medians and spread from ``Measurements``; ``extra`` keys are added."""
    median = statistics.median(m.wall)
    row = {
        "setting": setting,
        "workers": workers,
        "median_s": median,
        "min_s": min(m.wall),
        "max_s": max(m.wall),
        "times_s": list(m.wall),
        "speedup": serial_median / median if serial_median else None,
    }
    if cores_busy:
        # Process CPU time over wall time: how many cores the process kept busy.
        # Under the GIL, Python-bound threads cannot push this above ~1.
        row["cores_busy"] = statistics.median(c / w for c, w in zip(m.cpu, m.wall) if w > 0)
    row.update(extra)
    return row


def noise_note(rows, *, threshold=0.3):
    """A warning when repeats of a compared setting differ by more than ``threshold`` of the median.

    Returns
    -------
    str or None
    """
    spreads = [
        ((row["max_s"] - row["min_s"]) / row["median_s"], row["setting"])
        for row in rows
        if row.get("speedup") is not None
        and len(row.get("times_s", ())) > 1
        and row["median_s"] > 0
    ]
    if not spreads:
        return None
    worst, setting = max(spreads)
    if worst <= threshold:
        return None
    return (
        f"repeats of {setting!r} varied by {worst:.0%} of their median: the machine was probably "
        "busy with other work, so read the speedups with caution (rerun, or raise repeats)"
    )


def worker_counts(n_jobs):
    """The worker counts compared with serial: 2 and ``n_jobs``.

    Two points, not every power of two: each threaded setting of a Python-bound
    workload costs as much as the serial run, so the lesson's run time grows
    with the number of settings, not with the number of workers.
    """
    return sorted({2, n_jobs})


def ratio_words(ratio, *, tolerance=0.05):
    """``0.93`` -> ``'slower than'``, ``1.01`` -> ``'about as fast as'``, ``1.8`` -> ``'faster than'``."""
    if ratio < 1.0 - tolerance:
        return "slower than"
    if ratio > 1.0 + tolerance:
        return "faster than"
    return "about as fast as"


def environment():
    """Machine and interpreter facts that decide the lessons' outcomes.

    Returns
    -------
    dict
        ``cpu_count`` (logical CPUs), ``usable_cpus`` (what joblib may use:
        affinity and cgroup quotas applied), Python version and
        implementation, ``free_threaded_build``, ``gil_enabled``, the thread
        ``switch_interval_s``, platform, NumPy and mlpar versions.
    """
    # joblib is imported here rather than at the top: worker processes import
    # this package to unpickle their task and never need it.
    import joblib

    import mlpar

    free_threaded = free_threaded_build()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": joblib.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "free_threaded_build": free_threaded,
        "gil_enabled": gil_enabled(),
        "build": "free-threaded" if free_threaded else "default (with GIL)",
        "switch_interval_s": sys.getswitchinterval(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "mlpar": getattr(mlpar, "__version__", None),
    }


def write_json(path, payload):
    """Write ``payload`` as indented JSON."""
    Path(path).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value):
    # NumPy scalars sneak into rows through medians and sums.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")
