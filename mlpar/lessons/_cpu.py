"""Lesson 1: CPU-bound pure-Python training on threads is not faster than serial."""

import sys
from concurrent.futures import ThreadPoolExecutor

from ._common import (
    LessonResult,
    gil_enabled,
    ratio_words,
    time_interleaved,
    timing_row,
    timing_words,
    worker_counts,
)
from ._plot import draw_timing_bars
from ._pymlp import make_tasks, run_task

TITLE = "CPU-bound Python on threads is not faster"
CLAIM = (
    "CPU-bound pure-Python work run on threads is no faster than serial, usually slower: "
    "the GIL lets one thread run Python at a time, and handing it over costs."
)

# The workload. "normal" is ~1.2 s of serial work on a 2020s x86 core when split
# into 4 tasks (2 cores); on more cores the same total is split into more,
# shorter tasks (never under `min_steps` steps each), so a run stays about as
# long however many cores there are. "quick" keeps tests and smoke runs short.
SIZES = {
    "quick": {"n_samples": 64, "n_hidden": 8, "total_steps": 32, "min_steps": 4, "batch_size": 16},
    "normal": {
        "n_samples": 256,
        "n_hidden": 16,
        "total_steps": 480,
        "min_steps": 20,
        "batch_size": 32,
    },
}
LEARNING_RATE = 0.2


def lesson_tasks(*, n_jobs, size, random_state):
    """The training runs of lessons 1 and 4: ``2 * n_jobs`` independent tasks."""
    sizes = SIZES[size]
    n_tasks = 2 * n_jobs
    return make_tasks(
        n_tasks,
        n_samples=sizes["n_samples"],
        n_hidden=sizes["n_hidden"],
        n_steps=max(sizes["min_steps"], sizes["total_steps"] // n_tasks),
        batch_size=sizes["batch_size"],
        learning_rate=LEARNING_RATE,
        random_state=random_state,
    )


def describe_tasks(tasks):
    """One sentence on the workload, shared with lesson 4."""
    t = tasks[0]
    return (
        f"{len(tasks)} independent trainings of a 2-layer perceptron written in plain Python "
        f"(lists of floats, no NumPy in the step): 64 -> {t.n_hidden} ReLU -> 10 softmax, "
        f"{t.n_steps} SGD steps of {t.batch_size} samples each on its own random subset of "
        f"{len(t.X)} digits images, like the trials of a sweep."
    )


def run(*, n_jobs, repeats, size, random_state, progress=None):
    """Run lesson 1: the same trainings serially and on 2..``n_jobs`` threads.

    Returns
    -------
    LessonResult
    """
    tasks = lesson_tasks(n_jobs=n_jobs, size=size, random_state=random_state)
    counts = worker_counts(n_jobs)

    def serial():
        return [run_task(task) for task in tasks]

    def on_threads(k):
        def fn():
            with ThreadPoolExecutor(max_workers=k) as pool:
                return list(pool.map(run_task, tasks))

        return fn

    settings = [("serial", serial)] + [(f"threads {k}", on_threads(k)) for k in counts]
    # A warm-up round only where timings mean something: it doubles a quick run.
    warmup = size == "normal"
    timings = time_interleaved(settings, repeats=repeats, warmup=warmup, progress=progress)
    reference = timings["serial"].outputs[0]
    serial_row = timing_row("serial", 1, timings["serial"], cores_busy=True)
    serial_median = serial_row["median_s"]
    serial_row["speedup"] = 1.0
    serial_row["same_as_serial"] = True
    rows = [serial_row]
    for k in counts:
        m = timings[f"threads {k}"]
        rows.append(
            timing_row(
                f"threads {k}",
                k,
                m,
                serial_median=serial_median,
                cores_busy=True,
                same_as_serial=all(out == reference for out in m.outputs),
            )
        )
    top = rows[-1]
    gil = gil_enabled()
    headline = (
        f"threads {top['workers']}: {top['speedup']:.2f}x serial "
        f"({'GIL enabled' if gil else 'GIL disabled, free-threaded build'})"
    )
    return LessonResult(
        name="cpu",
        title=TITLE,
        claim=CLAIM,
        setup=(
            f"{describe_tasks(tasks)} Serial runs them one after the other; threads run "
            f"the same tasks on a ThreadPoolExecutor. {timing_words(repeats, warmup=warmup)}"
        ),
        columns=(
            "setting",
            "workers",
            "median_s",
            "spread",
            "speedup",
            "cores_busy",
            "same_as_serial",
        ),
        rows=rows,
        headline=headline,
        explanation=_explain(rows, gil=gil),
        environment={},
        options={},
    )


def _explain(rows, *, gil):
    top = rows[-1]
    k, ratio, busy = top["workers"], top["speedup"], top["cores_busy"]
    measured = (
        f"With {k} threads the same trainings ran {ratio:.2f}x the serial speed "
        f"({ratio_words(ratio)} serial) while the process kept {busy:.2f} cores busy."
    )
    if gil:
        why = (
            " Every multiply-add of this network is a Python bytecode, and with the GIL only "
            "one thread executes bytecode at a time: the threads take turns (a waiting thread "
            f"asks for the GIL after the {sys.getswitchinterval() * 1e3:g} ms switch interval), "
            "so the work is done one core's worth at a time and the hand-offs add their own cost."
        )
        training = (
            " For training: when a step is Python-bound (small layers, per-sample Python loops, "
            "augmentation in Python), running trials on threads buys nothing; use processes "
            "(lesson 4), or make the step spend its time in NumPy kernels that release the GIL "
            "(wide layers), which is where the threads backend pays off."
        )
    else:
        why = (
            " This interpreter is a free-threaded build running with the GIL disabled, so the "
            "threads execute Python bytecode in parallel on separate cores: the essay's claim "
            "holds for the default (GIL) build of CPython, not for this one."
        )
        training = (
            " For training: on this build even Python-bound trials can run on threads, without "
            "the start-up and pickling costs of processes (lesson 4)."
        )
    same = all(row["same_as_serial"] for row in rows)
    check = (
        " Every setting returned exactly the serial weights and losses."
        if same
        else " WARNING: a threaded run returned weights that differ from the serial run."
    )
    return measured + why + training + check


def draw(ax, result):
    """The lesson's plot: median time per setting."""
    draw_timing_bars(ax, result, title="Lesson 1: pure-Python MLP training, serial vs threads")
