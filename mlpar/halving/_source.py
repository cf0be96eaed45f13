"""Successive halving and ASHA as sources of :func:`mlpar.search.run_source`.

A *job* is one configuration at one rung: ``seeds`` trials whose parameters
carry the rung's resource. :class:`SyncHalving` asks for a whole rung at once
and decides the next one when its last row arrives, so the rows are a pure
function of the configurations and their metrics (the same on every backend,
and after any resume). :class:`AsyncHalving` (ASHA) decides whenever a worker
frees up: it promotes a configuration in the top ``1/factor`` of its rung's
finished jobs, else starts a new configuration; no worker waits for a rung.
Its decisions depend on completion order, so each one is journaled as an
event and a resumed run replays them instead of deciding again.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

from ..search import Source
from ..space import Trial, fingerprint, trial_key, trial_seed
from ._continue import checkpoint_file
from ._rungs import config_key, mean_metric, n_promoted, rank_order

__all__ = ["SyncHalving", "AsyncHalving", "make_source"]


class _Job:
    """One configuration at one rung: its trials, and the rows told so far."""

    def __init__(self, cindex, rung, trials):
        self.cindex, self.rung, self.trials = cindex, rung, trials
        self.rows = {}
        self.promoted = False
        self.value = None  # the mean metric, once complete

    @property
    def complete(self):
        return len(self.rows) == len(self.trials)


class _Halving(Source):
    """What both schedules share: configurations, jobs, ranking and checkpoints."""

    def __init__(self, configs, spec, *, seeds, random_state, error_score, checkpoints):
        self.configs, self.spec = list(configs), spec
        self.seeds, self.random_state = int(seeds), int(random_state)
        self.error_score = math.nan if error_score == "raise" else float(error_score)
        self.resources = spec.resources
        self.ckeys = [config_key(c, spec.resource) for c in self.configs]
        self.checkpoints = None if checkpoints is None else Path(checkpoints)
        self.jobs, self.by_key, self.told, self.ranked = {}, {}, set(), {}
        self._seed_cache, self._trial_cache = {}, {}
        self.next_index, self.finished, self._events = 0, False, []
        rung0 = [t for c in range(len(self.configs)) for t in self._trials(c, 0, advance=False)]
        n, total = len(self.configs), 0
        for _ in self.resources:
            total, n = total + n * self.seeds, n_promoted(n, spec.factor)
        # What sync runs when nothing fails; ASHA's count depends on the order.
        self.total = total
        # The journal's identity: rung 0's trials, and the halving settings.
        self.header = {"trials": fingerprint(rung0), "n_trials": total, "halving": spec.to_dict()}

    # ------------------------------------------------------------ jobs
    def _trials(self, cindex, rung, *, advance=True):
        out = self._trial_cache.pop((cindex, rung), None)
        if out is None:
            params = {**self.configs[cindex], self.spec.resource: self.resources[rung]}
            out = [
                Trial(trial_key(params, repeat), params, repeat, seed)
                for repeat, seed in enumerate(self._seeds(cindex))
            ]
            if not advance:  # rung 0's, made for the header: kept for its jobs
                self._trial_cache[(cindex, rung)] = out
        if advance:
            out = [(self.next_index + i, t) for i, t in enumerate(out)]
            self.next_index += len(out)
        return out

    def _seeds(self, cindex):
        """The seeds of a configuration's repeats: the same in every rung, computed once.

        A restarted trial replays its earlier rung's start. (Hashing a key and
        mixing a seed cost ~0.1 ms, which ASHA would pay at every decision.)
        """
        seeds = self._seed_cache.get(cindex)
        if seeds is None:
            base = self.configs[cindex]
            seeds = [trial_seed(self.random_state, trial_key(base, r)) for r in range(self.seeds)]
            self._seed_cache[cindex] = seeds
        return seeds

    def _start(self, cindex, rung):
        """Create the job of configuration ``cindex`` at ``rung``; returns its indexed trials."""
        trials = self._trials(cindex, rung)
        job = self.jobs[(cindex, rung)] = _Job(cindex, rung, [t for _, t in trials])
        for _, t in trials:
            self.by_key[t.key] = job
        if rung > 0:
            self.jobs[(cindex, rung - 1)].promoted = True
        return trials

    def value(self, job):
        """A complete job's :func:`~mlpar.halving._rungs.mean_metric` (computed once)."""
        if job.value is None:
            job.value = mean_metric(job.rows.values(), self.spec.metric, self.error_score)
        return job.value

    def _order(self, job):
        return rank_order(self.value(job), self.ckeys[job.cindex], self.spec.metric_mode)

    def ranking(self, rung):
        """The complete jobs of ``rung``, best first (NaN last, ties by configuration key)."""
        return [job for _, job in self.ranked.get(rung, [])]

    # ------------------------------------------------------------ protocol
    def row_fields(self, trial):
        job = self.by_key[trial.key]
        return {"rung": job.rung, "resource": self.resources[job.rung]}

    def tell(self, row):
        self._check_metric(row)
        job = self.by_key.get(row.key)
        if job is None:
            return
        if row.key in job.rows:
            return
        job.rows[row.key] = row
        self.told.add(row.key)
        if job.complete:
            # Kept sorted as jobs complete: ASHA ranks a rung at every ask.
            bisect.insort(self.ranked.setdefault(job.rung, []), (self._order(job), job))
            if job.rung > 0:  # the previous rung's checkpoint has served its purpose
                self._drop(job.cindex, job.rung - 1)
        self._after(job)

    def _check_metric(self, row):
        if row.status == "ok" and self.spec.metric not in row.metrics:
            names = sorted(row.metrics)
            raise ValueError(
                f"halving metric {self.spec.metric!r} is not reported by the trials; "
                f"they report {', '.join(names) or 'nothing'}; set metric to one of those"
            )

    def events(self):
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------ checkpoints
    def _drop(self, cindex, rung):
        if self.checkpoints is None:
            return
        for seed in self._seeds(cindex):
            checkpoint_file(self.checkpoints, self.ckeys[cindex], seed, rung).unlink(
                missing_ok=True
            )

    def _finish(self):
        """The search is over: keep only the final survivors' checkpoints."""
        if self.finished:
            return
        self.finished = True
        top = max((r for _, r in self.jobs), default=0)
        for cindex, rung in list(self.jobs):
            if rung < top:
                self._drop(cindex, rung)

    def _after(self, job):
        """Hook: a row of ``job`` arrived."""


