"""sweep(): run a function over a search space on a named backend.

The sweep derives every trial's seed, applies one thread budget
(``n_jobs x blas_threads`` cores), streams each finished trial into the
journal, retries and isolates failures, and returns a :class:`SweepResult`.
"""

import functools
import math
import numbers
import sys
import time
import warnings
from collections import deque
from contextlib import ExitStack

from threadpoolctl import threadpool_limits

from .backends import check_picklable, make_backend
from .backends._execute import StackTask, TrialRunner
from .results import Journal, SweepResult, TrialRow
from .space import expand_space, fingerprint

__all__ = ["sweep", "SweepResult"]

#: Statuses that ``retries`` re-runs. ``diverged`` is not among them: the same
#: seed diverges again.
RETRYABLE = ("failed", "timeout", "crashed")

# Libraries loaded by a trial (SciPy's own OpenBLAS, say) escape a limit set
# before they loaded; the in-process budget is re-applied when a row shows it,
# a few times at most.
_MAX_BUDGET_REFRESHES = 3


def _callable_name(fn):
    """Return ``module.qualname`` of fn (or of what a partial wraps).

    A callable object may add a ``sweep_identity`` string (what it captured,
    e.g. fixed parameters) so that resume refuses a journal written with
    other captured settings.
    """
    identity = getattr(fn, "sweep_identity", None)
    while isinstance(fn, functools.partial):
        fn = fn.func
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    name = f"{getattr(target, '__module__', '?')}.{target.__qualname__}"
    return f"{name}[{identity}]" if isinstance(identity, str) else name


class _Progress:
    """A tqdm bar on stderr: finished trials, failures, running trials, ETA."""

    def __init__(self, enabled, *, total, initial):
        if enabled is None:
            isatty = getattr(sys.stderr, "isatty", None)
            enabled = bool(isatty and isatty())
        self._bar = None
        self._failed = 0
        if enabled and total > initial:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit="trial", desc="sweep",
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
            )

    def update(self, *, finished=None, running=0):
        if self._bar is None:
            return
        if finished is not None and finished.status != "ok":
            self._failed += 1
        self._bar.set_postfix(failed=self._failed, running=running, refresh=False)
        self._bar.update(0 if finished is None else 1)

    def close(self):
        if self._bar is not None:
            self._bar.close()


def _check_stack(fn, stack):
    """The stack size to use: 1 (no stacking), an int, or ``"auto"`` (fn decides)."""
    if stack is None:
        return 1
    stackable = callable(getattr(fn, "stack_key", None)) and callable(
        getattr(fn, "run_stack", None))
    if stack == "auto":
        # fn measures which of its trials pay to stack (fn.auto_stack, called
        # once the trials to run are known); without the hooks, one by one.
        return "auto" if stackable and callable(getattr(fn, "auto_stack", None)) else 1
    if isinstance(stack, bool) or not isinstance(stack, numbers.Integral) or stack < 1:
        raise ValueError(f"stack must be a positive integer, 'auto' or None, got {stack!r}")
    if stack > 1 and not stackable:
        raise TypeError(
            f"stack={stack} needs a trial function with fn.stack_key(params) and "
            f"fn.run_stack([(params, seed), ...]) (train_mlp and MLPTrial have them); "
            f"{_callable_name(fn)} has not; use stack=None or 'auto'")
    return int(stack)


def _units(fn, todo, stack):
    """``todo`` as units of work: single trials, and stacks of up to ``stack`` trials.

    Trials stack when ``fn.stack_key`` gives them the same (non-None) key;
    the order of the space is kept within and between units. ``stack="auto"``
    takes each key's size from ``fn.auto_stack(list_of_params)``.
    """
    if stack == "auto":
        sizes = fn.auto_stack([trial.params for _, trial in todo])
    elif stack <= 1:
        return [[item] for item in todo]
    groups = {}
    for item in todo:
        key = fn.stack_key(item[1].params)
        groups.setdefault(("solo", item[1].key) if key is None else ("stack", key),
                          []).append(item)
    units = []
    for (kind, key), group in groups.items():
        size = 1 if kind == "solo" else (sizes.get(key, 1) if stack == "auto" else stack)
        size = max(1, int(size))
        units += [group[i:i + size] for i in range(0, len(group), size)]
    return sorted(units, key=lambda unit: unit[0][0])


