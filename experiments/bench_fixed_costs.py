"""What a user waits for besides training: start-up of the command and of the workers.

Measured end to end, as a user runs them, in fresh interpreters:

- ``mlpar validate configs/quickstart.yaml`` against ``python -c "import numpy"``
  (the floor any NumPy tool pays);
- ``mlpar run configs/quickstart.yaml`` on serial, processes and forked (2 jobs,
  1 BLAS thread each), on a warm data cache: the end-to-end wall time, the span
  from the first trial's start to the last one's end (from the journal), and
  their difference, the run's fixed cost; and processes/forked vs serial end to end.

Settings are interleaved and repeated; medians are reported, with ratios taken
within one repeat.

    python experiments/bench_fixed_costs.py              # 5 repeats
    python experiments/bench_fixed_costs.py --repeats 3

Writes experiments/results/fixed_costs/fixed_costs.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlpar.environment import environment_info, format_environment
from mlpar.report.tables import format_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "fixed_costs"
CONFIG = ROOT / "configs" / "quickstart.yaml"
MLPAR = [sys.executable, "-m", "mlpar"]
RUNS = {
    "serial": ["--backend", "serial", "--n-jobs", "1"],
    "processes": ["--backend", "processes", "--n-jobs", "2"],
    "forked": ["--backend", "forked", "--n-jobs", "2"],
}


def _timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _run(name, scratch, config):
    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    shutil.rmtree(run_dir)
    wall = _timed(
        [
            *MLPAR,
            "run",
            str(config),
            *RUNS[name],
            "--blas-threads",
            "1",
            "--no-progress",
            "--run-dir",
            str(run_dir),
        ]
    )
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("type") == "trial"]
    span = max(r["ended_at"] for r in rows) - min(r["started_at"] for r in rows)
    return {
        "wall": wall,
        "span": span,
        "fixed": wall - span,
        "ok": sum(r["status"] == "ok" for r in rows),
        "trials": len(rows),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default=str(CONFIG))
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="mlpar-fixed-"))
    # A user's Python caches bytecode; with PYTHONDONTWRITEBYTECODE set (some
    # CI shells set it) every run would compile each edited module again,
    # ~0.1 s that no user pays after the first run.
    dont_write = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        # Warm-up: the data cache, the OS page cache and .pyc files.
        _timed([sys.executable, "-c", "import numpy"])
        _run("serial", scratch, args.config)
        starts = {"numpy": [], "validate": []}
        runs = {name: [] for name in RUNS}
        for r in range(args.repeats):
            order = list(RUNS)[r % len(RUNS) :] + list(RUNS)[: r % len(RUNS)]
            for name in order:
                runs[name].append(_run(name, scratch, args.config))
            for _ in range(3):
                starts["numpy"].append(_timed([sys.executable, "-c", "import numpy"]))
                starts["validate"].append(_timed([*MLPAR, "validate", args.config]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = statistics.median
    ratio_validate = med(v / n for v, n in zip(starts["validate"], starts["numpy"]))
    rows = []
    for name, rs in runs.items():
        speedups = [s["wall"] / r["wall"] for s, r in zip(runs["serial"], rs)]
        rows.append(
            {
                "backend": name,
                "wall": med(x["wall"] for x in rs),
                "span": med(x["span"] for x in rs),
                "fixed": med(x["fixed"] for x in rs),
                "fixed_max": max(x["fixed"] for x in rs),
                "speedup": med(speedups),
                "ok": min(x["ok"] for x in rs),
                "trials": rs[0]["trials"],
            }
        )
    env = environment_info(["python", *sys.argv])
    doc = {
        "repeats": args.repeats,
        "config": str(args.config),
        "runs": runs,
        "starts": starts,
        "validate_over_numpy": ratio_validate,
        "bytecode_cache": True,
        "shell_had_PYTHONDONTWRITEBYTECODE": dont_write,
        "summary": rows,
        "environment": env,
    }
    (OUT / "fixed_costs.json").write_text(json.dumps(doc, indent=2) + "\n")
    cols = [
        ("backend", "backend (2 jobs, 1 BLAS thread)"),
        ("wall", "median wall s"),
        ("span", "trial span s"),
        ("fixed", "fixed cost s"),
        ("fixed_max", "max fixed s"),
        ("speedup", "vs serial, end to end"),
        ("ok", "ok"),
        ("trials", "trials"),
    ]
    text = "\n".join(
        [
            f"mlpar run {Path(args.config).name}, {args.repeats} interleaved repeats, warm cache",
            format_table(rows, cols, right={k for k, _ in cols[1:]}),
            "",
            f"mlpar validate / python -c 'import numpy': {ratio_validate:.2f}x "
            f"(medians of {len(starts['numpy'])} pairs: {med(starts['validate']):.3f} s / "
            f"{med(starts['numpy']):.3f} s)",
            "",
            format_environment(env),
        ]
    )
    md = "\n".join(["# Fixed costs", "", "```", text, "```", ""])
    (OUT / "fixed_costs.md").write_text(md)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
