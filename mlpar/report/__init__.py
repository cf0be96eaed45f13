"""Tables and plots of a run folder, built from its files alone.

``write_report(run_dir)`` reads ``config.yaml``, ``results.jsonl`` and, for a
comparison, ``compare.json`` with its journals, and writes ``report.md`` and
PNG plots (matplotlib, Agg backend) beside them. Presentation only: nothing
here runs a sweep or a calibration.

- :mod:`.tables`: the one table renderer (also used by the lessons).
- :mod:`.plots`: score and comparison plots.
- :mod:`._compare`: the comparison's tables and explanation.
"""

from __future__ import annotations

import json
from collections import Counter

from .tables import format_table, format_value

__all__ = [
    "format_table",
    "format_run_summary",
    "write_report",
    "load_rows",
    "score_metric",
    "metric_mode",
]

PLOT_HINT = 'plots need matplotlib: pip install "mlpar[plot]"'


# --------------------------------------------------------------------------- rows


def load_rows(journal):
    """The trial rows of a journal, as plain dicts (a torn last line is skipped)."""
    from ..results import SweepResult

    return [r.to_dict() for r in SweepResult.from_journal(journal)]


def score_metric(rows):
    """The metric to rank by: ``val_score`` when trials report it."""
    for r in rows:
        if "val_score" in (r.get("metrics") or {}):
            return "val_score"
    for r in rows:
        for k, v in (r.get("metrics") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return k
    return None


def _param_label(params):
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))


def metric_mode(metric):
    """'min' for metrics where smaller is better (losses, errors, times), else 'max'."""
    name = metric.lower()
    return "min" if any(w in name for w in ("loss", "error", "time")) else "max"


def _config_groups(result, metric):
    """One entry per configuration, best first: :meth:`SweepResult.summary`'s means.

    A seed that did not end ``ok`` makes its configuration's mean NaN (ranked
    last), exactly as in ``SweepResult.summary`` and scikit-learn's ``cv_results_``.
    """
    mode = (result.info.get("halving") or {}).get("metric_mode") or metric_mode(metric)
    summary = result.summary(mode=mode) if result.rows else {"params": []}
    if f"mean_{metric}" not in summary:
        return []
    nan = [float("nan")] * len(summary["params"])
    out = [
        {
            "params": _param_label(params),
            "raw_params": params,
            "n": summary["n_trials"][i],
            "ok": summary["n_ok"][i],
            "mean": summary[f"mean_{metric}"][i],
            "std": summary[f"std_{metric}"][i],
            "rank": summary[f"rank_{metric}"][i],
            "test": summary.get("mean_test_score", nan)[i],
            "fit_time": summary.get("mean_fit_time", nan)[i],
        }
        for i, params in enumerate(summary["params"])
    ]
    out.sort(key=lambda g: g["rank"])
    return out


def format_run_summary(result, config=None, *, top=5):
    """The table ``mlpar run`` prints: best trials, failures, time per backend."""
    from ._halving import halving_of, halving_summary

    rows = [r.to_dict() for r in result]
    metric = score_metric(rows) or "score"
    halving = halving_of(result)
    if halving is not None and halving.rungs:
        metric = halving.metric
    groups = _config_groups(halving.rungs[-1].result if halving else result, metric)
    lines = [] if halving is None else [*halving_summary(halving), ""]
    last = " in the last rung" if halving else ""
    lines += [
        f"best configurations{last} by {metric} (mean over seeds; a failed seed makes it nan):",
        format_table(
            groups[:top],
            [
                ("rank", "rank"),
                ("mean", metric),
                ("std", "std"),
                ("test", "test_score"),
                ("fit_time", "fit s"),
                ("ok", "ok"),
                ("params", "params"),
            ],
        ),
    ]
    status = Counter(r["status"] for r in rows)
    bad = [r for r in rows if r["status"] != "ok"]
    lines.append("")
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())))
    for r in bad[:10]:
        msg = (r.get("error_message") or "").strip().splitlines()
        lines.append(
            f"  {r['status']:<8} {r.get('error_type') or '':<18} "
            f"{_param_label(r['params'])}  {msg[0][:100] if msg else ''}"
        )
    if len(bad) > 10:
        lines.append(f"  ... and {len(bad) - 10} more (see results.jsonl)")
    lines.append("")
    lines.append(
        format_table(
            [_timing(rows, result)],
            [
                ("backend", "backend"),
                ("n_jobs", "n_jobs"),
                ("blas_threads", "blas threads"),
                ("wall", "wall s"),
                ("trial_sum", "sum of trial s"),
                ("cpu_sum", "trial CPU s"),
                ("parallelism", "trial s / wall s"),
            ],
        )
    )
    return "\n".join(lines)