def _check_options(fn, *, timeout, retries, error_score, blas_threads, journal, resume, progress):
    """Raise TypeError/ValueError for malformed sweep options."""
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(params, seed), got {type(fn).__name__}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if error_score != "raise" and (
        isinstance(error_score, bool) or not isinstance(error_score, numbers.Real)
    ):
        raise ValueError(f"error_score must be 'raise' or a number, got {error_score!r}")
    if blas_threads is not None and (
        isinstance(blas_threads, bool)
        or not isinstance(blas_threads, numbers.Integral)
        or blas_threads < 1
    ):
        raise ValueError(f"blas_threads must be a positive integer or None, got {blas_threads!r}")
    if resume and journal is None:
        raise ValueError("resume=True needs the journal to resume: pass journal=<path>")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")


def sweep(
    fn, space, *, backend="serial", n_jobs=None, blas_threads=None, n_iter=None,
    seeds=1, random_state=0, timeout=None, retries=0, error_score=math.nan,
    journal=None, resume=False, progress=None, address=None, stack=None,
):
    """Run ``fn`` on every trial of a search space, in parallel, and collect the results.

    Every trial is a configuration from ``space`` and a seed: the sweep calls
    ``fn(params, seed)``, which returns a dict of metrics. A trial that
    raises, returns NaN or infinite metrics, runs past its timeout or kills
    its worker becomes a row with that status; the sweep goes on.

    Parameters
    ----------
    fn : callable
        ``fn(params, seed) -> dict`` of JSON-compatible metrics (numbers,
        strings, lists). For ``processes`` and ``dask`` it is sent to worker
        processes with cloudpickle: it may be a lambda, but must not capture
        locks, open files or connections (checked before anything runs).
        Return ``{"diverged": True, ...}`` to report a diverged run. If fn has
        a ``prepare`` attribute, ``fn.prepare(list_of_params)`` is called once
        in this process before the first trial (``train_mlp`` builds its data
        cache there, so that workers only memory-map it).
    space : dict or list of dict
        Parameter names mapped to lists of candidates (a grid) or
        ``scipy.stats`` distributions (random search, needs ``n_iter``); see
        :func:`mlpar.space.expand_space`.
    backend : str, default='serial'
        ``'serial'``, ``'threads'``, ``'processes'``, ``'forked'`` (processes
        started by ``fork()``: no interpreter start-up; POSIX, NumPy-style
        trials), ``'dask'`` or a name registered with
        :func:`mlpar.backends.register_backend`.
    n_jobs : int, default=None
        Trials run at once. None means 1 for ``serial`` and all cores
        otherwise (for Dask on an existing cluster: all its threads); -1 means
        all cores (``joblib.cpu_count()``).
    blas_threads : int, default=None
        BLAS/OpenMP threads per trial, so the sweep uses ``n_jobs x
        blas_threads`` cores. None means ``max(1, cpu_count // n_jobs)``.
        Applied process-wide for ``serial`` and ``threads`` (threadpoolctl's
        OpenBLAS limit is process-wide) and inside every worker otherwise.
        Every row records the thread count its trial actually saw.
    n_iter : int, default=None
        Number of configurations for random search.
    seeds : int, default=1
        Repeats of every configuration, each with its own seed.
    random_state : int, default=0
        Seeds the sampling and every trial's seed. A trial's seed depends only
        on ``random_state`` and its parameters and repeat index, never on the
        backend, ``n_jobs`` or completion order.
    timeout : float, default=None
        Seconds per trial. Trials can read their deadline with
        :func:`mlpar.context.trial_deadline` and stop in time; a trial that
        returns late is marked ``timeout`` (its metrics are kept). On
        ``processes`` and a sweep's own Dask cluster, a trial still running
        at ``timeout`` + grace (0.5 s + 10 %) has its worker killed. Threads
        cannot be killed: on ``threads`` and ``serial`` the sweep waits for
        the trial to return.
    retries : int, default=0
        Extra attempts for trials that end ``failed``, ``timeout`` or
        ``crashed``; the row records ``attempts``.
    error_score : 'raise' or float, default=nan
        Value that summaries give to metrics of trials that did not end
        ``ok``. ``'raise'`` stops the sweep at the first trial that still
        fails after its retries, raising its exception (re-raised as is on
        ``serial`` and ``threads``, as a RuntimeError with the worker's
        traceback otherwise).
    journal : str or path-like, default=None
        JSONL file receiving one line per finished trial, written and flushed
        as each finishes. An existing journal is never overwritten.
    resume : bool, default=False
        Finish the sweep recorded in ``journal``: trials with a row there are
        skipped (whatever their status; every row is final), a torn last line
        is dropped with a warning, and a journal of a different sweep (other
        fn name, space, seeds or random_state) is refused. A missing journal
        starts afresh.
    progress : bool, default=None
        Show a progress bar on stderr; None shows it when stderr is a terminal.
    address : str or distributed.Client, default=None
        Dask only: the scheduler to use. None starts a private
        ``LocalCluster`` on 127.0.0.1 and closes it afterwards.
    stack : int, 'auto' or None, default=None
        Train up to ``stack`` compatible trials as one batched computation
        (one task on any backend), paying Python's per-call overhead once for
        all of them. fn opts in with ``fn.stack_key(params)`` (a hashable key,
        equal for trials that can stack, or None) and
        ``fn.run_stack([(params, seed), ...])`` (one metrics dict per trial);
        ``'auto'`` asks ``fn.auto_stack()`` and runs unstacked without the
        hooks. Rows, seeds, keys, resume and retries are as without stacking
        (each row records ``stack_id`` and ``stack_size``). Timeouts stay per
        trial: a stack of K trials gets K x ``timeout``, the time they would
        have had one after another. A stack that fails as a whole (an
        exception, a crash, a timeout) is re-run one trial at a time, so a bad
        trial costs only itself.

    Returns
    -------
    result : SweepResult
        One row per trial in the space's order, with ``summary()``,
        ``best()``, ``failures()``, ``to_pandas()`` and ``to_csv()``.

    Raises
    ------
    TypeError
        If fn is not callable or cannot be sent to worker processes.
    ValueError
        For a malformed space or option, an unknown backend, or a journal of
        a different sweep.
    FileExistsError
        If ``journal`` exists and ``resume`` is False.
    ImportError
        If ``backend='dask'`` and dask.distributed is not installed.
    KeyboardInterrupt
        On Ctrl-C, after stopping the workers; finished trials are already in
        the journal, and ``resume=True`` finishes the sweep.

    Notes
    -----
    To share a large array with process or Dask workers without copying it
    per worker, save it once (``np.save``) and open it in ``fn`` with
    ``np.load(path, mmap_mode="r")``, passing the path (for instance with
    ``functools.partial``): the operating system then shares one copy
    between all workers.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpar.sweep import sweep
    >>> def fn(params, seed):
    ...     rng = np.random.default_rng(seed)
    ...     x = rng.normal(size=100)
    ...     return {"score": float(-abs(x.mean() - params["mu"]))}
    >>> result = sweep(fn, {"mu": [0.0, 1.0]}, seeds=2)
    >>> len(result), result.best("score")["params"]
    (4, {'mu': 0.0})
    >>> result.summary()["n_ok"]
    [2, 2]
    """
    _check_options(
        fn, timeout=timeout, retries=retries, error_score=error_score,
        blas_threads=blas_threads, journal=journal, resume=resume, progress=progress,
    )
    stack_size = _check_stack(fn, stack)
    runner_backend = make_backend(backend, n_jobs=n_jobs, address=address)
    if runner_backend.uses_processes:
        check_picklable(fn, backend=backend)
    trials = expand_space(space, n_iter=n_iter, seeds=seeds, random_state=random_state)
    info = {
        "fn": _callable_name(fn), "trials": fingerprint(trials), "n_trials": len(trials),
        "random_state": int(random_state), "seeds": int(seeds), "n_iter": n_iter,
        "error_score": error_score, "backend": backend, "n_jobs": n_jobs,
        "blas_threads": blas_threads, "timeout": timeout, "retries": int(retries),
    }
    t0 = time.perf_counter()
    with ExitStack() as stack:
        done = []
        if journal is not None:
            record, done = Journal.open(journal, info, resume=resume)
            stack.enter_context(record)
        else:
            record = None
        done_keys = {row.key for row in done}
        todo = [(i, t) for i, t in enumerate(trials) if t.key not in done_keys]
        prepare = getattr(fn, "prepare", None)
        if todo and callable(prepare):
            # Once, here, before any worker starts: e.g. train_mlp builds its
            # data cache, which the workers then only memory-map.
            prepare([t.params for _, t in todo])
        bar = _Progress(progress, total=len(trials), initial=len(trials) - len(todo))
        stack.callback(bar.close)
        rows = _run(
            runner_backend, fn, _units(fn, todo, stack_size), journal=record, bar=bar,
            blas_threads=blas_threads, timeout=timeout, retries=int(retries),
            error_score=error_score, info=info,
        ) if todo else []
    return SweepResult(done + rows, info=info, wall_time=time.perf_counter() - t0)


