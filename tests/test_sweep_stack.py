"""sweep(stack=...): compatible trials as one task, with rows exactly as without stacking."""

import os

import numpy as np
import pytest

from mlpar import sweep

SPACE = {"width": [2, 3], "lr": [0.1, 0.2, 0.3], "bad": [False]}


def _metrics(params, seed):
    if params.get("bad"):
        raise ValueError("a bad trial")
    rng = np.random.default_rng(seed)
    return {"score": float(params["lr"] * params["width"] + rng.normal()), "pid": os.getpid()}


class Stackable:
    """A trial function with the two stacking hooks; counts nothing, stays picklable."""

    def __init__(self, crash_stacks=False, fail_stacks=False):
        self.crash_stacks = crash_stacks
        self.fail_stacks = fail_stacks

    def __call__(self, params, seed):
        return {**_metrics(params, seed), "stacked": 0}

    def stack_key(self, params):
        return params["width"]  # trials of one width stack

    def run_stack(self, batch):
        if self.crash_stacks:
            os._exit(3)
        if self.fail_stacks or any(p.get("bad") for p, _ in batch):
            raise RuntimeError("this stack cannot run")
        return [{**_metrics(p, s), "stacked": len(batch)} for p, s in batch]

    def auto_stack(self):
        return 2


def _rows(result):
    return [(r.key, r.seed, r.status, r.metrics.get("score")) for r in result]


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "forked"])
def test_stacked_rows_equal_unstacked_rows(backend):
    fn = Stackable()
    plain = sweep(fn, SPACE, seeds=2, backend="serial")
    n_jobs = 1 if backend == "serial" else 2
    stacked = sweep(fn, SPACE, seeds=2, backend=backend, n_jobs=n_jobs, blas_threads=1,
                    stack=4, progress=False)
    assert _rows(stacked) == _rows(plain)
    sizes = {r.key: r.stack_size for r in stacked}
    # 12 trials, 6 per width: stacks of 4 and 2 per width.
    assert sorted(r.stack_size for r in stacked) == [2] * 4 + [4] * 8
    assert all(r.metrics["stacked"] == sizes[r.key] for r in stacked)
    ids = {r.stack_id for r in stacked}
    assert len(ids) == 4 and all(r.params["width"] == stacked[0].params["width"]
                                 for r in stacked if r.stack_id == stacked[0].stack_id)


def test_a_failing_stack_is_rerun_trial_by_trial():
    space = {"width": [2], "lr": [0.1, 0.2, 0.3], "bad": [False, True]}
    result = sweep(Stackable(), space, stack=6)
    by_status = {}
    for r in result:
        by_status.setdefault(r.status, []).append(r)
    assert len(by_status["ok"]) == 3 and len(by_status["failed"]) == 3
    assert all(r.stack_size is None for r in result)  # all ran alone, after the stack failed
    assert all(r.error_message == "a bad trial" for r in by_status["failed"])


def test_a_crashing_stack_costs_no_trial():
    result = sweep(Stackable(crash_stacks=True), SPACE, backend="processes", n_jobs=2,
                   blas_threads=1, stack=3, progress=False)
    assert [r.status for r in result] == ["ok"] * 6
    assert all(r.stack_size is None for r in result)


def test_stacks_resume_trial_by_trial(tmp_path):
    journal = tmp_path / "j.jsonl"
    first = sweep(Stackable(), {"width": [2], "lr": [0.1, 0.2], "bad": [False]}, stack=2,
                  journal=journal)
    more = sweep(Stackable(), {"width": [2], "lr": [0.1, 0.2], "bad": [False]}, stack=2,
                 journal=journal, resume=True)
    assert _rows(more) == _rows(first)


@pytest.mark.parametrize("stack, error, message", [
    (0, ValueError, "stack must be a positive integer, 'auto' or None, got 0"),
    (2.5, ValueError, "stack must be a positive integer, 'auto' or None, got 2.5"),
    ("many", ValueError, "stack must be a positive integer, 'auto' or None, got 'many'"),
    (True, ValueError, "stack must be a positive integer, 'auto' or None, got True"),
])
def test_bad_stack_values(stack, error, message):
    import re

    with pytest.raises(error, match=re.escape(message)):
        sweep(Stackable(), SPACE, stack=stack)


def test_explicit_stack_needs_the_hooks_and_auto_does_not():
    with pytest.raises(TypeError, match="needs a trial function with fn.stack_key"):
        sweep(_metrics, SPACE, stack=2)
    result = sweep(_metrics, {"width": [2], "lr": [0.1]}, stack="auto")
    assert [r.stack_size for r in result] == [None]
    result = sweep(Stackable(), {"width": [2], "lr": [0.1, 0.2], "bad": [False]}, stack="auto")
    assert [r.stack_size for r in result] == [2, 2]
