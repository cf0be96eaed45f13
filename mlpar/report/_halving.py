"""The halving part of a run's summary and report: rungs, budget, survivors, a plot.

Built from the rows alone (their ``rung`` and ``resource``) and the halving
settings in the journal header, so ``mlpar report`` on a run folder shows
what ``mlpar run`` printed.
"""

from __future__ import annotations

import math

from .tables import format_table, format_value

__all__ = ["halving_of", "halving_summary", "halving_section", "plot_rungs"]


def halving_of(result):
    """The :class:`~mlpar.halving.HalvingResult` of ``result``, or None for another search."""
    if getattr(result, "halving", None) is not None:
        return result.halving
    spec = result.info.get("halving")
    if not isinstance(spec, dict) or not any(row.rung is not None for row in result):
        return None
    from ..halving import HalvingResult, as_halving

    return HalvingResult(result, as_halving(spec))


def _label(params):
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))


def _rung_rows(h):
    return [
        {**t, "best_params": _label(t["best_params"]) if t["best_params"] else ""}
        for t in h.rung_table()
    ]


def _budget_line(h):
    used, full = h.budget()
    share = f" ({used / full:.0%} of" if full else " (of"
    return (
        f"budget: {format_value(used)} {h.resource} summed over trials{share} a full search's "
        f"{format_value(full)}: every rung-0 trial with {format_value(h.max_resource)})"
    )


def _columns(h):
    return [
        ("rung", "rung"),
        ("resource", h.resource),
        ("configs", "configs"),
        ("trials", "trials"),
        ("promoted", "promoted"),
        ("best", f"best mean {h.metric}"),
        ("best_params", "best configuration"),
    ]


def _title(h):
    name = "ASHA (async)" if h.schedule == "async" else "successive halving (sync)"
    return f"{name} on {h.resource}, factor {h.spec.factor}, ranked by {h.metric} ({h.mode})"


def halving_summary(h):
    """The lines ``mlpar run`` prints for a halving run: rungs, budget, survivors."""
    lines = [_title(h) + ":", format_table(_rung_rows(h), _columns(h)), _budget_line(h)]
    lines.append("survivors (last rung, best first):")
    for _, params, mean in h.rungs[-1].ranking[:5] if h.rungs else []:
        lines.append(f"  {h.metric}={format_value(mean)}  {_label(params)}")
    return lines


def halving_section(h, run_dir, plt):
    """The report's halving section (markdown lines), with the rung plot when possible."""
    md = [
        "## Rungs",
        "",
        _title(h) + ".",
        "",
        format_table(_rung_rows(h), _columns(h), markdown=True),
        "",
        _budget_line(h) + ".",
        "",
    ]
    if h.schedule == "async":
        md += [
            "ASHA promotes as results arrive, so which configurations reach the top rung "
            "depends on completion order; the journal records every decision and a resume "
            "replays them.",
            "",
        ]
    if plt is not None and h.rungs:
        path = plot_rungs(h, run_dir / "rungs.png", plt)
        md += [f"![rungs]({path.name})", ""]
    return md


def plot_rungs(h, path, plt):
    """Metric vs resource, one line per configuration; the dropped ones grey."""
    fig, ax = plt.subplots(figsize=(6, 4))
    survivors = h.survivor_keys()
    curves = sorted(h.curves().items(), key=lambda item: item[0] in survivors)
    for key, (params, points) in curves:
        points = [(r, m) for r, m in points if not math.isnan(m)]
        if not points:
            continue
        xs, ys = zip(*points)
        if key in survivors:
            ax.plot(xs, ys, marker="o", lw=2, label=_label(params)[:40])
        else:
            ax.plot(xs, ys, marker=".", lw=1, color="0.75", zorder=0)
    resources = h.resources
    if resources and resources[0] > 0 and resources[-1] / resources[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(resources, [format_value(r) for r in resources])
    ax.set_xlabel(h.resource)
    ax.set_ylabel(f"mean {h.metric}")
    ax.set_title(f"{_title(h)}\n(grey: dropped)", fontsize=9)
    if len(survivors) <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
