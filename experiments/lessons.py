"""The essay's four lessons on concurrency in Python, measured on ML workloads.

Runs the four lessons (CPU-bound Python on threads, IO on threads, a race and its
lock, processes), prints each lesson's table and explanation, and saves JSON,
markdown and PNG files, plus ``lessons.md`` with a claims-versus-measurements
summary table.

Usage::

    python experiments/lessons.py                     # full run, ~1-2 min on 2 cores
    python experiments/lessons.py --quick --repeats 1 # smoke run, seconds
    python experiments/lessons.py --workers 4 --out /tmp/lessons
"""

import argparse
import sys
from pathlib import Path

from mlpar.lessons import format_summary, run_all

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "lessons"


def main(argv=None):
    """Parse arguments, run the four lessons, print and save; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small workloads (a smoke run; timings not meaningful)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per setting (default: 5)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="most threads/processes to compare with serial (default: all usable cores, at least 2)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write PNG plots")
    args = parser.parse_args(argv)
    try:
        results = run_all(
            n_jobs=args.workers,
            repeats=args.repeats,
            size="quick" if args.quick else "normal",
            out_dir=args.out,
            plot=not args.no_plot,
            verbose=1,
        )
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("What the essay claims, and what we measured here\n")
    print(format_summary(results))
    print(f"\nSaved to {args.out}/ (lessons.md, lessons.json, one .json/.md/.png per lesson)")
    return 0


# The guard matters: lesson 4 starts worker processes with 'spawn', which
# re-imports this file in every worker.
if __name__ == "__main__":
    sys.exit(main())
