"""The essay's four lessons on concurrency in Python, reproduced and measured on ML work.

1. ``cpu``: CPU-bound pure-Python training on threads is not faster than serial.
2. ``io``: IO-bound work (fetching dataset shards) speeds up on threads.
3. ``race``: shared training state updated from threads loses updates; a lock fixes it.
4. ``processes``: processes speed up CPU-bound work, at the price of start-up and
   data transfer.

Examples
--------
>>> from mlpar.lessons import run_lesson
>>> result = run_lesson("race", size="quick", repeats=1, plot=False)  # doctest: +SKIP
>>> print(result.format_report())  # doctest: +SKIP
"""

import numbers
import sys
from pathlib import Path
from types import MappingProxyType

from . import _cpu, _io, _processes, _race
from ._common import LessonResult, environment, noise_note, write_json
from ._plot import render_png

__all__ = ["LESSONS", "LessonResult", "run_lesson", "run_all", "format_summary"]

_MODULES = {"cpu": _cpu, "io": _io, "race": _race, "processes": _processes}

#: Lesson name -> the essay's claim it tests, in the order the essay makes them.
LESSONS = MappingProxyType({name: module.CLAIM for name, module in _MODULES.items()})

SIZES = ("quick", "normal")


def run_lesson(
    name,
    *,
    n_jobs=None,
    repeats=5,
    size="normal",
    random_state=0,
    out_dir=None,
    plot=True,
    verbose=0,
):
    """Run one lesson: measure, tabulate, explain, and optionally save.

    Parameters
    ----------
    name : {"cpu", "io", "race", "processes"}
        The lesson to run.
    n_jobs : int or None, default=None
        Most threads or processes to compare with serial. None or -1 means
        every usable core (affinity and cgroup quotas applied), and at least 2.
        The lessons also run 2, 4, 8, ... workers below it; the IO lesson also
        runs 2, 4, 8 and 16 threads whatever the core count, because waiting
        threads need no core.
    repeats : int, default=5
        Timed repeats per setting, interleaved round-robin across settings;
        tables show medians and min-max spread.
    size : {"normal", "quick"}, default="normal"
        Workload size. "quick" takes seconds, skips the untimed warm-up round
        and is meant for smoke tests; its timings are too short to be meaningful.
    random_state : int, default=0
        Seed of the datasets' subsets and the weight initialisations.
    out_dir : path-like or None, default=None
        Folder to write ``<name>.json``, ``<name>.md`` and ``<name>.png`` to
        (created if missing). None writes nothing.
    plot : bool, default=True
        Write the PNG (needs ``out_dir`` and matplotlib; if matplotlib is
        missing the result gets a one-line note instead).
    verbose : int, default=0
        0 is silent; 1 prints the lesson's report when it finishes; 2 also
        prints progress after every round of repeats (to stderr).

    Returns
    -------
    LessonResult

    Raises
    ------
    ValueError
        If ``name``, ``size``, ``repeats`` or ``n_jobs`` has an invalid value.
    TypeError
        If ``repeats`` or ``n_jobs`` is not an integer.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown lesson {name!r}; available: {', '.join(_MODULES)}")
    repeats = _check_repeats(repeats)
    n_jobs = _resolve_n_jobs(n_jobs)
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(repr, SIZES))}, got {size!r}")

    def progress(message):
        print(f"[lesson {name}] {message}", file=sys.stderr, flush=True)

    module = _MODULES[name]
    result = module.run(
        n_jobs=n_jobs,
        repeats=repeats,
        size=size,
        random_state=random_state,
        progress=progress if verbose >= 2 else None,
    )
    result.environment = environment()
    result.options = {
        "n_jobs": n_jobs,
        "repeats": repeats,
        "size": size,
        "random_state": random_state,
        **result.options,
    }
    noisy = noise_note(result.rows)
    if noisy:
        result.notes.append(noisy)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if plot:
            height = 1.2 + 0.45 * len(result.rows)
            result.png, note = render_png(
                lambda ax: module.draw(ax, result), out_dir / f"{name}.png", height=height
            )
            if note:
                result.notes.append(note)
        write_json(out_dir / f"{name}.json", result.to_dict())
        (out_dir / f"{name}.md").write_text(result.to_markdown())
    if verbose >= 1:
        print(result.format_report() + "\n", flush=True)
    return result


def run_all(
    *,
    n_jobs=None,
    repeats=5,
    size="normal",
    random_state=0,
    out_dir=None,
    plot=True,
    verbose=0,
):
    """Run the four lessons in the essay's order.

    Takes the options of :func:`run_lesson`. With ``out_dir``, also writes
    ``lessons.json`` (the environment and every result) and ``lessons.md``
    (a summary table followed by each lesson's section).

    Returns
    -------
    list of LessonResult
    """
    results = [
        run_lesson(
            name,
            n_jobs=n_jobs,
            repeats=repeats,
            size=size,
            random_state=random_state,
            out_dir=out_dir,
            plot=plot,
            verbose=verbose,
        )
        for name in _MODULES
    ]
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(
            out_dir / "lessons.json",
            {"environment": results[0].environment, "lessons": [r.to_dict() for r in results]},
        )
        sections = "\n".join(r.to_markdown() for r in results)
        (out_dir / "lessons.md").write_text(
            "# The essay's four lessons, measured\n\n" + format_summary(results) + "\n\n" + sections
        )
    return results


def format_summary(results):
    """A markdown table: one row per lesson with its claim, measured figure and command.

    Parameters
    ----------
    results : list of LessonResult

    Returns
    -------
    str
    """
    env = results[0].environment
    options = results[0].options
    flags = " --quick" if options.get("size") == "quick" else ""
    lines = [
        "| lesson | the essay claims | measured here | command |",
        "| :--- | :--- | :--- | :--- |",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.claim} | {r.headline} | `mlpar demo {r.name}{flags}` |")
    lines.append("")
    lines.append(
        f"Measured with Python {env.get('python')} ({env.get('build')}, GIL "
        f"{'enabled' if env.get('gil_enabled') else 'disabled'}), {env.get('usable_cpus')} usable "
        f"cores, n_jobs={options.get('n_jobs')}, medians of {options.get('repeats')} repeats."
    )
    return "\n".join(lines)


def _check_repeats(repeats):
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral):
        raise TypeError(f"repeats must be an integer, got {repeats!r} ({type(repeats).__name__})")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    return int(repeats)


def _resolve_n_jobs(n_jobs):
    if n_jobs is None or (
        isinstance(n_jobs, numbers.Integral) and not isinstance(n_jobs, bool) and n_jobs == -1
    ):
        # Imported here: joblib is only needed to count usable cores.
        import joblib

        # At least 2: with one worker there is no concurrency to compare.
        return max(2, joblib.cpu_count())
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(
            f"n_jobs must be an integer or None, got {n_jobs!r} ({type(n_jobs).__name__})"
        )
    if n_jobs < 2:
        raise ValueError(
            f"n_jobs must be None, -1 or an integer >= 2 (the lessons compare serial with 2 or "
            f"more workers), got {n_jobs}"
        )
    return int(n_jobs)
