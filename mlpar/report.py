"""Tables and plots of a run folder, built from its files alone.

``write_report(run_dir)`` reads ``config.yaml``, ``results.jsonl`` and, for a
comparison, ``compare.json`` with its journals, and writes ``report.md`` and
PNG plots (matplotlib, Agg backend) beside them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["format_table", "format_run_summary", "write_report", "load_rows", "score_metric"]

PLOT_HINT = 'plots need matplotlib: pip install "mlpar[plot]"'


# --------------------------------------------------------------------------- tables

def _cell(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_cell(x) for x in v) + "]"
    return "" if v is None else str(v)


def format_table(rows, columns, *, markdown=False):
    """Render ``rows`` (dicts) as an aligned text or markdown table."""
    header = [c if isinstance(c, str) else c[1] for c in columns]
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    body = [[_cell(r.get(k)) for k in keys] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*r) for r in body])


# --------------------------------------------------------------------------- rows

def _as_dict(row):
    if isinstance(row, dict):
        return row
    if hasattr(row, "to_dict"):
        return row.to_dict()
    import dataclasses

    return dataclasses.asdict(row)


def load_rows(journal):
    """The trial rows of a journal, as plain dicts (a torn last line is skipped)."""
    from .results import SweepResult

    return [_as_dict(r) for r in SweepResult.from_journal(journal)]


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
    return ", ".join(f"{k}={_cell(v)}" for k, v in sorted(params.items()))


def _config_groups(rows, metric):
    """Aggregate rows over seeds: one entry per configuration."""
    groups = defaultdict(list)
    for r in rows:
        groups[json.dumps(r["params"], sort_keys=True, default=str)].append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        scores = [r["metrics"].get(metric) for r in ok if r["metrics"].get(metric) is not None]
        scores = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
        out.append({
            "params": _param_label(rs[0]["params"]),
            "raw_params": rs[0]["params"],
            "n": len(rs), "ok": len(ok),
            "mean": statistics.fmean(scores) if scores else float("nan"),
            "std": statistics.pstdev(scores) if len(scores) > 1 else 0.0,
            "test": _mean([r["metrics"].get("test_score") for r in ok]),
            "fit_time": _mean([r["metrics"].get("fit_time") for r in ok]),
            "wall": _mean([r.get("wall_time") for r in rs]),
        })
    out.sort(key=lambda g: (math.isnan(g["mean"]), -g["mean"] if not math.isnan(g["mean"]) else 0))
    for i, g in enumerate(out, 1):
        g["rank"] = i
    return out


def _mean(values):
    vals = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)]
    return statistics.fmean(vals) if vals else float("nan")


def format_run_summary(result, config=None, *, top=5):
    """The table ``mlpar run`` prints: best trials, failures, time per backend."""
    rows = [_as_dict(r) for r in result]
    metric = score_metric(rows) or "score"
    groups = _config_groups(rows, metric)
    lines = [f"best configurations by {metric} (mean over seeds):",
             format_table(groups[:top], [("rank", "rank"), ("mean", metric), ("std", "std"),
                                         ("test", "test_score"), ("fit_time", "fit s"),
                                         ("ok", "ok"), ("params", "params")])]
    status = Counter(r["status"] for r in rows)
    bad = [r for r in rows if r["status"] != "ok"]
    lines.append("")
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())))
    for r in bad[:10]:
        msg = (r.get("error_message") or "").strip().splitlines()
        lines.append(f"  {r['status']:<8} {r.get('error_type') or '':<18} "
                     f"{_param_label(r['params'])}  {msg[0][:100] if msg else ''}")
    if len(bad) > 10:
        lines.append(f"  ... and {len(bad) - 10} more (see results.jsonl)")
    lines.append("")
    lines.append(format_table([_timing(rows, result)], [
        ("backend", "backend"), ("n_jobs", "n_jobs"), ("blas_threads", "blas threads"),
        ("wall", "wall s"), ("trial_sum", "sum of trial s"), ("cpu_sum", "trial CPU s"),
        ("parallelism", "trial s / wall s")]))
    return "\n".join(lines)


def _timing(rows, result=None):
    first = rows[0] if rows else {}
    wall = getattr(result, "wall_time", None)
    if wall is None and rows:
        wall = max(r["ended_at"] for r in rows) - min(r["started_at"] for r in rows)
    trial_sum = sum(r.get("wall_time") or 0.0 for r in rows)
    return {
        "backend": first.get("backend"), "n_jobs": first.get("n_jobs"),
        "blas_threads": first.get("blas_threads_seen", first.get("blas_threads")),
        "wall": wall, "trial_sum": trial_sum,
        "cpu_sum": sum(r.get("cpu_time") or 0.0 for r in rows),
        "parallelism": trial_sum / wall if wall else float("nan"),
    }


# --------------------------------------------------------------------------- report

class _Figures:
    """The two pyplot calls the plots use, on matplotlib's object API.

    pyplot would switch the caller's backend and keeps a global figure
    registry that is not thread-safe; a bare ``Figure`` draws with Agg and
    belongs to whoever made it.
    """

    def __init__(self, figure_cls):
        self._figure = figure_cls

    def subplots(self, figsize):
        fig = self._figure(figsize=figsize)
        return fig, fig.add_subplot()

    def close(self, fig):
        fig.clear()


def _plt():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return _Figures(Figure)


def _plot_score_vs_params(rows, metric, out_dir, plt):
    ok = [r for r in rows if r["status"] == "ok" and r["metrics"].get(metric) is not None]
    names = sorted({k for r in ok for k in r["params"]})
    paths = []
    for name in names:
        xs = [r["params"].get(name) for r in ok]
        ys = [r["metrics"][metric] for r in ok]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if numeric:
            ax.scatter(xs, ys, alpha=0.7)
            if min(xs) > 0 and max(xs) / min(xs) > 50:
                ax.set_xscale("log")
        else:
            labels = sorted({_cell(x) for x in xs})
            pos = {lab: i for i, lab in enumerate(labels)}
            ax.scatter([pos[_cell(x)] for x in xs], ys, alpha=0.7)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {name}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"score_vs_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(run_dir):
    """Write ``report.md`` (and PNG plots when matplotlib is installed).

    Returns
    -------
    Path of the report.
    """
    from .experiment import atomic_write

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    journal = run_dir / "results.jsonl"
    compare = run_dir / "compare.json"
    if not journal.is_file() and not compare.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no results.jsonl or compare.json)")
    plt = _plt()
    md = [f"# mlpar report: {run_dir}", ""]
    env_path = run_dir / "environment.json"
    if env_path.is_file():
        from .environment import format_environment

        md += ["## Environment", "", "```", format_environment(json.loads(env_path.read_text())),
               "```", ""]
    if journal.is_file():
        rows = load_rows(journal)
        metric = score_metric(rows) or "score"
        groups = _config_groups(rows, metric)
        md += [f"## Results ({len(rows)} trials)", "",
               format_table(groups, [("rank", "rank"), ("mean", f"mean {metric}"), ("std", "std"),
                                     ("test", "test_score"), ("fit_time", "fit s"), ("ok", "ok"),
                                     ("n", "trials"), ("params", "params")], markdown=True), ""]
        status = Counter(r["status"] for r in rows)
        md += ["Trial status: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())), ""]
        md += ["## Time", "", format_table([_timing(rows)], [
            ("backend", "backend"), ("n_jobs", "n_jobs"), ("blas_threads", "BLAS threads"),
            ("wall", "wall s (first start to last end)"), ("trial_sum", "sum of trial s"),
            ("cpu_sum", "trial CPU s"), ("parallelism", "trial s / wall s")], markdown=True), ""]
        if plt is not None:
            plots = _plot_score_vs_params(rows, metric, run_dir, plt)
            if plots:
                md += ["## Score vs each swept parameter", ""]
                md += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    if compare.is_file():
        from .compare import comparison_report

        md += comparison_report(run_dir, plt)
    if plt is None:
        md += [f"_No plots: {PLOT_HINT}._", ""]
    path = run_dir / "report.md"
    atomic_write(path, "\n".join(md))
    return path
