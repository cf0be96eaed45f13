"""run_source(): keep a backend busy with what a :class:`Source` asks for.

The one execution loop of every search: it applies one thread budget
(``n_jobs x blas_threads`` cores), stacks compatible trials, streams each
final row into the journal, retries and isolates failures, and tells the
source every final row.
"""

import functools
import math
import numbers
import time
from collections import deque
from contextlib import ExitStack

from threadpoolctl import threadpool_limits

from ..backends import check_picklable, make_backend
from ..backends._execute import StackTask, TrialRunner
from ..results import Journal, SweepResult, TrialRow
from ._options import Progress, check_options, resolve_blas_threads

__all__ = ["run_source", "callable_name", "RETRYABLE"]

#: Statuses that ``retries`` re-runs. ``diverged`` is not among them: the same
#: seed diverges again.
RETRYABLE = ("failed", "timeout", "crashed")

# Libraries loaded by a trial (SciPy's own OpenBLAS, say) escape a limit set
# before they loaded; the in-process budget is re-applied when a row shows it,
# a few times at most.
_MAX_BUDGET_REFRESHES = 3
# Seconds a sweep with waiting trials waits for a backend with no free worker.
_NO_CAPACITY_TIMEOUT = 60.0


def callable_name(fn):
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


def _check_stack(fn, stack):
    """The stack size to use: 1 (no stacking), an int, or ``"auto"`` (fn decides)."""
    if stack is None:
        return 1
    stackable = callable(getattr(fn, "stack_key", None)) and callable(
        getattr(fn, "run_stack", None)
    )
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
            f"{callable_name(fn)} has not; use stack=None or 'auto'"
        )
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
        groups.setdefault(("solo", item[1].key) if key is None else ("stack", key), []).append(item)
    units = []
    for (kind, key), group in groups.items():
        size = 1 if kind == "solo" else (sizes.get(key, 1) if stack == "auto" else stack)
        size = max(1, int(size))
        units += [group[i : i + size] for i in range(0, len(group), size)]
    return sorted(units, key=lambda unit: unit[0][0])


def run_source(
    fn,
    source,
    *,
    backend="serial",
    n_jobs=None,
    blas_threads=None,
    header=None,
    timeout=None,
    retries=0,
    error_score=math.nan,
    journal=None,
    resume=False,
    progress=None,
    address=None,
    stack=None,
):
    """Run what ``source`` asks for on ``backend``, telling it every final row.

    The engine of :func:`mlpar.sweep`: the options mean what they mean there.
    ``header`` adds fields to the journal header (``random_state``, ``seeds``,
    ``n_iter``...) after the source's own :attr:`Source.header`.

    Returns
    -------
    result : SweepResult
        The journal's earlier rows (when resuming) and every new final row.
    """
    check_options(
        fn,
        timeout=timeout,
        retries=retries,
        error_score=error_score,
        blas_threads=blas_threads,
        journal=journal,
        resume=resume,
        progress=progress,
    )
    stack_size = _check_stack(fn, stack)
    runner = make_backend(backend, n_jobs=n_jobs, address=address)
    if runner.uses_processes:
        check_picklable(fn, backend=backend)
    info = {
        "fn": callable_name(fn),
        **source.header,
        **(header or {}),
        "error_score": error_score,
        "backend": backend,
        "n_jobs": n_jobs,
        "blas_threads": blas_threads,
        "timeout": timeout,
        "retries": int(retries),
    }
    t0 = time.perf_counter()
    with ExitStack() as context:
        done, record = [], None
        if journal is not None:
            record, done = Journal.open(journal, info, resume=resume)
            context.enter_context(record)
        if record is not None:
            source.replay(record.events)
        source.resume(done)
        # Asked before any worker starts: a finished sweep starts none, and
        # fn.prepare (train_mlp builds its data cache there) runs first.
        first = source.ask(max(1, runner.n_jobs or 1))
        _record_events(source, record)
        total = source.total
        bar = Progress(progress, total=total, initial=len(done))
        context.callback(bar.close)
        rows = (
            _run(
                runner,
                fn,
                source,
                first,
                stack_size,
                journal=record,
                bar=bar,
                blas_threads=blas_threads,
                timeout=timeout,
                retries=int(retries),
                error_score=error_score,
                info=info,
            )
            if first
            else []
        )
    return SweepResult(done + rows, info=info, wall_time=time.perf_counter() - t0)


def _record_events(source, journal):
    """Journal the decisions of the source's last ask, before their trials start."""
    for event in source.events():
        if journal is not None:
            journal.event(event)


def _prepare(fn, batch):
    """``fn.prepare(list_of_params)`` for trials about to start, in this process."""
    prepare = getattr(fn, "prepare", None)
    if batch and callable(prepare):
        prepare([trial.params for _, trial in batch])


