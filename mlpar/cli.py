"""The ``mlpar`` command: a thin layer over the public API.

Parsing, printing and exit codes live here and nowhere else; each subcommand
imports only what it uses, so ``mlpar --help`` or ``mlpar validate`` start
about as fast as NumPy does.

Every error a user can cause (a bad config, a missing file, an unknown
backend, a missing optional dependency, an unreachable scheduler) becomes one
line on stderr and exit code 2, never a traceback. Ctrl-C exits 130 with the
journal intact. Progress goes to stderr: bars on a terminal, otherwise (nohup,
CI, a pipe) one short line as trials or compared runs finish; ``--quiet``
shows neither.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class _UsageError(Exception):
    """A user error the CLI reports in one line."""


class _Parser(argparse.ArgumentParser):
    # argparse exits with its own message on bad usage; keep it to one line + exit 2.
    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def _csv(kind):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind}")
        if kind == "integers":
            try:
                return [int(s) for s in items]
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a comma-separated list of integers, got {text!r}") from None
        return items
    return parse


def _add_overrides(p):
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.01 "
                        "--set model.hidden=[64,64] (values are YAML)")


def _add_progress(p):
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: one line as trials finish instead")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output at all")


def _add_execution(p, *, progress=True):
    p.add_argument("--backend", help="serial, threads, processes or dask (serial alone sets "
                                     "n_jobs to 1 unless --n-jobs is given)")
    p.add_argument("--n-jobs", type=int, help="parallel workers (-1: all cores)")
    p.add_argument("--blas-threads", type=int, help="BLAS threads per worker")
    p.add_argument("--stack", help="train up to N compatible trials as one batched "
                                   "computation: an integer, auto (measured) or none")
    if progress:
        _add_progress(p)


def _build_parser():
    parser = _Parser(
        prog="mlpar",
        description="Parallel training of NumPy MLPs: YAML sweeps on serial, threads, "
                    "processes and Dask, and why one backend beats another.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run the sweep of a config",
                       description="Run the sweep a YAML config describes; results go to a "
                                   "new run folder runs/<name>/<timestamp>/.")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)
    _add_execution(p)
    p.add_argument("--run-dir", help="write the run here instead of a new timestamped folder")

    p = sub.add_parser("compare", help="run the same sweep under several backends",
                       description="Run the same sweep under each backend setting, repeated and "
                                   "interleaved; print wall time, speedup and efficiency, "
                                   "and the GIL/BLAS decomposition.")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)
    p.add_argument("--backends", type=_csv("names"), help="e.g. serial,threads,processes,dask")
    p.add_argument("--n-jobs", type=_csv("integers"), help="e.g. 1,2")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default: the config's)")
    p.add_argument("--no-blas-axis", action="store_true",
                   help="skip the serial run with BLAS threads = cores")
    p.add_argument("--gil", choices=["on", "off", "both"], default=None,
                   help="free-threaded CPython only: also run the threads backend in child "
                        "interpreters with the GIL on (PYTHON_GIL=1), off (PYTHON_GIL=0), "
                        "or both")
    p.add_argument("--run-dir", help="write the comparison here")
    _add_progress(p)

    p = sub.add_parser("resume", help="finish an interrupted run from its journal")
    p.add_argument("run_dir", help="the run folder (holds config.yaml and results.jsonl)")
    _add_progress(p)

    p = sub.add_parser("report", help="write report.md and plots for a run folder")
    p.add_argument("run_dir", help="the run folder")

    p = sub.add_parser("validate", help="check a config without running it",
                       description="Check a config and all a run of it needs before its "
                                   "first trial: backend, output folder, Dask scheduler.")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)
    _add_execution(p, progress=False)

    p = sub.add_parser("info", help="cores, BLAS, Python build and versions")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("advise", help="recommend backend, n_jobs and blas_threads",
                       description="Run a short serial calibration of the config's workload "
                                   "and recommend a backend, n_jobs and blas_threads.")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)
    p.add_argument("--n-jobs", type=int, default=None, help="cores to plan for (default: all)")

    p = sub.add_parser("demo", help="the four classic lessons of concurrency in Python",
                       description="Reproduce and measure a lesson of concurrency in Python.")
    p.add_argument("lesson", choices=["cpu", "io", "race", "processes", "all"])
    p.add_argument("--n-jobs", type=int, default=None,
                   help="threads/processes (default: all cores, at least 2)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    p.add_argument("--quick", action="store_true", help="small sizes, for a fast look")
    p.add_argument("--out", default="runs/demo", help="folder for tables and plots")
    return parser


def _version():
    from . import __version__

    return f"mlpar {__version__}"


def main(argv=None) -> int:
    """Run the ``mlpar`` command; returns the exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return EXIT_OK
        return COMMANDS[args.command](args, args_list)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        # _run and _resume print the resume hint where a run was interrupted.
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`mlpar info | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the one place user errors become exit 2
        from .config import ConfigError

        if isinstance(exc, ConfigError):
            for line in exc.errors:
                print(line, file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, (ValueError, TypeError, ImportError, FileNotFoundError,
                            FileExistsError, NotADirectoryError, IsADirectoryError,
                            PermissionError, ConnectionError)) \
                and not os.environ.get("MLPAR_DEBUG"):
            # MLPAR_DEBUG=1 shows the traceback instead, for bug reports.
            print(f"mlpar: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _say(text=""):
    print(text, flush=True)


def _progress(args):
    """The sweeps' progress bars: off with --quiet or --no-progress, else on a terminal."""
    return False if args.quiet or args.no_progress else None


def _lines(args, stream):
    """Whether to print progress lines: not --quiet, and no bar on ``stream``."""
    return not args.quiet and (args.no_progress or not stream.isatty())


def _follow(args, run_dir):
    """Progress lines from the journals of ``run_dir``, where no bar shows (a context)."""
    from contextlib import nullcontext

    if not _lines(args, sys.stderr):
        return nullcontext()
    from .results import JournalFollower

    return JournalFollower(run_dir, lambda p: print(p.line(), file=sys.stderr, flush=True),
                           min_gap=2.0)


# The flags that set an execution setting, by the key they set (for messages).
_FLAGS = {"execution.backend": "--backend", "execution.n_jobs": "--n-jobs",
          "execution.blas_threads": "--blas-threads", "execution.stack": "--stack"}


def _load(args, on_read=None):
    """args.config with its --set overrides and execution flags; notes go to stderr.

    Errors about a value a flag set name the flag (``--n-jobs: ...``), not
    the ``--set`` the flag became.
    """
    import warnings

    from .config import ConfigError, OverrideWarning, load_config

    flags = _execution_overrides(args)
    typed = {o.partition("=")[0].strip() for o in args.overrides}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OverrideWarning)
        try:
            config = load_config(args.config, overrides=list(args.overrides) + flags,
                                 on_read=on_read)
        except ConfigError as exc:
            lines = []
            for line in exc.errors:
                for key, flag in _FLAGS.items():
                    if key not in typed and line.startswith(f"--set {key}: "):
                        line = flag + line[len(f"--set {key}"):]
                lines.append(line)
            raise ConfigError(lines) from None
    for w in caught:
        if issubclass(w.category, OverrideWarning):
            print(f"mlpar: note: {w.message}", file=sys.stderr, flush=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return config


def _execution_overrides(args):
    over = []
    for flag, key in (("backend", "backend"), ("n_jobs", "n_jobs"),
                      ("blas_threads", "blas_threads"), ("stack", "stack")):
        value = getattr(args, flag, None)
        if value is not None:
            # --stack none: YAML's null (the word itself would be a string).
            value = "null" if flag == "stack" and str(value).lower() == "none" else value
            over.append(f"execution.{key}={value}")
    return over


def _interrupted(run_dir):
    if run_dir is not None and not Path(run_dir).exists():
        print("\ninterrupted before any trial finished: nothing to resume, and no run "
              "folder was kept", file=sys.stderr, flush=True)
    elif run_dir is not None:
        print(f"\ninterrupted: every completed trial is in {Path(run_dir) / 'results.jsonl'}\n"
              f"finish the run with: mlpar resume {run_dir}", file=sys.stderr, flush=True)


def _validate(args, argv):
    from .experiment import check_experiment, describe_search

    config = _load(args)
    check_experiment(config)
    _say(f"{args.config}: ok ({describe_search(config)}, backend {config.execution.backend})")
    return EXIT_OK


def _info(args, argv):
    from .environment import environment_info, format_environment

    info = environment_info()
    _say(json.dumps(info, indent=2) if args.json else format_environment(info))
    return EXIT_OK


def _run(args, argv):
    from contextlib import ExitStack

    from .backends import boot_ahead, prestart

    if args.backend in (None, "processes"):  # a fork server's interpreter boots meanwhile
        boot_ahead()
    # As soon as the file is read, before it is checked: its imports overlap
    # the check's and those below. Again once checked (a no-op if unchanged).
    def early(ex):
        prestart(ex.get("backend", "serial"), n_jobs=ex.get("n_jobs"),
                 blas_threads=ex.get("blas_threads"))

    config = _load(args, on_read=early)
    ex = config.execution
    prestart(ex.backend, n_jobs=ex.n_jobs, blas_threads=ex.blas_threads)
    from .experiment import run_experiment
    from .report import format_run_summary

    started = []
    with ExitStack() as follow:
        def on_start(run_dir):
            # The folder exists only once everything a run needs was checked.
            started.append(run_dir)
            _say(f"run folder: {run_dir}")
            follow.enter_context(_follow(args, run_dir))

        try:
            run_dir, result = run_experiment(config, run_dir=args.run_dir,
                                             progress=_progress(args), argv=["mlpar", *argv],
                                             on_start=on_start)
        except KeyboardInterrupt:
            follow.close()
            _interrupted(started[0] if started else None)
            raise
    _say(format_run_summary(result, config))
    _say(f"\nrun folder: {run_dir}\nreport:     mlpar report {run_dir}")
    return EXIT_OK


def _resume(args, argv):
    from .experiment import resume_run
    from .report import format_run_summary

    try:
        with _follow(args, args.run_dir):
            config, result = resume_run(args.run_dir, progress=_progress(args))
    except KeyboardInterrupt:
        _interrupted(args.run_dir)
        raise
    _say(format_run_summary(result, config))
    _say(f"\nrun folder: {args.run_dir}")
    return EXIT_OK


def _report(args, argv):
    from .report import write_report

    path = write_report(args.run_dir)
    _say(f"wrote {path}")
    return EXIT_OK


def _compare(args, argv):
    from .analysis.compare import run_comparison
    from .config import load_config
    from .report import write_report

    config = load_config(args.config, overrides=args.overrides)
    # Without a progress bar (not a terminal, or --no-progress) one line per
    # finished run, with the time so far and left, shows that a long comparison
    # is alive; --quiet shows neither.
    state = {"show_runs": _lines(args, sys.stdout)}
    run_dir, doc = run_comparison(
        config, backends=args.backends, n_jobs=args.n_jobs, repeats=args.repeats,
        blas_axis=not args.no_blas_axis, gil=args.gil, run_dir=args.run_dir,
        progress=_progress(args), argv=["mlpar", *argv],
        on_event=lambda kind, **data: _compare_event(kind, data, state))
    from .report._compare import format_outcome

    _say("\n" + format_outcome(doc))
    _say(f"\nreport: {write_report(run_dir)}")
    return EXIT_OK


def _compare_event(kind, data, state):
    import time

    from .results import duration

    if kind == "start":
        state.update(t0=time.monotonic(), runs=0, run_time=0.0,
                     total=len(data["settings"]) * data["repeats"] * data["n_groups"])
        _say(f"comparing {len(data['settings'])} settings x {data['repeats']} repeats on "
             f"{data['n_groups']} workload group(s), {data['cores']} cores; "
             f"run folder: {data['run_dir']}")
    elif kind == "group":
        from .analysis.summary import group_label

        _say(f"\n[{group_label(data['label'])}] {data['n_trials']} trials per run")
    elif kind == "run":
        r = data["record"]
        state["runs"] += 1
        state["run_time"] += r["wall_time"]
        if not state["show_runs"]:
            return
        # ETA from the runs so far: the calibrations between groups are not in it.
        left = state["total"] - state["runs"]
        eta = f", ETA {duration(state['run_time'] / state['runs'] * left)}" if left else ""
        _say(f"  {r['label']:<28} repeat {r['repeat'] + 1}: {r['wall_time']:.2f} s "
             f"({r['n_ok']}/{r['n_trials']} ok)  [{state['runs']}/{state['total']} runs, "
             f"{duration(time.monotonic() - state['t0'])} elapsed{eta}]")
    elif kind == "group_done":
        from .report._compare import format_group

        _say(format_group(data["result"], data["model_ok"]))


def _advise(args, argv):
    from .analysis.advice import advise
    from .config import load_config

    config = load_config(args.config, overrides=args.overrides)
    rec = advise(config, n_cores=args.n_jobs)
    _say(rec.format())
    return EXIT_OK


def _demo(args, argv):
    from .lessons import format_summary, run_all, run_lesson

    opts = dict(n_jobs=args.n_jobs, repeats=args.repeats,
                size="quick" if args.quick else "normal", out_dir=args.out, verbose=1)
    if args.lesson == "all":
        results = run_all(**opts)
        _say(format_summary(results))
    else:
        run_lesson(args.lesson, **opts)
    _say(f"\ntables and plots: {args.out}")
    return EXIT_OK


# The subcommands, by name: each takes the parsed arguments and the raw argv
# and returns the exit code.
COMMANDS = {
    "run": _run, "compare": _compare, "resume": _resume, "report": _report,
    "validate": _validate, "info": _info, "advise": _advise, "demo": _demo,
}


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
