"""Run one trial where it lands (main thread, worker thread or worker process) and measure it."""

import copy
import functools
import math
import numbers
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from contextlib import ExitStack

# NumPy first: threadpoolctl only sees (and limits) the BLAS libraries that are
# already loaded, and NumPy's is the one nearly every trial uses.
import numpy  # noqa: F401
from threadpoolctl import ThreadpoolController

from ..context import _deadline_scope
from ..space import _jsonable

__all__ = ["TrialRunner", "StackTask", "OUTCOME_FIELDS", "make_outcome"]

#: The fields of a row that the worker fills in; the sweep adds the others.
OUTCOME_FIELDS = (
    "status",
    "metrics",
    "error_type",
    "error_message",
    "traceback",
    "wall_time",
    "cpu_time",
    "started_at",
    "ended_at",
    "pid",
    "thread_name",
    "thread_id",
    "blas_threads_seen",
)


class StackTask:
    """Trials trained together as one task by ``fn.run_stack`` (see ``sweep(stack=)``).

    Backends treat it as one trial: one job, one worker, one outcome. Its
    ``timeout_scale`` (the number of trials) stretches the trial timeout to
    the time the trials would have had one after another.
    """

    __slots__ = ("trials", "stack_id")

    def __init__(self, trials, stack_id):
        self.trials = tuple(trials)
        self.stack_id = stack_id

    @property
    def timeout_scale(self):
        return len(self.trials)

    @property
    def key(self):
        """A name for the task (Dask's task keys): the stack's id."""
        return f"stack-{self.stack_id}"


def make_outcome(status, **fields):
    """A trial's outcome: every one of :data:`OUTCOME_FIELDS`, None where not given.

    The one place an outcome is built, whether the worker measured it
    (:class:`TrialRunner`) or the parent made it up for a worker that died.
    """
    unknown = set(fields) - set(OUTCOME_FIELDS)
    if unknown:
        raise TypeError(f"unknown outcome fields {sorted(unknown)}; known: {OUTCOME_FIELDS}")
    outcome = dict.fromkeys(OUTCOME_FIELDS)
    outcome.update({"metrics": {}, **fields, "status": status})
    return outcome


