"""PNG plots of a backend comparison (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .tables import format_value

__all__ = ["plot_comparison", "plot_score_vs_params", "plot_predicted_vs_measured", "figures"]


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


def figures():
    """A pyplot stand-in on matplotlib's object API, or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return _Figures(Figure)


def plot_score_vs_params(rows, metric, out_dir, plt):
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
            labels = sorted({format_value(x) for x in xs})
            pos = {lab: i for i, lab in enumerate(labels)}
            ax.scatter([pos[format_value(x)] for x in xs], ys, alpha=0.7)
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


def _group_axis(groups):
    """x positions and tick labels: numeric when one numeric parameter varies."""
    labels = [", ".join(f"{k}={v}" for k, v in g["group"].items()) or "all" for g in groups]
    keys = {tuple(g["group"]) for g in groups}
    if len(keys) == 1 and len(next(iter(keys))) == 1:
        (name,) = next(iter(keys))
        values = [g["group"][name] for g in groups]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return values, None, name
    return list(range(len(groups))), labels, "workload"


def _save(fig, path, plt):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_comparison(doc, run_dir, plt):
    """Write the comparison plots; returns their paths."""
    run_dir = Path(run_dir)
    groups = doc["groups"]
    axis = _group_axis(groups)
    labels = list(dict.fromkeys(r["label"] for g in groups for r in g["summary"]))
    paths = [_plot_speedup(doc, labels, axis, run_dir / "speedup.png", plt)]
    if doc.get("gil_enabled", True):
        paths.append(_plot_gil_split(groups, axis, run_dir / "gil_split.png", plt))
    paths.append(_plot_scaling(groups, doc["cores"], axis, run_dir / "scaling.png", plt))
    points = [
        (r["predicted"], r["speedup"], r["label"])
        for g in groups
        for r in g["summary"]
        if r.get("predicted") and r.get("speedup") and r["label"] != "serial x1 blas1"
    ]
    paths.append(
        plot_predicted_vs_measured(points, run_dir / "model_check.png", plt, "model check")
    )
    paths.append(_plot_trial_times(groups, labels, run_dir / "trial_time.png", plt))
    return [path for path in paths if path is not None]


def _plot_speedup(doc, labels, axis, path, plt):
    """Speedup per workload and backend, with the predicted thread curve."""
    groups, cores = doc["groups"], doc["cores"]
    xs, ticks, xname = axis
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label in labels:
        ys = [
            next((r["speedup"] for r in g["summary"] if r["label"] == label), None) for g in groups
        ]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts and label != "serial x1 blas1":  # the baseline, 1.0 by definition
            ax.plot(*zip(*pts), marker="o", label=label)
    if doc.get("gil_enabled", True):
        for key, style, name in (
            ("predicted", "--", "threads predicted (hand-off simulation)"),
            ("amdahl", ":", "threads, Amdahl only"),
        ):
            ys = [
                next(
                    (
                        r.get(key)
                        for r in g["summary"]
                        if r["backend"] == "threads" and r["n_jobs"] == cores
                    ),
                    None,
                )
                for g in groups
            ]
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), style, color="black", label=name)
        bands = [
            (x, b[0], b[1]) for x, g in zip(xs, groups) for b in [_threads_band(g, cores)] if b
        ]
        if bands:
            bx, lo, hi = zip(*bands)
            ax.fill_between(bx, lo, hi, color="black", alpha=0.12, label="prediction band")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("speedup over serial (1 BLAS thread)")
    ax.set_xlabel(xname)
    if ticks:
        ax.set_xticks(xs, ticks, rotation=30, ha="right")
    elif min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("speedup per backend")
    return _save(fig, path, plt)