class SyncHalving(_Halving):
    """Synchronous successive halving: a rung at a time, deterministic."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rung, self.asked, self.members = 0, False, list(range(len(self.configs)))
        self._queue = []

    def _open_rung(self):
        """Create the current rung's jobs; returns their trials."""
        self.asked = True
        return [item for c in self.members for item in self._start(c, self.rung)]

    def _after(self, job):
        rung_jobs = [self.jobs[(c, self.rung)] for c in self.members]
        if not self.asked or not all(j.complete for j in rung_jobs):
            return
        if self.rung == len(self.resources) - 1:
            self._finish()  # the last rung: all of it survives
            return
        ranking = self.ranking(self.rung)
        # A configuration whose mean is NaN failed: it is never promoted.
        keep = ranking[: n_promoted(len(rung_jobs), self.spec.factor)]
        keep = [j for j in keep if not math.isnan(self.value(j))]
        kept = {j.cindex for j in keep}
        for j in rung_jobs:
            if j.cindex not in kept:
                self._drop(j.cindex, self.rung)
        if not keep:
            self._finish()
            return
        self.rung, self.asked, self.members = self.rung + 1, False, sorted(kept)

    def resume(self, rows):
        # Replay: open each rung as the run did, feed it its rows, decide the next.
        by_key = {r.key: r for r in rows}
        while not self.finished:
            trials = self._open_rung()
            missing = [(i, t) for i, t in trials if t.key not in by_key]
            for _, t in trials:
                if t.key in by_key:
                    self.tell(by_key[t.key])
            if missing:
                self._queue = missing
                return

    def ask(self, free):
        if self._queue:
            out, self._queue = self._queue, []
            return out
        if self.finished or self.asked:
            return []
        return self._open_rung()


class AsyncHalving(_Halving):
    """ASHA: promote from the top ``1/factor`` of a rung's finished jobs, else start anew."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started, self._queue = 0, []

    def _decide(self):
        """The next job as ``(cindex, rung)``, or None when nothing can start now."""
        for rung in reversed(range(len(self.resources) - 1)):
            ranked = self.ranking(rung)
            for job in ranked[: len(ranked) // self.spec.factor]:
                if not job.promoted and not math.isnan(self.value(job)):
                    return job.cindex, rung + 1
        if self.started < len(self.configs):
            return self.started, 0
        return None

    def _begin(self, cindex, rung):
        if rung == 0:
            self.started += 1
        return self._start(cindex, rung)

    def replay(self, events):
        for e in events:
            if e.get("event") != "start":
                continue
            cindex, rung = int(e["config"]), int(e["rung"])
            if (cindex, rung) in self.jobs or not (
                0 <= cindex < len(self.configs) and 0 <= rung < len(self.resources)
            ):
                raise ValueError(
                    f"the journal's ASHA decision {e!r} does not fit this search; "
                    "resume with the original space and halving settings"
                )
            self._queue += self._begin(cindex, rung)

    def resume(self, rows):
        for row in sorted(rows, key=lambda r: r.index):
            if row.key in self.by_key:
                self.tell(row)
        self._queue = [(i, t) for i, t in self._queue if t.key not in self.told]

    def ask(self, free):
        out, self._queue = self._queue, []
        while len(out) < free:
            job = self._decide()
            if job is None:
                break
            cindex, rung = job
            self._events.append(
                {"event": "start", "config": cindex, "rung": rung, "key": self.ckeys[cindex]}
            )
            out += self._begin(cindex, rung)
        if not out and len(self.told) == len(self.by_key):
            self._finish()
        return out


def make_source(configs, spec, **kwargs):
    """The source of ``spec.mode``: :class:`SyncHalving` or :class:`AsyncHalving`."""
    return (AsyncHalving if spec.mode == "async" else SyncHalving)(configs, spec, **kwargs)
