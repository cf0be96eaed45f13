"""Lesson 4: processes speed up CPU-bound work, at the price of start-up and data transfer."""

import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.reduction import ForkingPickler

from ._common import (
    LessonResult,
    Measurements,
    format_bytes,
    format_seconds,
    time_interleaved,
    timing_row,
    timing_words,
    worker_counts,
)
from ._cpu import describe_tasks, lesson_tasks
from ._plot import draw_timing_bars
from ._pymlp import run_task

TITLE = "Processes speed up CPU-bound work"
CLAIM = (
    "Processes sidestep the GIL: CPU-bound work speeds up with the number of cores, at the "
    "price of start-up and explicit data sharing."
)

# spawn starts a fresh interpreter per worker: the default on macOS and Windows,
# and what joblib's loky (mlpar's processes backend) does on every platform. So
# the start-up cost measured here is the one users pay, and nothing leaks from
# the parent by fork: every byte a worker sees was pickled and sent.
START_METHOD = "spawn"
# A worker that has not started within this many seconds means a broken pool,
# not a slow machine; the lesson fails instead of hanging.
STARTUP_TIMEOUT_S = 120.0


def _wait_for_siblings(barrier):
    """Pool initializer: return only once every worker of the pool has started."""
    barrier.wait(timeout=STARTUP_TIMEOUT_S)


def _noop():
    """The smallest task: proves a worker is up and answering."""
    return os.getpid()


def start_pool(n_workers, *, context):
    """Start ``n_workers`` processes and return once all of them have run a no-op.

    ProcessPoolExecutor starts workers lazily, one per submitted task while none
    is idle. The initializer makes each worker wait for all the others, so no
    worker goes idle early and each of the ``n_workers`` no-ops starts a new
    process: when this returns, every worker is up.

    Returns
    -------
    concurrent.futures.ProcessPoolExecutor
    """
    barrier = context.Barrier(n_workers)
    pool = ProcessPoolExecutor(
        n_workers, mp_context=context, initializer=_wait_for_siblings, initargs=(barrier,)
    )
    for future in [pool.submit(_noop) for _ in range(n_workers)]:
        future.result()
    return pool


def start_interpreter(code):
    """Start a fresh Python interpreter that runs ``code`` and exits; raise if it fails."""
    # The parent's sys.path travels along, as it does to spawn workers, so the
    # child finds mlpar even when it is not installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=STARTUP_TIMEOUT_S)


def pickled_sizes(items):
    """Pickle and unpickle each item as multiprocessing does; return the bytes sent."""
    payloads = [ForkingPickler.dumps(item) for item in items]
    for payload in payloads:
        # The round trip the lesson measures, on bytes it just made in memory.
        pickle.loads(payload)
    return sum(len(p) for p in payloads)


def run(*, n_jobs, repeats, size, random_state, progress=None):
    """Run lesson 4: the trainings of lesson 1, serially and on worker processes.

    Returns
    -------
    LessonResult
    """
    tasks = lesson_tasks(n_jobs=n_jobs, size=size, random_state=random_state)
    counts = worker_counts(n_jobs)
    reference = [run_task(task) for task in tasks]
    warmup = size == "normal"
    timings = _measure(
        tasks, counts, n_jobs, reference, repeats=repeats, warmup=warmup, progress=progress
    )
    rows, parts = _rows(timings, tasks, counts, n_jobs, reference)
    headline = (
        f"processes {n_jobs}: {parts['warm']['speedup']:.2f}x serial on a warm pool, "
        f"{parts['cold']['speedup']:.2f}x including a {format_seconds(parts['startup']['median_s'])} start-up"
    )
    return LessonResult(
        name="processes",
        title=TITLE,
        claim=CLAIM,
        setup=(
            f"{describe_tasks(tasks)} Run serially in this process, then on a "
            f"concurrent.futures.ProcessPoolExecutor ('{START_METHOD}' start method): on "
            "already-started pools (warm), and starting and shutting down a pool around the "
            "run (cold). Start-up (starting the workers until each has run a no-op; and, for "
            "scale, one plain interpreter started with and without the worker's imports) and data "
            "transfer (pickling and unpickling what a pool sends and receives, measured in "
            "this process) are timed on their own. ProcessPoolExecutor rather than joblib's "
            "loky: it has lesson 1's ThreadPoolExecutor interface, so only the executor "
            "changes, and it does not keep workers alive between calls, which would hide the "
            f"start-up cost measured here. {timing_words(repeats, warmup=warmup)}"
        ),
        columns=(
            "setting",
            "workers",
            "median_s",
            "spread",
            "speedup",
            "payload",
            "same_as_serial",
        ),
        rows=rows,
        headline=headline,
        explanation=_explain(parts, n_tasks=len(tasks), n_jobs=n_jobs),
        environment={},
        options={"start_method": START_METHOD},
    )