def _resolve_blas_threads(blas_threads, backend):
    """Return the BLAS threads per trial, warning when the budget oversubscribes."""
    import joblib  # here: ~0.1 s to import, which `mlpar --help` and workers need not pay

    cores = joblib.cpu_count()
    if blas_threads is None:
        return max(1, cores // backend.n_jobs)
    local = getattr(backend, "address", None) is None
    if local and backend.n_jobs * blas_threads > cores:
        warnings.warn(
            f"n_jobs x blas_threads = {backend.n_jobs} x {blas_threads} exceeds the "
            f"{cores} available cores; trials will compete for CPU and timings will "
            "not compare",
            RuntimeWarning,
            stacklevel=3,
        )
    return int(blas_threads)


def _run(backend, fn, units, *, journal, bar, blas_threads, timeout, retries, error_score,
         info):
    """Run the units of work on ``backend``; return the final rows, journaled as they finish."""
    try:
        backend.open()
        with ExitStack() as limits:
            blas = _resolve_blas_threads(blas_threads, backend)
            info.update(n_jobs=backend.n_jobs, blas_threads=blas)
            in_process = not backend.uses_processes
            if in_process:
                limits.enter_context(threadpool_limits(limits=blas))
            runner = TrialRunner(
                fn, timeout=timeout, blas_threads=blas,
                limit_threads=not in_process, keep_exception=in_process,
            )
            backend.start(runner, blas_threads=blas)
            rows = _schedule(
                backend, units, journal=journal, bar=bar, retries=retries,
                error_score=error_score, blas=blas, limits=limits if in_process else None,
            )
    except BaseException:
        # Ctrl-C, error_score='raise' or a broken backend: stop the workers
        # now; every finished trial is already in the journal.
        backend.close(kill=True)
        raise
    backend.close()
    return rows


def _schedule(backend, units, *, journal, bar, retries, error_score, blas, limits):
    """Keep ``backend`` busy until every trial of ``units`` has a final row."""
    rows = []
    # A unit: [(index, trial, attempt), ...]; one item, or a stack of several.
    pending = deque([(index, trial, 1) for index, trial in unit] for unit in units)
    running, next_id, refreshes = {}, 0, 0
    while pending or running:
        while pending and len(running) < backend.capacity:
            unit = running[next_id] = pending.popleft()
            backend.submit(next_id, unit[0][1] if len(unit) == 1 else StackTask(
                [trial for _, trial, _ in unit], _stack_id(unit)))
            next_id += 1
        bar.update(running=len(running))
        for job_id, outcome in backend.wait():
            unit = running.pop(job_id)
            if len(unit) > 1 and not isinstance(outcome, list):
                # The stack failed as a whole: its trials go again, one by one.
                pending.extendleft([item] for item in reversed(unit))
                continue
            outcomes = outcome if len(unit) > 1 else [outcome]
            stack = {"stack_id": _stack_id(unit), "stack_size": len(unit)} if len(unit) > 1 \
                else {}
            for (index, trial, attempt), result in zip(unit, outcomes):
                exception = result.pop("exception", None)
                row = TrialRow(
                    key=trial.key, index=index, params=trial.params, repeat=trial.repeat,
                    seed=trial.seed, attempts=attempt, backend=backend.name,
                    n_jobs=backend.n_jobs, blas_threads=blas, **result, **stack,
                )
                if row.status in RETRYABLE and attempt <= retries:
                    pending.append([(index, trial, attempt + 1)])
                    continue
                if journal is not None:
                    journal.append(row)
                rows.append(row)
                bar.update(finished=row, running=len(running))
                if error_score == "raise" and row.status in RETRYABLE:
                    _raise_for(row, exception)
                if (
                    limits is not None and refreshes < _MAX_BUDGET_REFRESHES
                    and row.blas_threads_seen not in (None, blas)
                ):
                    refreshes += 1
                    limits.enter_context(threadpool_limits(limits=blas))
    return rows


def _stack_id(unit):
    """A stack's id: its first trial's key and its size (stable across backends)."""
    return f"{unit[0][1].key}x{len(unit)}"


def _raise_for(row, exception):
    """Raise the failure of ``row`` for ``error_score='raise'``."""
    if exception is not None:
        raise exception
    raise RuntimeError(
        f"trial {row.key} with params {row.params} ended {row.status!r}: "
        f"{row.error_type}: {row.error_message} (error_score='raise' stops the sweep "
        f"at the first failure)\n\nTraceback in the worker:\n{row.traceback or '(none)'}"
    )
