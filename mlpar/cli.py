"""The ``mlpar`` command: a thin layer over the public API.

Every error a user can cause (a bad config, a missing file, an unknown
backend, a missing optional dependency) becomes one line on stderr and exit
code 2, never a traceback. Ctrl-C exits 130 with the journal intact.
"""

from __future__ import annotations

import argparse
import os
import sys

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


def _add_execution(p):
    p.add_argument("--backend", help="serial, threads, processes or dask")
    p.add_argument("--n-jobs", type=int, help="parallel workers (-1: all cores)")
    p.add_argument("--blas-threads", type=int, help="BLAS threads per worker")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("resume", help="finish an interrupted run from its journal")
    p.add_argument("run_dir", help="the run folder (holds config.yaml and results.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("report", help="write report.md and plots for a run folder")
    p.add_argument("run_dir", help="the run folder")

    p = sub.add_parser("validate", help="check a config without running it")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)

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
        from . import _commands

        return getattr(_commands, f"cmd_{args.command}")(args, args_list)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        # _commands prints the resume hint where a run was interrupted.
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
                            NotADirectoryError, IsADirectoryError, PermissionError)) \
                and not os.environ.get("MLPAR_DEBUG"):
            # MLPAR_DEBUG=1 shows the traceback instead, for bug reports.
            print(f"mlpar: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
