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

    def auto_stack(self, params_list):
        return {self.stack_key(p): 2 for p in params_list}


def _rows(result):
    return [(r.key, r.seed, r.status, r.metrics.get("score")) for r in result]


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "forked"])
def test_stacked_rows_equal_unstacked_rows(backend):
    fn = Stackable()
    plain = sweep(fn, SPACE, seeds=2, backend="serial")
    n_jobs = 1 if backend == "serial" else 2
    stacked = sweep(
        fn, SPACE, seeds=2, backend=backend, n_jobs=n_jobs, blas_threads=1, stack=4, progress=False
    )
    assert _rows(stacked) == _rows(plain)
    sizes = {r.key: r.stack_size for r in stacked}
    # 12 trials, 6 per width: stacks of 4 and 2 per width.
    assert sorted(r.stack_size for r in stacked) == [2] * 4 + [4] * 8
    assert all(r.metrics["stacked"] == sizes[r.key] for r in stacked)
    ids = {r.stack_id for r in stacked}
    assert len(ids) == 4 and all(
        r.params["width"] == stacked[0].params["width"]
        for r in stacked
        if r.stack_id == stacked[0].stack_id
    )


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
    result = sweep(
        Stackable(crash_stacks=True),
        SPACE,
        backend="processes",
        n_jobs=2,
        blas_threads=1,
        stack=3,
        progress=False,
    )
    assert [r.status for r in result] == ["ok"] * 6
    assert all(r.stack_size is None for r in result)


def test_stacks_resume_trial_by_trial(tmp_path):
    journal = tmp_path / "j.jsonl"
    first = sweep(
        Stackable(), {"width": [2], "lr": [0.1, 0.2], "bad": [False]}, stack=2, journal=journal
    )
    more = sweep(
        Stackable(),
        {"width": [2], "lr": [0.1, 0.2], "bad": [False]},
        stack=2,
        journal=journal,
        resume=True,
    )
    assert _rows(more) == _rows(first)


@pytest.mark.parametrize(
    "stack, error, message",
    [
        (0, ValueError, "stack must be a positive integer, 'auto' or None, got 0"),
        (2.5, ValueError, "stack must be a positive integer, 'auto' or None, got 2.5"),
        ("many", ValueError, "stack must be a positive integer, 'auto' or None, got 'many'"),
        (True, ValueError, "stack must be a positive integer, 'auto' or None, got True"),
    ],
)
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


TRAIN_SPACE = {
    "dataset": ["digits"],
    "hidden": [[8], [16, 16]],
    "lr": [0.01, 0.003],
    "alpha": [1e-4, 1e-3],
    "epochs": [2],
    "batch_size": [32],
}
SCORES = ("val_score", "test_score", "loss", "best_loss", "epochs", "stop_reason", "n_params")


def _scores(result):
    return [(r.key, r.status, *(r.metrics[k] for k in SCORES)) for r in result]


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_train_mlp_stacked_equals_alone(backend):
    from mlpar import MLPTrial, train_mlp

    alone = sweep(train_mlp, TRAIN_SPACE, seeds=2)
    n_jobs = 1 if backend == "serial" else 2
    stacked = sweep(
        train_mlp,
        TRAIN_SPACE,
        seeds=2,
        stack=8,
        backend=backend,
        n_jobs=n_jobs,
        blas_threads=1,
        progress=False,
    )
    assert _scores(stacked) == _scores(alone)  # bit for bit: same floats
    assert {r.stack_size for r in stacked} == {8}
    trial = MLPTrial({"dataset": "digits", "epochs": 2, "batch_size": 32})
    space = {k: v for k, v in TRAIN_SPACE.items() if k not in ("dataset", "epochs", "batch_size")}
    assert _scores(sweep(trial, space, seeds=2, stack=8)) == _scores(sweep(trial, space, seeds=2))


def test_train_mlp_stacks_only_what_is_compatible():
    from mlpar.trial import stack_key

    base = {"dataset": "digits", "hidden": [8], "lr": 0.01}
    assert stack_key(base) == stack_key({**base, "lr": 0.1, "alpha": 0.01})
    assert stack_key(base) != stack_key({**base, "hidden": [16]})
    assert stack_key(base) != stack_key({**base, "batch_size": 17})
    assert stack_key({**base, "early_stopping": True}) is None
    assert stack_key({**base, "hidden": "wide"}) is None  # its own error, alone


def test_auto_stack_measures_and_never_returns_a_size_it_did_not_measure():
    from mlpar.trial import auto_stack, stack_key

    params = [{"dataset": "iris", "hidden": [4], "lr": lr, "epochs": 2} for lr in (0.1, 0.2, 0.3)]
    sizes = auto_stack(params)
    assert set(sizes) == {stack_key(params[0])}
    assert sizes[stack_key(params[0])] in (1, 3)


class SlowStack(Stackable):
    def run_stack(self, batch):
        import time

        time.sleep(0.8 * len(batch))  # over one trial's timeout, within the stack's
        return [{**_metrics(p, s), "stacked": len(batch)} for p, s in batch]


def test_a_stack_gets_the_timeout_of_its_trials_together():
    result = sweep(
        SlowStack(),
        {"width": [2], "lr": [0.1, 0.2, 0.3], "bad": [False]},
        backend="processes",
        n_jobs=1,
        blas_threads=1,
        timeout=1.0,
        stack=3,
        progress=False,
    )
    assert [(r.status, r.stack_size) for r in result] == [("ok", 3)] * 3


def test_a_stack_gets_the_timeout_of_its_trials_together_on_dask(dask_address):
    result = sweep(
        SlowStack(),
        {"width": [2], "lr": [0.1, 0.2, 0.3], "bad": [False]},
        backend="dask",
        address=dask_address,
        n_jobs=1,
        blas_threads=1,
        timeout=1.0,
        stack=3,
        progress=False,
    )
    assert [(r.status, r.stack_size) for r in result] == [("ok", 3)] * 3