def _plot_gil_split(groups, axis, path, plt):
    """Python (GIL-held) vs numeric (GIL-free) time per step, per workload."""
    xs, ticks, xname = axis
    fig, ax = plt.subplots(figsize=(6.5, 4))
    py = [g["calibration"].get("python_time", 0) * 1e6 for g in groups]
    nu = [g["calibration"].get("numeric_time", 0) * 1e6 for g in groups]
    pos = list(range(len(groups)))
    ax.bar(pos, py, label="Python, holds the GIL")
    ax.bar(pos, nu, bottom=py, label="numeric kernels, GIL released")
    names = ticks or [f"{xname}={x}" for x in xs]
    ax.set_xticks(pos, names, rotation=30, ha="right")
    ax.set_ylabel("µs per training step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("where a training step's time goes")
    return _save(fig, path, plt)


def _plot_scaling(groups, cores, axis, path, plt):
    """Scaling with n_jobs, per backend (one line per workload); None if nothing to draw."""
    xs, ticks, _ = axis
    fig, ax = plt.subplots(figsize=(6.5, 4))
    drawn = False
    for g, x in zip(groups, xs if ticks is None else (ticks or xs)):
        for backend in sorted({r["backend"] for r in g["summary"]} - {"serial"}):
            pts = sorted(
                (r["n_jobs"], r["speedup"])
                for r in g["summary"]
                if r["backend"] == backend and r["blas_threads"] == 1 and r["speedup"] is not None
            )
            if len(pts) > 1 or (pts and pts[0][0] > 1):
                pts = [(1, 1.0)] + [p for p in pts if p[0] != 1] if pts[0][0] != 1 else pts
                tag = f"{backend}" + (f" ({x})" if len(groups) > 1 else "")
                ax.plot(*zip(*pts), marker="o", label=tag)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    top = max(2, cores)
    ax.plot([1, top], [1, top], ":", color="grey", label="linear")
    ax.set_xlabel("n_jobs")
    ax.set_ylabel("speedup over serial")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    ax.set_title("scaling with n_jobs")
    return _save(fig, path, plt)


def _plot_trial_times(groups, labels, path, plt):
    """Time per trial per backend setting (all workloads together); None without data."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data, names = [], []
    for label in labels:
        times = [
            t
            for g in groups
            for run in g["runs"]
            if run["label"] == label
            for t in run["trial_wall"]
            if t is not None
        ]
        if times:
            data.append(times)
            names.append(label)
    if not data:
        plt.close(fig)
        return None
    ax.boxplot(data)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("seconds per trial")
    ax.set_yscale("log")
    ax.set_title("time per trial per backend")
    return _save(fig, path, plt)


def _threads_band(group, cores):
    row = next(
        (
            r
            for r in group["summary"]
            if r["backend"] == "threads" and r["n_jobs"] == cores and r.get("predicted_band")
        ),
        None,
    )
    return row["predicted_band"] if row else None


def plot_predicted_vs_measured(points, path, plt, title, *, note=None):
    """Measured against predicted speedup, one dot per ``(predicted, measured, label)``.

    The diagonal is a perfect prediction, the shaded wedge within 15% of it;
    None when there is nothing to draw.
    """
    points = [(p, m, label) for p, m, label in points if p and m]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(max(p, m) for p, m, _ in points) * 1.1
    low = min(min(p, m) for p, m, _ in points) * 0.9
    line = [low, top]
    ax.plot(line, line, color="black", lw=0.8, label="measured = predicted")
    ax.fill_between(
        line,
        [x * 0.85 for x in line],
        [x * 1.15 for x in line],
        color="grey",
        alpha=0.2,
        label="within 15%",
    )
    kinds = {}
    for p, m, label in points:
        kinds.setdefault(label, []).append((p, m))
    for label, pts in kinds.items():
        ax.plot(*zip(*pts), "o", label=label, alpha=0.8)
    ax.set_xlabel("predicted speedup over serial")
    ax.set_ylabel("measured speedup over serial")
    ax.set_xlim(low, top)
    ax.set_ylim(low, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title if note is None else f"{title}\n{note}", fontsize=9)
    return _save(fig, path, plt)