def _run(
    backend,
    fn,
    source,
    first,
    stack_size,
    *,
    journal,
    bar,
    blas_threads,
    timeout,
    retries,
    error_score,
    info,
):
    """Run the source's trials on ``backend``; return the final rows, journaled as they finish."""
    _prepare(fn, first)
    try:
        backend.open()
        with ExitStack() as limits:
            blas = resolve_blas_threads(blas_threads, backend)
            info.update(n_jobs=backend.n_jobs, blas_threads=blas)
            in_process = not backend.uses_processes
            if in_process:
                limits.enter_context(threadpool_limits(limits=blas))
            runner = TrialRunner(
                fn,
                timeout=timeout,
                blas_threads=blas,
                limit_threads=not in_process,
                keep_exception=in_process,
            )
            backend.start(runner, blas_threads=blas)
            rows = _Schedule(
                backend,
                fn,
                source,
                stack_size,
                journal=journal,
                bar=bar,
                retries=retries,
                error_score=error_score,
                blas=blas,
                limits=limits if in_process else None,
            ).run(first)
    except BaseException:
        # Ctrl-C, error_score='raise' or a broken backend: stop the workers
        # now; every finished trial is already in the journal.
        backend.close(kill=True)
        raise
    backend.close()
    return rows


class _Schedule:
    """Keep ``backend`` busy until the source has nothing more to ask for."""

    def __init__(
        self, backend, fn, source, stack_size, *, journal, bar, retries, error_score, blas, limits
    ):
        self.backend, self.fn, self.source, self.stack_size = backend, fn, source, stack_size
        self.journal, self.bar, self.retries, self.error_score = journal, bar, retries, error_score
        self.blas, self.limits, self.refreshes = blas, limits, 0
        # A unit: [(index, trial, attempt), ...]; one item, or a stack of several.
        self.pending, self.rows = deque(), []

    def _queue(self, batch):
        for unit in _units(self.fn, batch, self.stack_size):
            self.pending.append([(index, trial, 1) for index, trial in unit])

    def run(self, first):
        backend, running, next_id, idle_since = self.backend, {}, 0, None
        self._queue(first)
        while True:
            exhausted = False  # the source was asked and had nothing to start
            while len(running) < backend.capacity:
                if not self.pending:
                    batch = self.source.ask(backend.capacity - len(running))
                    _record_events(self.source, self.journal)
                    if not batch:
                        exhausted = True
                        break
                    _prepare(self.fn, batch)
                    self._queue(batch)
                unit = running[next_id] = self.pending.popleft()
                backend.submit(
                    next_id,
                    unit[0][1]
                    if len(unit) == 1
                    else StackTask([trial for _, trial, _ in unit], _stack_id(unit)),
                )
                next_id += 1
            if not running:
                if exhausted and not self.pending:
                    return self.rows
                # Work waits but no worker can take it: a Dask worker that a
                # crashing trial killed is being restarted. Wait for it.
                idle_since = self._wait_for_capacity(idle_since)
                continue
            idle_since = None
            self.bar.update(running=len(running))
            for job_id, outcome in backend.wait():
                unit = running.pop(job_id)
                if len(unit) > 1 and not isinstance(outcome, list):
                    # The stack failed as a whole: its trials go again, one by one.
                    self.pending.extendleft([item] for item in reversed(unit))
                    continue
                outcomes = outcome if len(unit) > 1 else [outcome]
                stack = (
                    {"stack_id": _stack_id(unit), "stack_size": len(unit)} if len(unit) > 1 else {}
                )
                for item, result in zip(unit, outcomes):
                    self._finish(item, result, stack, running=len(running))

    def _wait_for_capacity(self, since):
        """Sleep a moment while the backend has no capacity; give up after a minute."""
        now = time.monotonic()
        since = now if since is None else since
        if now - since > _NO_CAPACITY_TIMEOUT:
            raise RuntimeError(
                f"backend {self.backend.name!r} has had no free worker for "
                f"{_NO_CAPACITY_TIMEOUT:.0f} s with {len(self.pending)} trial(s) waiting; "
                "finished trials are in the journal (resume=True finishes the sweep)"
            )
        time.sleep(0.05)
        return since

    def _finish(self, item, result, stack, *, running):
        """One trial's outcome: retried, or a final row journaled and told to the source."""
        index, trial, attempt = item
        backend = self.backend
        exception = result.pop("exception", None)
        row = TrialRow(
            key=trial.key,
            index=index,
            params=trial.params,
            repeat=trial.repeat,
            seed=trial.seed,
            attempts=attempt,
            backend=backend.name,
            n_jobs=backend.n_jobs,
            blas_threads=self.blas,
            **result,
            **stack,
            **self.source.row_fields(trial),
        )
        if row.status in RETRYABLE and attempt <= self.retries:
            self.pending.append([(index, trial, attempt + 1)])
            return
        if self.journal is not None:
            self.journal.append(row)
        self.rows.append(row)
        self.bar.update(finished=row, running=running)
        if self.error_score == "raise" and row.status in RETRYABLE:
            _raise_for(row, exception)
        self.source.tell(row)
        if (
            self.limits is not None
            and self.refreshes < _MAX_BUDGET_REFRESHES
            and row.blas_threads_seen not in (None, self.blas)
        ):
            self.refreshes += 1
            self.limits.enter_context(threadpool_limits(limits=self.blas))


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
