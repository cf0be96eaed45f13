"""run_halving(): a halving search over a space, on :func:`mlpar.search.run_source`.

:func:`mlpar.sweep` with ``halving=`` and :func:`successive_halving` both come
here: the configurations are drawn once (a grid, or ``n_iter`` random ones),
the trial function is wrapped so that it sees its checkpoint paths, and a
:class:`~mlpar.halving._source.SyncHalving` or ``AsyncHalving`` source
decides what runs. One journal holds every rung's rows (and ASHA's decisions).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from ..search import run_source
from ..space import expand_space
from ._continue import HalvingTrial
from ._result import HalvingResult
from ._source import make_source
from ._spec import as_halving

__all__ = ["run_halving", "successive_halving", "checkpoint_dir"]


def checkpoint_dir(journal):
    """Where the checkpoints of a halving run journaled at ``journal`` live."""
    journal = Path(journal)
    return journal.with_name(f"{journal.stem}.checkpoints")


def _configurations(space, spec, *, n_iter, random_state):
    """Rung 0's configurations (without the resource), in the space's order."""
    if n_iter is not None and n_iter < spec.factor:
        raise ValueError(
            f"n_iter must be at least the halving factor ({spec.factor}) "
            f"(else no rung has anything to drop), got {n_iter!r}"
        )
    grids = [space] if isinstance(space, dict) else list(space)
    for grid in grids:
        if isinstance(grid, dict) and spec.resource in grid:
            raise ValueError(
                f"the halving resource {spec.resource!r} must not be swept in the space: "
                "halving sets it for every rung; remove it from the space"
            )
    trials = expand_space(space, n_iter=n_iter, seeds=1, random_state=random_state)
    return [t.params for t in trials]


def run_halving(
    fn,
    space,
    halving,
    *,
    n_iter=None,
    seeds=1,
    random_state=0,
    error_score=math.nan,
    journal=None,
    checkpoints=None,
    **options,
):
    """Run a halving search; returns the SweepResult, with ``.halving`` set.

    ``halving`` is a dict of :class:`~mlpar.halving.Halving`'s keys (or a
    Halving). Checkpoints live in ``checkpoints``, else beside the journal
    (``<journal stem>.checkpoints/``), else in a temporary folder removed at
    the end; ``checkpoints=False``: none, every rung restarts its trials.
    ``options`` are :func:`mlpar.search.run_source`'s (``backend``, ``n_jobs``,
    ``resume``...).
    """
    spec = as_halving(halving)
    if options.get("stack") not in (None, 1, "auto"):
        raise ValueError(
            f"stack={options['stack']!r} does not combine with halving: a promoted trial "
            "continues its own checkpoint; use stack=None"
        )
    options["stack"] = None
    numeric = getattr(fn, "numeric_params", None)
    if numeric is not None and spec.resource not in numeric:
        raise ValueError(
            f"the halving resource must be a numeric trial parameter of "
            f"{getattr(fn, '__name__', type(fn).__name__)} ({', '.join(sorted(numeric))}), "
            f"got {spec.resource!r}"
        )
    configs = _configurations(space, spec, n_iter=n_iter, random_state=random_state)
    owned = None
    if checkpoints is None and journal is not None:
        checkpoints = checkpoint_dir(journal)
    if checkpoints is None:
        checkpoints = owned = tempfile.mkdtemp(prefix="mlpar-halving-")
    if checkpoints is False:
        checkpoints = None
    else:
        Path(checkpoints).mkdir(parents=True, exist_ok=True)
    trial = HalvingTrial(
        fn,
        checkpoints,
        resource=spec.resource,
        resources=spec.resources,
        # Training continues along epochs only; any other resource restarts.
        continues=spec.resource == "epochs",
        configs=configs,
    )
    source = make_source(
        configs,
        spec,
        seeds=seeds,
        random_state=random_state,
        error_score=error_score,
        checkpoints=checkpoints,
    )
    try:
        result = run_source(
            trial,
            source,
            header={"random_state": int(random_state), "seeds": int(seeds), "n_iter": n_iter},
            error_score=error_score,
            journal=journal,
            **options,
        )
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
    result.halving = HalvingResult(result, spec)
    return result


def successive_halving(
    fn,
    space,
    *,
    resource="epochs",
    min_resource,
    max_resource,
    factor=3,
    metric="val_score",
    metric_mode=None,
    mode="sync",
    **options,
):
    """Run successive halving (``mode='sync'``) or ASHA (``mode='async'``) over ``space``.

    Rung 0 runs every configuration of ``space`` with ``params[resource] =
    min_resource``; each next rung has ``factor`` times the resource, up to
    ``max_resource``, for the best ``1/factor`` of the previous rung (at
    least one), ranked by the mean of ``metric`` over ``seeds``, ties broken
    by configuration key. A configuration whose mean is NaN (a seed that
    failed, crashed, timed out or diverged) ranks last and is never promoted:
    a bad trial is demoted, never fatal.

    ``mode='sync'`` runs a rung at a time: its rows are the same on every
    backend and after any resume. ``mode='async'`` (ASHA) never makes a
    worker wait for a rung: when one frees up it promotes a configuration in
    the top ``1/factor`` of its rung's finished ones, else starts a new one;
    which configurations reach the top rung then depends on completion order,
    and each decision is journaled so that ``resume`` replays it.

    Parameters
    ----------
    fn, space
        As for :func:`mlpar.sweep`; ``space`` must not sweep ``resource``.
    resource : str, default='epochs'
        The numeric trial parameter that is the budget (``'epochs'``, or
        ``'n_samples'`` of a generated dataset...). Along ``epochs`` a promoted
        trial is offered its previous rung's checkpoint
        (:func:`mlpar.context.previous_checkpoint_path`); ``train_mlp``
        continues from it. Other resources restart.
    min_resource, max_resource : int or float
    factor : int, default=3
    metric : str, default='val_score'
    metric_mode : {'max', 'min'}, default=None
        None: ``'min'`` for ``loss`` and ``best_loss``, else ``'max'``.
    mode : {'sync', 'async'}, default='sync'
    **options
        :func:`mlpar.sweep`'s (``n_iter``, ``seeds``, ``random_state``,
        ``backend``, ``n_jobs``, ``journal``, ``resume``, ``timeout``...).

    Returns
    -------
    HalvingResult
        Its ``result`` is the SweepResult of every rung's rows.

    Examples
    --------
    >>> def fn(params, seed):
    ...     return {"score": params["x"] * (1 - 1 / (1 + params["epochs"]))}
    >>> out = successive_halving(fn, {"x": [1, 2, 3]}, min_resource=1, max_resource=3,
    ...                          metric="score")
    >>> out.resources, out.survivors
    ([1, 3], [{'x': 3}])
    """
    halving = dict(
        resource=resource,
        min_resource=min_resource,
        max_resource=max_resource,
        factor=factor,
        metric=metric,
        metric_mode=metric_mode,
        mode=mode,
    )
    return run_halving(fn, space, halving, **options).halving