def _measure(tasks, counts, n_jobs, reference, *, repeats, warmup, progress):
    """Time every setting of the lesson, interleaved; returns the timings by label."""
    context = multiprocessing.get_context(START_METHOD)

    def serial():
        return [run_task(task) for task in tasks]

    def warm(pool):
        return lambda: list(pool.map(run_task, tasks))

    def cold():
        with ProcessPoolExecutor(n_jobs, mp_context=context) as pool:
            return list(pool.map(run_task, tasks))

    def startup():
        # Timed inside: the shutdown that follows is not part of the start-up.
        start = time.perf_counter()
        pool = start_pool(n_jobs, context=context)
        elapsed = time.perf_counter() - start
        pool.shutdown()
        return elapsed

    def bare_interpreter():
        start_interpreter("pass")

    def interpreter_with_imports():
        # What a spawn worker imports before it can unpickle its first task.
        start_interpreter(f"import {run_task.__module__}")

    def data_in():
        # What the pool sends per task: the function (by reference) and its arguments.
        return pickled_sizes([(run_task, (task,), {}) for task in tasks])

    def data_out():
        return pickled_sizes(reference)

    pools = {}
    try:
        for k in counts:
            pools[k] = start_pool(k, context=context)
        settings = [("serial", serial)]
        settings += [(f"warm {k}", warm(pools[k])) for k in counts]
        settings += [("cold", cold), ("startup", startup), ("bare", bare_interpreter)]
        settings += [("imports", interpreter_with_imports), ("in", data_in), ("out", data_out)]
        timings = time_interleaved(settings, repeats=repeats, warmup=warmup, progress=progress)
    finally:
        for pool in pools.values():
            pool.shutdown()
    return timings


def _rows(timings, tasks, counts, n_jobs, reference):
    """The lesson's table rows, and the named rows its explanation reads."""

    def same(label):
        return all(out == reference for out in timings[label].outputs)

    serial_row = timing_row(
        "serial (this process)", 1, timings["serial"], same_as_serial=same("serial")
    )
    serial_row["speedup"] = 1.0
    base = serial_row["median_s"]
    warm_rows = [
        timing_row(
            f"processes {k}, warm pool",
            k,
            timings[f"warm {k}"],
            serial_median=base,
            same_as_serial=same(f"warm {k}"),
        )
        for k in counts
    ]
    parts = {
        "serial": serial_row,
        "warm": warm_rows[-1],
        "cold": timing_row(
            f"processes {n_jobs}, cold (start, run, shut down)",
            n_jobs,
            timings["cold"],
            serial_median=base,
            same_as_serial=same("cold"),
        ),
        "startup": timing_row(
            f"start-up: {n_jobs} workers + a no-op on each",
            n_jobs,
            Measurements(wall=list(timings["startup"].outputs)),
        ),
        "bare": timing_row("  one interpreter: start, exit", 1, timings["bare"]),
        "imports": timing_row(
            f"  one interpreter: start, import {run_task.__module__}, exit", 1, timings["imports"]
        ),
        "send": timing_row(
            f"send: pickle + unpickle {len(tasks)} tasks",
            None,
            timings["in"],
            payload=timings["in"].outputs[0],
        ),
        "receive": timing_row(
            f"receive: pickle + unpickle {len(tasks)} results",
            None,
            timings["out"],
            payload=timings["out"].outputs[0],
        ),
    }
    rows = [
        serial_row,
        *warm_rows,
        *(parts[key] for key in ("cold", "startup", "bare", "imports", "send", "receive")),
    ]
    return rows, parts


def _explain(parts, *, n_tasks, n_jobs):
    serial, warm, cold, startup = (parts[k] for k in ("serial", "warm", "cold", "startup"))
    bare, imports, send, receive = (parts[k] for k in ("bare", "imports", "send", "receive"))
    same = all(row["same_as_serial"] for row in (serial, warm, cold))
    per_task = serial["median_s"] / n_tasks
    return (
        f"On a warm pool, {n_jobs} processes ran the pure-Python trainings {warm['speedup']:.2f}x "
        f"the serial speed: each worker is a separate interpreter with its own GIL, so the "
        f"bytecode runs on {n_jobs} cores at once, which threads could not do (lesson 1). "
        f"Starting {n_jobs} '{START_METHOD}' workers took {format_seconds(startup['median_s'])}, "
        f"so a pool started for this run alone reached {cold['speedup']:.2f}x. Most of a "
        f"worker's start-up is imports: a bare interpreter starts in {format_seconds(bare['median_s'])}, "
        f"one that imports what the worker needs (NumPy, mlpar and what mlpar imports) in "
        f"{format_seconds(imports['median_s'])}. Data is shared explicitly, by pickling: "
        f"{format_bytes(send['payload'])} of tasks out ({format_seconds(send['median_s'])} to "
        f"pickle and unpickle) and {format_bytes(receive['payload'])} of results back "
        f"({format_seconds(receive['median_s'])}), paid on top of the computation. For "
        f"training: with trials of ~{format_seconds(per_task)} each, processes pay off when "
        "there are many of them and the pool is reused across them (as joblib's loky does); "
        "send seeds and dataset names rather than arrays, or memory-map large arrays, so the "
        "transfer stays small. "
        + (
            "Every process run returned exactly the serial weights and losses."
            if same
            else "WARNING: a process run returned weights that differ from the serial run."
        )
    )


def draw(ax, result):
    """The lesson's plot: median time per setting, costs in grey."""
    draw_timing_bars(ax, result, title="Lesson 4: pure-Python MLP training, serial vs processes")