def _timing(rows, result=None):
    first = rows[0] if rows else {}
    wall = getattr(result, "wall_time", None)
    if wall is None and rows:
        wall = max(r["ended_at"] for r in rows) - min(r["started_at"] for r in rows)
    trial_sum = sum(r.get("wall_time") or 0.0 for r in rows)
    return {
        "backend": first.get("backend"),
        "n_jobs": first.get("n_jobs"),
        "blas_threads": first.get("blas_threads_seen", first.get("blas_threads")),
        "wall": wall,
        "trial_sum": trial_sum,
        "cpu_sum": sum(r.get("cpu_time") or 0.0 for r in rows),
        "parallelism": trial_sum / wall if wall else float("nan"),
    }


# --------------------------------------------------------------------------- report


def write_report(run_dir):
    """Write ``report.md`` (and PNG plots when matplotlib is installed).

    Returns
    -------
    Path of the report.
    """
    from ..results import SweepResult
    from ..runs import (
        COMPARE_FILE,
        ENV_FILE,
        JOURNAL_FILE,
        REPORT_FILE,
        atomic_write,
        check_run_dir,
    )
    from .plots import figures, plot_score_vs_params

    run_dir = check_run_dir(run_dir, needs=(JOURNAL_FILE, COMPARE_FILE))
    journal = run_dir / JOURNAL_FILE
    compare = run_dir / COMPARE_FILE
    plt = figures()
    md = [f"# mlpar report: {run_dir}", ""]
    env_path = run_dir / ENV_FILE
    if env_path.is_file():
        from ..environment import format_environment

        md += [
            "## Environment",
            "",
            "```",
            format_environment(json.loads(env_path.read_text())),
            "```",
            "",
        ]
    if journal.is_file():
        from ._halving import halving_of, halving_section

        result = SweepResult.from_journal(journal)
        rows = [r.to_dict() for r in result]
        metric = score_metric(rows) or "score"
        halving = halving_of(result)
        if halving is not None and halving.rungs:
            metric = halving.metric
        groups = _config_groups(halving.rungs[-1].result if halving else result, metric)
        if halving is not None:
            md += halving_section(halving, run_dir, plt)
        last = ", ranked in the last rung" if halving else ""
        md += [
            f"## Results ({len(rows)} trials{last})",
            "",
            format_table(
                groups,
                [
                    ("rank", "rank"),
                    ("mean", f"mean {metric}"),
                    ("std", "std"),
                    ("test", "test_score"),
                    ("fit_time", "fit s"),
                    ("ok", "ok"),
                    ("n", "trials"),
                    ("params", "params"),
                ],
                markdown=True,
            ),
            "",
        ]
        status = Counter(r["status"] for r in rows)
        md += ["Trial status: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())), ""]
        md += [
            "## Time",
            "",
            format_table(
                [_timing(rows)],
                [
                    ("backend", "backend"),
                    ("n_jobs", "n_jobs"),
                    ("blas_threads", "BLAS threads"),
                    ("wall", "wall s (first start to last end)"),
                    ("trial_sum", "sum of trial s"),
                    ("cpu_sum", "trial CPU s"),
                    ("parallelism", "trial s / wall s"),
                ],
                markdown=True,
            ),
            "",
        ]
        if plt is not None:
            plots = plot_score_vs_params(rows, metric, run_dir, plt)
            if plots:
                md += ["## Score vs each swept parameter", ""]
                md += [f"![{p.stem}]({p.name})" for p in plots] + [""]
        from ._optuna import optuna_section

        md += optuna_section(result, run_dir)
    if compare.is_file():
        from ._compare import comparison_report

        md += comparison_report(run_dir, plt)
    if plt is None:
        md += [f"_No plots: {PLOT_HINT}._", ""]
    path = run_dir / REPORT_FILE
    atomic_write(path, "\n".join(md))
    return path
