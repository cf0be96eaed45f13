"""Plots of the lessons: matplotlib's Agg canvas, imported only when a plot is drawn."""

from ._common import format_seconds


def render_png(draw, path, *, height):
    """Draw a figure with matplotlib's Agg canvas and save it as PNG.

    Parameters
    ----------
    draw : callable
        Called with a matplotlib ``Axes`` to draw on.
    path : path-like
        Where to write the PNG.
    height : float
        Figure height in inches.

    Returns
    -------
    png : str or None
        The path written, or None when matplotlib is missing.
    note : str or None
        Why no plot was written, or None.
    """
    try:
        # Figure + FigureCanvasAgg, not pyplot: no global backend switch, no
        # figure registry, so calling a lesson from a notebook changes nothing.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return (
            None,
            "matplotlib is not installed, so no plot was written (pip install 'mlpar[plot]')",
        )
    fig = Figure(figsize=(8.0, height))
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path), None


def draw_timing_bars(ax, result, *, title):
    """Horizontal bars of median time per setting, min-max whiskers, speedup labels."""
    rows = [row for row in result.rows if row.get("median_s") is not None]
    labels = [row["setting"] for row in rows]
    medians = [row["median_s"] for row in rows]
    lower = [row["median_s"] - row["min_s"] for row in rows]
    upper = [row["max_s"] - row["median_s"] for row in rows]
    colors = ["tab:gray" if row.get("speedup") is None else "tab:blue" for row in rows]
    colors[0] = "tab:orange"  # the serial baseline comes first in every timing lesson
    y = list(range(len(rows)))
    ax.barh(y, medians, xerr=[lower, upper], color=colors, capsize=3)
    for yi, row in zip(y, rows):
        label = f" {row['speedup']:.2f}x" if row.get("speedup") is not None else ""
        ax.text(
            row["max_s"],
            yi,
            f"{label} ({format_seconds(row['median_s'])})",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"wall time, median of {len(rows[0]['times_s'])} repeats (whiskers: min-max)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.3)
