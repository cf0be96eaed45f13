"""Optuna's plots of a sampler's search, built from the journal (``mlpar[optuna]``).

The journal is the source of truth: an in-memory study is rebuilt from its
rows (``create_trial`` + ``add_trial``), and Optuna's matplotlib
optimization-history and parameter-importance plots are saved into the run
folder. Without Optuna or matplotlib, or for a sweep without a sampler, the
report has no such section.
"""

from __future__ import annotations

import math
import numbers

from ..space import canonical_json

__all__ = ["optuna_section"]


def _study(optuna, rows, metric, direction):
    dists = optuna.distributions
    names = sorted({k for r in rows for k in r.params})
    distributions = {}
    for name in names:
        values = [r.params.get(name) for r in rows]
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) > 1:
            low, high = float(min(values)), float(max(values))
            distributions[name] = dists.FloatDistribution(
                low, high, log=low > 0 and high / low > 100
            )
        else:
            distributions[name] = dists.CategoricalDistribution(
                sorted({canonical_json(v) for v in values})
            )
    study = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
    state = optuna.trial.TrialState
    for row in sorted(rows, key=lambda r: (r.sampler_trial is None, r.sampler_trial)):
        value = row.metrics.get(metric) if row.status == "ok" else None
        ok = isinstance(value, numbers.Real) and math.isfinite(value)
        params = {
            n: float(row.params[n])
            if isinstance(d, dists.FloatDistribution)
            else canonical_json(row.params.get(n))
            for n, d in distributions.items()
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=float(value) if ok else None,
                state=state.COMPLETE if ok else state.FAIL,
            )
        )
    return study


def optuna_section(result, run_dir):
    """Markdown lines with Optuna's plots for a sampler's sweep, [] otherwise."""
    info = result.info
    if not info.get("sampler"):
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import optuna
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = info.get("metric", "val_score"), info.get("mode", "max")
    study = _study(optuna, list(result), metric, mode)
    md = [f"## Optuna: {info['sampler']} on {metric} ({len(study.trials)} trials)", ""]
    plots = [("optuna_history", ovm.plot_optimization_history)]
    if (
        sum(t.state.name == "COMPLETE" for t in study.trials) >= 2
        and len(study.trials[0].params) > 1
    ):
        plots.append(("optuna_importance", ovm.plot_param_importances))
    for stem, plot in plots:
        try:
            ax = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances of constant values
            md += [f"_{stem}: not drawn ({exc})_", ""]
            continue
        figure = ax.figure
        path = run_dir / f"{stem}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
        md += [f"![{stem}]({path.name})", ""]
    return md
