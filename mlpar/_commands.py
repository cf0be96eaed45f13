"""The ``mlpar`` subcommands. ``cli`` parses; these do the work and print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .cli import EXIT_OK
from .config import load_config

__all__ = []


def _say(text=""):
    print(text, flush=True)


def _progress(args):
    return False if getattr(args, "no_progress", False) else None


def _execution_overrides(args):
    over = []
    for flag, key in (("backend", "backend"), ("n_jobs", "n_jobs"),
                      ("blas_threads", "blas_threads")):
        value = getattr(args, flag, None)
        if value is not None:
            over.append(f"execution.{key}={value}")
    return over


def _interrupted(run_dir):
    print(f"\ninterrupted: every completed trial is in {Path(run_dir) / 'results.jsonl'}\n"
          f"finish the run with: mlpar resume {run_dir}", file=sys.stderr, flush=True)


def cmd_validate(args, argv):
    config = load_config(args.config, overrides=args.overrides)
    from .space import expand_space

    trials = expand_space(config.search_space(), n_iter=config.sweep.n_iter,
                          seeds=config.sweep.seeds, random_state=config.sweep.random_state)
    kind = "random search" if config.is_random_search else "grid"
    _say(f"{args.config}: ok ({kind}, {len(trials)} trials, backend {config.execution.backend})")
    return EXIT_OK


def cmd_info(args, argv):
    from .environment import environment_info, format_environment

    info = environment_info()
    _say(json.dumps(info, indent=2) if args.json else format_environment(info))
    return EXIT_OK


def cmd_run(args, argv):
    from .experiment import prepare_run, run_experiment
    from .report import format_run_summary

    config = load_config(args.config, overrides=list(args.overrides) + _execution_overrides(args))
    run_dir = prepare_run(config, args.run_dir, argv=["mlpar", *argv])
    _say(f"run folder: {run_dir}")
    try:
        run_dir, result = run_experiment(config, run_dir=run_dir, progress=_progress(args),
                                         argv=["mlpar", *argv])
    except KeyboardInterrupt:
        _interrupted(run_dir)
        raise
    _say(format_run_summary(result, config))
    _say(f"\nrun folder: {run_dir}\nreport:     mlpar report {run_dir}")
    return EXIT_OK


def cmd_resume(args, argv):
    from .experiment import resume_run
    from .report import format_run_summary

    try:
        config, result = resume_run(args.run_dir, progress=_progress(args))
    except KeyboardInterrupt:
        _interrupted(args.run_dir)
        raise
    _say(format_run_summary(result, config))
    _say(f"\nrun folder: {args.run_dir}")
    return EXIT_OK


def cmd_report(args, argv):
    from .report import write_report

    path = write_report(args.run_dir)
    _say(f"wrote {path}")
    return EXIT_OK


def cmd_compare(args, argv):
    from .compare import run_comparison

    config = load_config(args.config, overrides=args.overrides)
    return run_comparison(config, args, argv)


def cmd_advise(args, argv):
    from .advice import advise

    config = load_config(args.config, overrides=args.overrides)
    rec = advise(config, n_cores=args.n_jobs)
    _say(rec.format())
    return EXIT_OK


def cmd_demo(args, argv):
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