class TrialRunner:
    """Call ``fn(params, seed)`` for one trial, classify and measure the outcome.

    The processes backend sends it once to each worker process, Dask with
    every task; serial and threads call it in place. It never raises for a
    failing ``fn``: the failure becomes the outcome's ``status``. Only
    ``KeyboardInterrupt`` propagates, so Ctrl-C in serial mode still stops
    the sweep.

    Parameters
    ----------
    fn : callable
        ``fn(params, seed) -> dict`` of metrics.
    timeout : float, default=None
        Seconds; sets the cooperative deadline read by
        :func:`mlpar.context.trial_deadline` and marks late trials ``timeout``.
    blas_threads : int, default=None
        BLAS/OpenMP threads for the trial.
    limit_threads : bool, default=False
        Apply ``blas_threads`` around each call. True in worker processes;
        False in the sweep's own process, where the limit is process-wide and
        set once for the whole sweep (threadpoolctl's OpenBLAS limit is global,
        so per-thread limits would race).
    keep_exception : bool, default=False
        Add fn's exception object to the outcome under ``"exception"``, for
        ``error_score='raise'`` to re-raise it. Only in the sweep's own
        process: exceptions need not pickle.
    """

    def __init__(
        self, fn, *, timeout=None, blas_threads=None, limit_threads=False, keep_exception=False
    ):
        self.fn = fn
        self.keep_exception = keep_exception
        self.timeout = timeout
        self.blas_threads = blas_threads
        self.limit_threads = limit_threads

    def __call__(self, trial):
        if isinstance(trial, StackTask):
            return self._run_stack(trial)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        # A deep copy: fn may mutate its params (even a nested list) without
        # changing the row or the next repeat, which shares them.
        metrics, error, tb, fields = self._measured(
            deadline, lambda: _clean_metrics(self.fn(copy.deepcopy(trial.params), trial.seed))
        )
        metrics = {} if metrics is None else metrics
        wall_time = fields["wall_time"]
        late = deadline is not None and time.monotonic() > deadline

        error_type = message = None
        if error is not None:
            status = "timeout" if late else "failed"
            error_type, message = type(error).__name__, str(error)
        elif late:
            status, error_type = "timeout", "TimeoutError"
            message = (
                f"trial returned after {wall_time:.3g} s, past its timeout of "
                f"{self.timeout:g} s; its metrics are kept"
            )
        else:
            message = _divergence(metrics)
            status = "ok" if message is None else "diverged"
        outcome = make_outcome(
            status,
            metrics=metrics,
            error_type=error_type,
            error_message=message,
            traceback=tb,
            **fields,
        )
        if self.keep_exception:
            outcome["exception"] = error
        return outcome

    def _run_stack(self, task):
        """Outcomes of a stack's trials (a list), or one failed outcome for the whole stack.

        A stack that raises, returns the wrong number of results or runs past
        its stretched deadline fails as a whole; the sweep then runs its trials
        one by one, so a bad trial costs only itself.
        """
        run_stack = self.fn.run_stack
        timeout = None if self.timeout is None else self.timeout * task.timeout_scale
        deadline = None if timeout is None else time.monotonic() + timeout

        def call():
            results = run_stack([(copy.deepcopy(t.params), t.seed) for t in task.trials])
            if not isinstance(results, (list, tuple)) or len(results) != len(task.trials):
                raise TypeError(
                    f"fn.run_stack must return one metrics dict per trial "
                    f"({len(task.trials)}), got {type(results).__name__}"
                )
            return [_clean_metrics(r) for r in results]

        results, error, tb, common = self._measured(deadline, call)
        wall_time, cpu_time = common["wall_time"], common["cpu_time"]
        late = deadline is not None and time.monotonic() > deadline
        if error is not None or late:
            return make_outcome(
                "failed" if error is not None else "timeout",
                error_type=type(error).__name__ if error else "TimeoutError",
                error_message=str(error) if error else f"stack past its timeout of {timeout:g} s",
                traceback=tb,
                **common,
            )
        # Each trial's share of the stack's time, so that sums over rows stay honest.
        common.update(wall_time=wall_time / len(results), cpu_time=cpu_time / len(results))
        outcomes = []
        for metrics in results:
            message = _divergence(metrics)
            outcomes.append(
                make_outcome(
                    "ok" if message is None else "diverged",
                    metrics=metrics,
                    error_message=message,
                    **common,
                )
            )
        return outcomes

    def _measured(self, deadline, call):
        """``call()`` under the trial's deadline and thread limit: (value, error, tb, fields).

        ``fields`` are the outcome's measurements: wall and CPU time, when, and where.
        """
        thread = threading.current_thread()
        started_at = time.time()
        t0, c0 = time.perf_counter(), time.thread_time()
        value, error, tb = None, None, None
        with ExitStack() as stack:
            stack.enter_context(_deadline_scope(deadline))
            if self.limit_threads and self.blas_threads is not None:
                stack.enter_context(_threadpools(len(sys.modules)).limit(limits=self.blas_threads))
            try:
                value = call()
            except (Exception, SystemExit) as exc:
                # SystemExit too: a trial calling sys.exit() must not end the sweep.
                error, tb = exc, traceback.format_exc()
            seen = _blas_threads_seen()
        wall_time = time.perf_counter() - t0
        fields = dict(
            wall_time=wall_time,
            cpu_time=time.thread_time() - c0,
            started_at=started_at,
            ended_at=started_at + wall_time,
            pid=os.getpid(),
            thread_name=thread.name,
            thread_id=threading.get_native_id(),
            blas_threads_seen=seen,
        )
        return value, error, tb, fields


@functools.lru_cache(maxsize=1)
def _threadpools(n_modules):
    """Return this process's ThreadpoolController, rebuilt when modules were imported since."""
    # Building one scans the loaded libraries (~1 ms) while using one costs
    # microseconds, so it is cached per process, keyed by len(sys.modules): a
    # new BLAS (SciPy's own OpenBLAS, say) arrives with an import, and the
    # next call then sees it.
    return ThreadpoolController()


def _blas_threads_seen():
    """Return the largest thread count among the loaded BLAS libraries, or None."""
    counts = [
        lib.num_threads
        for lib in _threadpools(len(sys.modules)).lib_controllers
        if lib.user_api == "blas"
    ]
    return max(counts) if counts else None


def _clean_metrics(value):
    """Return fn's metrics as JSON-ready data, or raise TypeError naming the culprit."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"fn must return a dict of metrics, got {type(value).__name__}; "
            "return e.g. {'accuracy': 0.93}"
        )
    out = {}
    for name, metric in value.items():
        if not isinstance(name, str):
            raise TypeError(f"fn returned a metric named {name!r}; metric names must be str")
        out[name] = _jsonable(metric, where=f"metric {name!r}")
    return out


def _divergence(metrics):
    """Return why the metrics show a diverged run, or None if they do not."""
    if metrics.get("diverged") is True:
        return "fn reported diverged=True"
    for name, value in metrics.items():
        if (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and not math.isfinite(value)
        ):
            return f"metric {name!r} is {value}"
    return None
