"""Sources: what a sweep runs next, decided as results come in.

A :class:`Source` hands trials to :func:`~mlpar.search.run_source` whenever
workers are free and is told every final row. A grid or random search is a
source that knows every trial up front (:class:`GridSource`); successive
halving, ASHA and model-based samplers decide from the rows they are told.
"""

from __future__ import annotations

from ..space import fingerprint

__all__ = ["Source", "GridSource"]


class Source:
    """The protocol of a search: ``resume``, then ``ask`` and ``tell`` until done.

    :func:`~mlpar.search.run_source` calls :meth:`resume` once with the rows
    already in the journal (empty for a new sweep), then :meth:`ask` whenever
    nothing is queued and a worker is free, and :meth:`tell` with every final
    row (after retries) in completion order. The sweep ends when ``ask``
    returns nothing and no trial is running.

    Attributes
    ----------
    header : dict
        Identity of the search for the journal header: ``trials`` (a
        fingerprint of what it runs) and ``n_trials`` (None when unknown in
        advance); a resumed journal must have the same ``trials``.
    total : int or None
        Trials the progress bar expects, None when unknown.
    """

    header: dict = {}
    total: int | None = None

    def replay(self, events):
        """The journal's event records (decisions this source wrote), before :meth:`resume`."""

    def resume(self, rows):
        """Rows already recorded in the journal: replay them, do not run them again."""

    def events(self):
        """Decisions taken by the last :meth:`ask`, as dicts to journal; drained on reading.

        The loop writes them to the journal before it starts the trials they
        decided, so a resumed search replays every decision whose trial may
        have run, instead of deciding again (see :meth:`replay`).
        """
        return []

    def ask(self, free):
        """Trials to start now, as ``[(index, Trial), ...]``; ``[]`` while waiting.

        ``free`` is the number of idle workers (at least 1). A source may
        return more (a grid returns all its trials at once, so that they can
        stack); an adaptive one returns at most ``free`` so that each decision
        is taken as late as possible.
        """
        raise NotImplementedError

    def tell(self, row):
        """A trial's final :class:`~mlpar.results.TrialRow`."""

    def row_fields(self, trial):
        """Extra :class:`~mlpar.results.TrialRow` fields for this trial's row (``rung``...)."""
        return {}


class GridSource(Source):
    """Every trial of an expanded space, in its order: grid and random search."""

    def __init__(self, trials):
        self.trials = list(trials)
        self.header = {"trials": fingerprint(self.trials), "n_trials": len(self.trials)}
        self.total = len(self.trials)
        self._todo = list(enumerate(self.trials))

    def resume(self, rows):
        done = {row.key for row in rows}
        self._todo = [(i, t) for i, t in enumerate(self.trials) if t.key not in done]

    def ask(self, free):
        todo, self._todo = self._todo, []
        return todo
