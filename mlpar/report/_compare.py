"""The backend comparison in words and tables: what ``mlpar compare`` shows and reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..analysis.summary import group_label, group_table
from ..runs import COMPARE_FILE
from .plots import plot_comparison
from .tables import format_table

__all__ = [
    "COLUMNS",
    "group_columns",
    "explain",
    "comparison_report",
    "format_group",
    "format_outcome",
]

COLUMNS = [
    ("label", "setting"),
    ("wall", "median wall s"),
    ("wall_min", "min"),
    ("wall_max", "max"),
    ("speedup", "speedup"),
    ("efficiency", "efficiency"),
    ("utilization", "CPU util"),
    ("inflation", "trial time x"),
    ("overhead", "overhead s"),
    ("predicted", "predicted"),
    ("measured_over_predicted", "measured/predicted"),
    ("ok", "ok"),
]

_GROUP_COLUMNS = [
    ("group", "workload"),
    ("p", "p"),
    ("p_check", "p (py-spy)"),
    ("amdahl", "Amdahl threads"),
    ("predicted", "predicted threads"),
    ("band", "band"),
    ("threads", "measured threads"),
    ("ratio", "measured/predicted"),
    ("error", "prediction error"),
    ("no_gil", "predicted, no GIL"),
    ("processes", "processes"),
    ("best", "fastest measured"),
    ("advised", "advised"),
    ("advised_vs_best", "advised / fastest"),
]


def group_columns(doc):
    """The per-workload table's columns: the GIL axis only when it was run."""
    cols = list(_GROUP_COLUMNS)
    if doc.get("gil_modes"):
        at = cols.index(("processes", "processes"))
        cols[at:at] = [
            ("threads_gil0", "threads PYTHON_GIL=0"),
            ("threads_gil1", "threads PYTHON_GIL=1"),
        ]
    return cols


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def explain(cal, rows, model_ok):
    """The model behind a workload's predictions, in two sentences, and its check."""
    m = cal.get("gil_machine") or {}
    preds = cal.get("predictions") or {}
    ahead = ", ".join(
        f"{n}: {preds['threads'][n]:.2f}x"
        for n in ("4", "8", "16")
        if n in preds.get("threads", {})
    )
    free = ", ".join(f"{n}: {s:.2f}x" for n, s in (preds.get("no_gil") or {}).items())
    checked = [
        f"{r['label']} {r['measured_over_predicted']:.2f}"
        for r in rows
        if r.get("measured_over_predicted") is not None and r["label"] != "serial x1 blas1"
    ]
    check = f" Measured / predicted: {', '.join(checked)}." if checked else ""
    if not model_ok:
        return (
            "GIL disabled (free-threaded build): threads run Python in parallel; the "
            f"simulation without a GIL predicts {free} (kernel contention "
            f"{m.get('kernel_contention', 0.0):.2f}).{check}"
        )
    band = cal.get("predicted_2_band") or [cal["predicted_2"]] * 2
    return (
        f"p = {cal['p']:.2f} of a serial training step runs without the GIL "
        f"(GEMMs alone {cal['p_gemm']:.2f}"
        + (
            f"; {cal['p_check_method']}: {cal['p_check']:.2f}"
            if _finite(cal.get("p_check"))
            else ""
        )
        + f"); per step {cal['python_time'] * 1e6:.0f} µs "
        f"Python vs {cal['numeric_time'] * 1e6:.0f} µs numeric, "
        f"{cal['releases_per_step']:.0f} GIL releases. Amdahl's ceiling for 2 threads "
        f"{cal['amdahl_2']:.2f}x; simulating the threads' hand-offs of the GIL (wake-up "
        f"{m.get('wake_s', 0.0) * 1e6:.0f} µs, release cost "
        f"{m.get('release_cost_s', 0.0) * 1e6:.2f} µs, kernel contention "
        f"{m.get('kernel_contention', 0.0):.2f}"
        + (
            f"; other processes kept {m['other_load']:.0%} of the CPUs busy meanwhile"
            if _finite(m.get("other_load"))
            else ""
        )
        + f") predicts {cal['predicted_2']:.2f}x "
        f"(band {band[0]:.2f}-{band[1]:.2f}x); untested here: {ahead or 'none'} threads, "
        f"{free or 'none'} without a GIL.{check}"
    )


def comparison_report(run_dir, plt):
    """Markdown lines (and plots) of a comparison for ``report.md``."""
    doc = json.loads((Path(run_dir) / COMPARE_FILE).read_text())
    md = [
        "## Backend comparison",
        "",
        f"{doc['repeats']} interleaved repeats per setting, {doc['cores']} cores, "
        f"1 BLAS thread per worker unless stated; speedup = median over repeats of "
        f"serial wall / setting wall in the same repeat.",
        "",
    ]
    for g in doc["groups"]:
        md += [
            f"### {group_label(g['group'])}",
            "",
            format_table(g["summary"], COLUMNS, markdown=True),
            "",
            explain(g["calibration"], g["summary"], doc["gil_enabled"]),
            "",
        ]
    if len(doc["groups"]) > 1 or doc.get("gil_modes"):
        md += [
            "### Per workload",
            "",
            format_table(group_table(doc), group_columns(doc), markdown=True),
            "",
        ]
    if plt is not None:
        for path in plot_comparison(doc, run_dir, plt):
            md += [f"![{path.stem}]({path.name})", ""]
    return md


def format_group(result, model_ok):
    """The text ``mlpar compare`` prints when a workload group is done."""
    return (
        format_table(result["summary"], COLUMNS)
        + "\n"
        + explain(result["calibration"], result["summary"], model_ok)
    )


def format_outcome(doc):
    """The closing lines of ``mlpar compare``: per-workload table, or fastest vs advised."""
    table = group_table(doc)
    if len(doc["groups"]) > 1 or doc.get("gil_modes"):
        return format_table(table, group_columns(doc))
    row = table[0]
    best = next(r for r in doc["groups"][0]["summary"] if r["label"] == row["best"])
    return (
        f"fastest measured: {row['best']} ({best['speedup']:.2f}x over serial); "
        f"advised from the serial calibration: {row['advised']}"
    )
