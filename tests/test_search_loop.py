"""The search loop: a source is asked when workers free up and told every final row."""

import pytest

from mlpar.results import read_journal
from mlpar.search import GridSource, Source, run_source
from mlpar.space import Trial, expand_space


def _score(params, seed):
    if params["x"] == 3:
        raise ValueError("x=3 fails")
    return {"score": -abs(params["x"] - 5)}


class _Climb(Source):
    """Asks one x at a time, each the last one's successor, until 8 trials."""

    def __init__(self):
        self.header = {"trials": "climb", "n_trials": None}
        self.told, self.asked = [], 0

    def resume(self, rows):
        self.told = list(rows)
        self.asked = len(rows)

    def ask(self, free):
        if self.asked >= 8 or self.asked > len(self.told):
            return []  # wait for the running trial: each decision sees the last row
        x = self.asked
        self.asked += 1
        return [(x, Trial(key=f"x{x}", params={"x": x}, repeat=0, seed=x))]

    def tell(self, row):
        self.told.append(row)

    def row_fields(self, trial):
        return {"rung": trial.params["x"] % 2}


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_an_adaptive_source_sees_every_row_before_its_next_decision(backend):
    source = _Climb()
    result = run_source(_score, source, backend=backend, n_jobs=1 if backend == "serial" else 2)
    assert [row.params["x"] for row in source.told] == list(range(8))
    assert [row.rung for row in result.rows] == [x % 2 for x in range(8)]
    assert result.rows[3].status == "failed"  # told too: a failed trial is a decision's input


def test_a_resumed_adaptive_source_replays_the_journal_and_runs_only_the_rest(tmp_path):
    journal = tmp_path / "climb.jsonl"
    first = _Climb()
    first.ask = lambda free, ask=first.ask: ask(free) if first.asked < 5 else []
    run_source(_score, first, journal=journal)
    source = _Climb()
    result = run_source(_score, source, journal=journal, resume=True)
    assert [row.params["x"] for row in result.rows] == list(range(8))
    _, rows = read_journal(journal)
    assert [row.params["x"] for row in rows] == list(range(8))  # nothing ran twice


def test_a_source_with_nothing_to_ask_starts_no_backend(monkeypatch, tmp_path):
    journal = tmp_path / "done.jsonl"
    run_source(_score, GridSource(expand_space({"x": [1, 2]})), journal=journal)
    from mlpar.search import _run

    real = _run.make_backend

    def no_open(*args, **kwargs):
        backend = real(*args, **kwargs)
        backend.open = lambda: pytest.fail("a finished sweep opened its backend")
        return backend

    monkeypatch.setattr(_run, "make_backend", no_open)
    source = GridSource(expand_space({"x": [1, 2]}))
    result = run_source(_score, source, backend="processes", n_jobs=2, journal=journal, resume=True)
    assert [row.params["x"] for row in result.rows] == [1, 2]


def test_retries_happen_before_the_source_is_told():
    class Grid(GridSource):
        told = []

        def tell(self, row):
            self.told.append((row.params["x"], row.attempts))

    source = Grid(expand_space({"x": [3, 4]}))
    run_source(_score, source, retries=2)
    assert sorted(source.told) == [(3, 3), (4, 1)]


class _Restarting(__import__("mlpar.backends", fromlist=["SerialBackend"]).SerialBackend):
    """Serial, but with no free worker for a few looks after each trial (a Dask restart)."""

    def start(self, runner, *, blas_threads):
        super().start(runner, blas_threads=blas_threads)
        self.blind, self.waited = 0, 0

    @property
    def capacity(self):
        if self.blind:
            self.blind -= 1
            self.waited += 1
            return 0
        return 1

    def wait(self):
        self.blind = 3
        return super().wait()


def test_a_backend_without_a_free_worker_for_a_moment_loses_no_trial():
    from mlpar.backends import register_backend
    from mlpar.search import GridSource, run_source
    from mlpar.space import expand_space

    register_backend("restarting-test", _Restarting)
    trials = expand_space({"x": [1, 2, 3, 4]})
    result = run_source(lambda p, s: {"x": p["x"]}, GridSource(trials), backend="restarting-test")
    assert [r.metrics["x"] for r in result] == [1, 2, 3, 4]
