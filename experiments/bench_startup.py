"""Benchmark: how long a sweep waits for its first worker, and what an idle worker weighs.

For each local backend, a fresh interpreter runs two sweeps of one trivial
trial (``n_jobs=1``, ``blas_threads=1``) and records, for each:

- **start-up**: from the ``sweep()`` call to the moment the trial starts in
  its worker (the row's ``started_at``): worker start, imports, the first
  message;
- **sweep wall**: the whole call, the worker's shut-down included;
- **worker memory**: the RSS, PSS and private (USS) memory of the process
  that runs the trial, read by the trial itself from ``/proc/self``: a worker
  ready to train. For serial and threads that is the sweep's own process.

The first sweep of the interpreter is *cold* (for ``processes``, it starts
the fork server too); the second is *warm* (the server is up). Backends:

- ``serial``, ``threads``;
- ``processes``: workers forked from a pre-loaded fork server (the default
  on Linux);
- ``processes-spawn``: the same backend with its old launcher, a fresh
  interpreter per worker (loky), through the backend's private ``_launcher``
  switch -- the one place this benchmark reaches past the public API;
- ``forked``: ``fork()`` of the sweep's process.

Repeats are interleaved (every backend once per round, rotated) and reported
as medians. Usage::

    python experiments/bench_startup.py              # 7 rounds
    python experiments/bench_startup.py --repeats 2  # smoke run

Writes ``experiments/results/startup/startup.json`` (``startup-quick.json``
with fewer than 5 repeats) and prints a table. Linux only for the memory
columns (they read /proc).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "startup"
BACKENDS = ["serial", "threads", "processes", "processes-spawn", "forked"]
FIELDS = ("startup_s", "wall_s", "rss_mb", "pss_mb", "uss_mb")


def memory_trial(params, seed):
    """The trivial trial: report this process's memory, in MB."""
    out = {"pid": os.getpid()}
    fields = {"VmRSS:": "rss_mb"}
    rollup = {"Pss:": "pss_mb", "Private_Clean:": "uss_mb", "Private_Dirty:": "uss_mb"}
    for path, wanted in (("/proc/self/status", fields), ("/proc/self/smaps_rollup", rollup)):
        try:
            with open(path) as f:
                for line in f:
                    key, *rest = line.split()
                    if key in wanted:
                        name = wanted[key]
                        out[name] = out.get(name, 0.0) + int(rest[0]) / 1024
        except OSError:
            pass
    return out


def _register_spawn_backend():
    """``processes-spawn``: the processes backend with its loky launcher (private switch)."""
    from mlpar import register_backend
    from mlpar.backends._process import ProcessBackend

    class SpawnProcessBackend(ProcessBackend):
        _launcher = "loky"

    register_backend("processes-spawn", SpawnProcessBackend)


def child(backend):
    """In a fresh interpreter: a cold then a warm one-trial sweep; print JSON."""
    t_import = time.perf_counter()
    from mlpar import sweep

    _register_spawn_backend()
    import_s = time.perf_counter() - t_import
    kwargs = {} if backend == "serial" else {"n_jobs": 1}
    out = {"backend": backend, "import_s": import_s}
    for phase in ("cold", "warm"):
        t_call, t0 = time.time(), time.perf_counter()
        [row] = sweep(
            memory_trial, {"x": [0]}, backend=backend, blas_threads=1, progress=False, **kwargs
        )
        wall = time.perf_counter() - t0
        if row.status != "ok":
            raise RuntimeError(f"{backend}: {row.status}: {row.error_message}")
        out[phase] = {
            "startup_s": row.started_at - t_call,
            "wall_s": wall,
            **{k: v for k, v in row.metrics.items() if k.endswith("_mb")},
            "own_process": row.metrics["pid"] == os.getpid(),
        }
    print(json.dumps(out))


def environment():
    import numpy as np
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas": blas,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    runs = {b: [] for b in args.backends}
    for r in range(args.repeats):
        k = r % len(args.backends)
        for backend in args.backends[k:] + args.backends[:k]:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", backend],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{backend} failed:\n{proc.stderr}")
            runs[backend].append(json.loads(proc.stdout.strip().splitlines()[-1]))

    def med(backend, phase, key):
        values = [run[phase][key] for run in runs[backend] if key in run[phase]]
        return statistics.median(values) if values else None

    summary = {}
    for b in args.backends:
        summary[b] = {
            phase: {key: med(b, phase, key) for key in FIELDS} for phase in ("cold", "warm")
        }
        summary[b]["own_process"] = runs[b][0]["cold"]["own_process"]
        summary[b]["import_s"] = statistics.median(run["import_s"] for run in runs[b])

    env = environment()
    blas = ", ".join(f"{x['internal_api']} {x['version']}" for x in env["blas"])
    print(
        f"{env['cpu']}, {env['cores']} cores, Python {env['python']}, BLAS {blas}; "
        f"median of {args.repeats} interleaved rounds; one trivial trial, n_jobs=1, "
        "blas_threads=1"
    )
    head = (
        f"{'backend':<16}{'cold start-up':>14}{'warm start-up':>14}{'cold wall':>11}"
        f"{'warm wall':>11}{'worker RSS':>12}{'PSS':>8}{'USS':>8}"
    )
    print(head)
    print("-" * len(head))

    def ms(x):
        return f"{1000 * x:.1f} ms" if x is not None else "-"

    def mb(x):
        return f"{x:.0f} MB" if x is not None else "-"

    for b, s in summary.items():
        c, w = s["cold"], s["warm"]
        note = " (sweep's own process)" if s["own_process"] else ""
        print(
            f"{b:<16}{ms(c['startup_s']):>14}{ms(w['startup_s']):>14}{ms(c['wall_s']):>11}"
            f"{ms(w['wall_s']):>11}{mb(w['rss_mb']):>12}{mb(w['pss_mb']):>8}{mb(w['uss_mb']):>8}{note}"
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "startup.json" if args.repeats >= 5 else "startup-quick.json"
    path = RESULTS / name
    path.write_text(
        json.dumps(
            {"environment": env, "repeats": args.repeats, "summary": summary, "runs": runs},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
