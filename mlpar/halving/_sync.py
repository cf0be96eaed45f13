"""Synchronous successive halving on top of :func:`mlpar.sweep`, one rung at a time.

Each rung is an ordinary sweep whose configurations carry the rung's
resource as a parameter, so every backend runs it unchanged and the rung's
journal resumes it like any sweep. The next rung is a pure function of the
previous rung's rows (:func:`~mlpar.halving._rungs.rank_configurations`),
so a run interrupted anywhere resumes to the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..results import SweepResult
from ..runs import atomic_write
from ..space import expand_space
from ..sweep import sweep
from ._continue import RungTrial, drop_checkpoints, rung_checkpoints
from ._rungs import check_halving, n_promoted, rank_configurations, rung_resources

__all__ = ["successive_halving", "HalvingResult", "Rung", "rung_journal"]


def rung_journal(journal_dir, rung):
    """The journal of rung ``rung`` in ``journal_dir``."""
    return Path(journal_dir) / f"rung-{rung}.jsonl"


@dataclass
class Rung:
    """One rung: its resource, its sweep, and who it promoted.

    Attributes
    ----------
    rung : int
    resource : int or float
        The value of the resource parameter for every trial of the rung.
    result : SweepResult
        The rung's rows (configurations x seeds).
    ranking : list of (str, dict, float)
        ``(config key, params without the resource, mean metric)``, best first.
    promoted : list of dict
        The configurations (without the resource) sent to the next rung; empty
        for the last rung.
    """

    rung: int
    resource: object
    result: SweepResult
    ranking: list = field(repr=False)
    promoted: list = field(repr=False)


@dataclass
class HalvingResult:
    """What :func:`successive_halving` returns: every rung, and the survivors.

    Attributes
    ----------
    rungs : list of Rung
    resource, metric, mode : str
    survivors : list of dict
        The configurations of the last rung, best first.
    """

    rungs: list
    resource: str
    metric: str
    mode: str

    @property
    def survivors(self):
        return [params for _, params, _ in self.rungs[-1].ranking]

    @property
    def resources(self):
        """The resource of every rung that ran."""
        return [r.resource for r in self.rungs]

    def best(self):
        """The best configuration of the last rung, as ``SweepResult.best`` gives it."""
        return self.rungs[-1].result.best(self.metric, mode=self.mode)

    def budget(self):
        """Resource spent (sum over trials of their resource) and that of a full search."""
        used = sum(r.resource * len(r.result) for r in self.rungs)
        full = len(self.rungs[0].result) * self.rungs[-1].resource
        return used, full

    def table(self):
        """One flat dict per trial of every rung: ``rung``, ``resource``, then the row."""
        out = []
        for r in self.rungs:
            for row in r.result:
                data = row.to_dict()
                params, metrics = data.pop("params"), data.pop("metrics")
                flat = {"rung": r.rung, "resource": r.resource}
                flat.update({k: data[k] for k in ("key", "index", "repeat", "seed", "status")})
                flat.update({f"param_{k}": v for k, v in params.items()})
                flat.update({f"metric_{k}": v for k, v in metrics.items()})
                flat.update({k: v for k, v in data.items() if k not in flat})
                out.append(flat)
        return out

    def to_csv(self, path):
        """Write :meth:`table` as CSV, atomically; lists and dicts as JSON."""
        table = self.table()
        columns = list(dict.fromkeys(k for flat in table for k in flat)) or ["rung"]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for flat in table:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()}
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, buffer.getvalue(), newline="")


def _configurations(space, *, resource, n_iter, factor, random_state):
    """Rung 0's configurations (without the resource), in the space's order."""
    if n_iter is not None and n_iter < factor:
        raise ValueError(
            f"n_iter must be at least factor ({factor}) for successive halving "
            f"(else no rung has anything to drop), got {n_iter!r}"
        )
    grids = [space] if isinstance(space, dict) else list(space)
    for grid in grids:
        if isinstance(grid, dict) and resource in grid:
            raise ValueError(
                f"resource {resource!r} must not be swept in the space: "
                "successive halving sets it for every rung; remove it from space"
            )
    trials = expand_space(space, n_iter=n_iter, seeds=1, random_state=random_state)
    return [t.params for t in trials]


def _as_score(error_score):
    """``error_score`` as the value of a failed repeat (NaN for 'raise': it never ranks)."""
    return math.nan if error_score == "raise" else float(error_score)


def _check_metric(result, metric):
    """ValueError when trials ran but none reported ``metric``."""
    ok = [row for row in result if row.status == "ok"]
    if ok and not any(metric in row.metrics for row in ok):
        names = sorted({name for row in ok for name in row.metrics})
        raise ValueError(
            f"metric {metric!r} is not reported by the trials; they report "
            f"{', '.join(names)}; set metric to one of those"
        )


def successive_halving(
    fn,
    space,
    *,
    resource="epochs",
    min_resource,
    max_resource,
    factor=3,
    metric="val_score",
    mode=None,
    n_iter=None,
    seeds=1,
    random_state=0,
    journal_dir=None,
    resume=False,
    error_score=math.nan,
    continue_from=None,
    **options,
):
    """Run synchronous successive halving: many configurations cheaply, the best ones longer.

    Rung 0 runs every configuration of ``space`` with ``params[resource] =
    min_resource``; each next rung keeps the best ``1/factor`` of the previous
    one (at least one) by the mean of ``metric`` over ``seeds``, ties broken by
    configuration key, and multiplies the resource by ``factor`` while it stays
    at most ``max_resource``. Every rung is one :func:`mlpar.sweep`, so every
    backend runs it, and the result is the same rows on every backend.

    Parameters
    ----------
    fn, space, n_iter, seeds, random_state, error_score
        As for :func:`mlpar.sweep`; ``space`` must not sweep ``resource``.
    resource : str, default='epochs'
        The numeric trial parameter that is the budget (``'epochs'``, or
        ``'n_samples'`` of a generated dataset, say).
    min_resource, max_resource : int or float
        The resource of rung 0, and the most any rung gets.
    factor : int, default=3
        Keep the best ``1/factor``; multiply the resource by ``factor``.
    metric : str, default='val_score'
        What ranks configurations; a repeat that did not end ``ok`` counts as
        ``error_score`` (NaN: ranked last).
    mode : {'max', 'min'}, default=None
        None: ``'min'`` for ``loss`` and ``best_loss``, else ``'max'``.
    journal_dir : path-like, default=None
        Folder of the rung journals ``rung-<i>.jsonl``.
    resume : bool, default=False
        Finish the run recorded in ``journal_dir``, mid-rung included.
    continue_from : bool, default=None
        Whether a promoted trial is offered the previous rung's checkpoint
        (:func:`mlpar.context.previous_checkpoint_path`); None: only when the
        resource is ``epochs``. Checkpoints live in ``journal_dir/checkpoints``
        (none without a ``journal_dir``); those of dropped configurations are
        deleted, and the last rung's are kept.
    **options
        Passed to every rung's sweep (``backend``, ``n_jobs``, ``timeout``...).

    Returns
    -------
    HalvingResult

    Examples
    --------
    >>> def fn(params, seed):
    ...     return {"score": params["x"] * (1 - 1 / (1 + params["epochs"]))}
    >>> out = successive_halving(fn, {"x": [1, 2, 3]}, min_resource=1, max_resource=3,
    ...                          metric="score")
    >>> out.resources, out.survivors
    ([1, 3], [{'x': 3}])
    """
    mode = check_halving(
        resource=resource,
        min_resource=min_resource,
        max_resource=max_resource,
        factor=factor,
        metric=metric,
        mode=mode,
    )
    if resume and journal_dir is None:
        raise ValueError("resume=True needs the journals: pass journal_dir=<folder>")
    configs = _configurations(
        space, resource=resource, n_iter=n_iter, factor=factor, random_state=random_state
    )
    ckpt_dir = None
    if journal_dir is not None:
        Path(journal_dir).mkdir(parents=True, exist_ok=True)
        ckpt_dir = Path(journal_dir) / "checkpoints"
    # Training continues along epochs only; any other resource restarts the trial.
    continues = resource == "epochs" if continue_from is None else bool(continue_from)
    resources, rungs = rung_resources(min_resource, max_resource, factor), []
    for i, r in enumerate(resources):
        rung_space = [{**{k: [v] for k, v in c.items()}, resource: [r]} for c in configs]
        trial = fn
        if ckpt_dir is not None:
            trial = RungTrial(
                fn,
                rung_checkpoints(
                    ckpt_dir,
                    rung_space,
                    rung=i,
                    resource=resource,
                    seeds=seeds,
                    random_state=random_state,
                    continues=continues,
                ),
            )
        result = sweep(
            trial,
            rung_space,
            seeds=seeds,
            random_state=random_state,
            error_score=error_score,
            resume=resume and journal_dir is not None,
            journal=None if journal_dir is None else rung_journal(journal_dir, i),
            **options,
        )
        _check_metric(result, metric)
        ranking = rank_configurations(
            result, resource=resource, metric=metric, mode=mode, error_score=_as_score(error_score)
        )
        last = i == len(resources) - 1
        promoted = [] if last else [p for _, p, _ in ranking[: n_promoted(len(configs), factor)]]
        if ckpt_dir is not None:
            drop_checkpoints(
                ckpt_dir,
                rung=i,
                resource=resource,
                keep=[p for _, p, _ in ranking] if last else promoted,
            )
        rungs.append(Rung(i, r, result, ranking, promoted))
        configs = promoted
    return HalvingResult(rungs, resource, metric, mode)
