"""PNG plots of a backend comparison (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_comparison"]


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


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_comparison(doc, run_dir, plt):
    """Write the comparison plots; returns their paths."""
    run_dir = Path(run_dir)
    groups = doc["groups"]
    cores = doc["cores"]
    paths = []

    # 1. Speedup per workload and backend, with the predicted thread curve.
    xs, ticks, xname = _group_axis(groups)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = []
    for g in groups:
        for r in g["summary"]:
            if r["label"] not in labels:
                labels.append(r["label"])
    for label in labels:
        ys = [next((r["speedup"] for r in g["summary"] if r["label"] == label), None)
              for g in groups]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts and not label.startswith("serial x1 blas1"):
            ax.plot(*zip(*pts), marker="o", label=label)
    if doc.get("gil_enabled", True):
        for key, style, name in (("predicted", "--", "threads predicted (GIL model)"),
                                 ("amdahl", ":", "threads, Amdahl only")):
            ys = [next((r.get(key) for r in g["summary"]
                        if r["backend"] == "threads" and r["n_jobs"] == cores), None)
                  for g in groups]
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), style, color="black", label=name)
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
    paths.append(_save(fig, run_dir / "speedup.png"))
    plt.close(fig)

    # 2. Python (GIL-held) vs numeric (GIL-free) time per step, per workload.
    if doc.get("gil_enabled", True):
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
        paths.append(_save(fig, run_dir / "gil_split.png"))
        plt.close(fig)

    # 3. Scaling with n_jobs, per backend (one line per workload).
    fig, ax = plt.subplots(figsize=(6.5, 4))
    drawn = False
    for g, x in zip(groups, xs if ticks is None else (ticks or xs)):
        for backend in sorted({r["backend"] for r in g["summary"]} - {"serial"}):
            pts = sorted((r["n_jobs"], r["speedup"]) for r in g["summary"]
                         if r["backend"] == backend and r["blas_threads"] == 1)
            if len(pts) > 1 or (pts and pts[0][0] > 1):
                pts = [(1, 1.0)] + [p for p in pts if p[0] != 1] if pts[0][0] != 1 else pts
                tag = f"{backend}" + (f" ({x})" if len(groups) > 1 else "")
                ax.plot(*zip(*pts), marker="o", label=tag)
                drawn = True
    if drawn:
        top = max(2, cores)
        ax.plot([1, top], [1, top], ":", color="grey", label="linear")
        ax.set_xlabel("n_jobs")
        ax.set_ylabel("speedup over serial")
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
        ax.set_title("scaling with n_jobs")
        paths.append(_save(fig, run_dir / "scaling.png"))
    plt.close(fig)

    # 4. Time per trial per backend setting (all workloads together).
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data, names = [], []
    for label in labels:
        times = [t for g in groups for run in g["runs"] if run["label"] == label
                 for t in run["trial_wall"] if t is not None]
        if times:
            data.append(times)
            names.append(label)
    if data:
        ax.boxplot(data)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_ylabel("seconds per trial")
        ax.set_yscale("log")
        ax.set_title("time per trial per backend")
        paths.append(_save(fig, run_dir / "trial_time.png"))
    plt.close(fig)
    return paths
