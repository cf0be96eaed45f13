"""What a halving search returns: its rungs, read back from the rows alone.

:class:`HalvingResult` is built from a :class:`~mlpar.results.SweepResult`
whose rows carry ``rung`` and ``resource``, so a run read from its journal
gives the same rungs, rankings and budget as the run that wrote it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..results import SweepResult, write_csv
from ._rungs import config_key, rank_configurations

__all__ = ["HalvingResult", "Rung"]


@dataclass
class Rung:
    """One rung: its resource, its rows, and who went on from it.

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
        The configurations (without the resource) that ran in the next rung,
        in ranking order; empty for the last rung.
    """

    rung: int
    resource: object
    result: SweepResult
    ranking: list = field(repr=False)
    promoted: list = field(repr=False)


class HalvingResult:
    """The rungs of a halving search, and its survivors.

    Attributes
    ----------
    result : SweepResult
        Every row of every rung.
    rungs : list of Rung
    resource, metric, mode : str
        ``mode`` is the metric's direction (``'max'`` or ``'min'``).
    schedule : {'sync', 'async'}
    max_resource : number
        The resource of the last rung the search could reach.
    """

    def __init__(self, result, spec):
        self.result, self.spec = result, spec
        self.resource, self.metric, self.mode = spec.resource, spec.metric, spec.metric_mode
        self.schedule, self.max_resource = spec.mode, spec.resources[-1]
        error = result.info.get("error_score", math.nan)
        error = math.nan if error == "raise" else float(error)
        by_rung = {}
        for row in result:
            if row.rung is not None:
                by_rung.setdefault(row.rung, []).append(row)
        self.rungs = []
        for i in sorted(by_rung):
            rows = by_rung[i]
            ranking = rank_configurations(
                rows, resource=spec.resource, metric=spec.metric, mode=self.mode, error_score=error
            )
            self.rungs.append(
                Rung(i, rows[0].resource, SweepResult(rows, info=result.info), ranking, [])
            )
        for lower, upper in zip(self.rungs, self.rungs[1:]):
            above = {key for key, _, _ in upper.ranking}
            lower.promoted = [p for key, p, _ in lower.ranking if key in above]

    def __repr__(self):
        sizes = " -> ".join(f"{len(r.ranking)}@{r.resource}" for r in self.rungs)
        return f"HalvingResult({self.schedule}, {self.resource}: {sizes})"

    @property
    def survivors(self):
        """The configurations of the last rung that ran, best first."""
        return [params for _, params, _ in self.rungs[-1].ranking] if self.rungs else []

    @property
    def resources(self):
        """The resource of every rung that ran."""
        return [r.resource for r in self.rungs]

    def best(self):
        """The best configuration of the last rung, as ``SweepResult.best`` gives it."""
        return self.rungs[-1].result.best(self.metric, mode=self.mode)

    def budget(self):
        """``(used, full)``: the resource spent (sum over trials), and a full search's.

        A full search trains every configuration and seed of rung 0 with the
        largest resource the rungs allow.
        """
        used = sum(row.resource for r in self.rungs for row in r.result)
        full = len(self.rungs[0].result) * self.max_resource if self.rungs else 0
        return used, full

    def rung_table(self):
        """One dict per rung: ``rung``, ``resource``, ``configs``, ``trials``, ``promoted``, ``best``."""
        return [
            {
                "rung": r.rung,
                "resource": r.resource,
                "configs": len(r.ranking),
                "trials": len(r.result),
                "promoted": len(r.promoted),
                "best": r.ranking[0][2] if r.ranking else math.nan,
                "best_params": r.ranking[0][1] if r.ranking else None,
            }
            for r in self.rungs
        ]

    def curves(self):
        """``{config key: (params, [(resource, mean metric), ...])}``: each configuration's path."""
        out = {}
        for r in self.rungs:
            for key, params, mean in r.ranking:
                out.setdefault(key, (params, []))[1].append((r.resource, mean))
        return out

    def survivor_keys(self):
        """The configuration keys of the last rung that ran."""
        return {config_key(p, self.resource) for p in self.survivors}

    def table(self):
        """One flat dict per trial of every rung: ``rung``, ``resource``, then the row."""
        return [
            {"rung": r.rung, "resource": r.resource, **flat}
            for r in self.rungs
            for flat in r.result.table()
        ]

    def to_csv(self, path):
        """Write :meth:`table` as CSV, atomically; lists and dicts as JSON."""
        return write_csv(path, self.table(), empty=["rung"])
