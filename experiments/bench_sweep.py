"""Benchmark: what mlpar.sweep costs on top of the work it runs.

Four measurements:

1. Per-trial overhead against raw ``joblib.Parallel`` for a no-op trial, on
   every backend (serial/sequential, threads/threading, processes/loky, and
   Dask on one shared local cluster when installed). Each contender runs
   sweeps of two sizes; the slope ``(T(N2) - T(N1)) / (N2 - N1)`` is the
   per-trial cost and the intercept the fixed cost (worker start-up). Runs
   are interleaved (round robin, rotated each repeat) and reported as medians.
   Target: at most 1 ms extra per trial for the local backends.
2. Parallel efficiency: CPU-bound trials of ~0.5 s (Python + small NumPy
   ops, 1 BLAS thread), processes with n_jobs=2 against serial. Target >= 1.85x.
3. Memory: trials that read a 500 MB float32 array, processes with 2 workers.
   The array lives in a ``.npy`` file opened with ``np.load(mmap_mode="r")``
   inside the trial (the way mlpar documents for sharing big data), so the
   OS shares one copy. Peak total PSS (parent + workers, from
   /proc/<pid>/smaps_rollup) is compared with one copy; a no-op sweep gives
   the interpreters' own baseline. Target: at most 1.3x of one copy.
4. Soak (``--soak``): 10,000 no-op trials on processes and threads with a
   journal; the journal must hold 10,000 rows and the parent's RSS stay flat
   (start / middle / end are reported).

Usage::

    python experiments/bench_sweep.py            # overhead, efficiency, memory
    python experiments/bench_sweep.py --soak     # ... and the 10,000-trial soak
    python experiments/bench_sweep.py --quick    # smoke run (seconds)
    python experiments/bench_sweep.py --only memory   # one measurement

Writes ``bench_sweep.json`` (``bench_sweep-quick.json`` with ``--quick``,
``bench_sweep-<name>.json`` with ``--only``) under ``experiments/results/``
and prints a summary. The memory measurement runs in a fresh interpreter, so
that its parent process is a plain script's, not this benchmark's. Linux only for the
memory figures (they read /proc).
"""

import argparse
import datetime
import functools
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import joblib
import numpy as np
from threadpoolctl import threadpool_info

from mlpar import sweep

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024
BACKENDS = {"serial": "sequential", "threads": "threading", "processes": "loky", "dask": "dask"}


# ------------------------------------------------------------------ trials
# Module level: worker processes import them by name.


def noop(params, seed):
    """The empty trial: what is left is the machinery's cost."""
    return {}


def burn(params, seed):
    """CPU-bound work: a Python loop of small NumPy operations."""
    x = np.random.default_rng(seed).random(16)
    acc = 0.0
    for _ in range(params["iterations"]):
        x = np.sin(x) + 0.5
        acc += float(x[0])
    return {"acc": acc}


def read_array(params, seed, *, path, hold_s=0.5):
    """Read the whole shared array through a read-only memory map, and keep it mapped a moment."""
    array = np.load(path, mmap_mode="r")
    total = float(array.sum(dtype=np.float64))
    time.sleep(hold_s)  # the memory sampler sees the plateau, not just a spike
    return {"sum": total}


# ------------------------------------------------------------- measuring


def environment():
    """Where these figures come from."""
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }
    for name in ("mlpar", "dask", "distributed", "threadpoolctl", "scikit-learn"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception as exc:  # not installed: say so rather than fail
            versions[name] = f"unavailable ({type(exc).__name__})"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "joblib_cpu_count": joblib.cpu_count(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "blas": [
            {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for lib in threadpool_info()
            if lib["user_api"] == "blas"
        ],
        "versions": versions,
    }


def _descendants(pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                children += [int(entry), *_descendants(int(entry))]
    return children


def _status_kb(pid, path, field):
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # the process ended while we looked
        return 0
    return 0


class Sampler:
    """Sample memory in a background thread: total PSS of this process tree, and this process's RSS."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.samples = []  # (seconds since start, total PSS MB, parent RSS MB)
        self._stop = threading.Event()

    def _run(self):
        t0 = time.perf_counter()
        me = os.getpid()
        while not self._stop.is_set():
            pss = sum(_status_kb(p, "smaps_rollup", "Pss") for p in [me, *_descendants(me)])
            rss = _status_kb(me, "status", "VmRSS")
            self.samples.append((time.perf_counter() - t0, pss / 1024, rss / 1024))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_pss(self):
        return max(s[1] for s in self.samples)


def timed(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def run_mlpar(backend, n, n_jobs, address=None):
    kwargs = {"address": address} if backend == "dask" else {}
    sweep(
        noop,
        {"i": list(range(n))},
        backend=backend,
        n_jobs=None if backend == "serial" else n_jobs,
        blas_threads=1,
        progress=False,
        **kwargs,
    )


def run_joblib(backend, n, n_jobs):
    jobs = 1 if backend == "serial" else n_jobs
    # parallel_config rather than Parallel(backend=...): it registers 'dask' on demand.
    with joblib.parallel_config(backend=BACKENDS[backend], n_jobs=jobs):
        joblib.Parallel()(joblib.delayed(noop)({"i": i}, i) for i in range(n))


def bench_overhead(sizes, repeats, n_jobs):
    """Per-trial slope and fixed intercept, mlpar vs joblib, per backend.

    ``sizes`` maps a backend to its two sweep sizes: large enough that the
    noise of a process start-up (seconds) is small once spread over them.
    """
    cells = [
        (impl, b, n)
        for b in ("serial", "threads", "processes")
        for impl in ("mlpar", "joblib")
        for n in sizes[b]
    ]
    cluster = client = None
    try:
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=n_jobs,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            processes=True,
        )
        client = distributed.Client(cluster)  # the default client joblib's dask backend needs
        cells += [(impl, "dask", n) for impl in ("mlpar", "joblib") for n in sizes["dask"]]
    except ImportError:
        print("dask not installed: skipping its overhead figures")
    address = cluster.scheduler_address if cluster is not None else None

    def measure(impl, backend, n):
        if impl == "mlpar":
            return timed(lambda: run_mlpar(backend, n, n_jobs, address))
        return timed(lambda: run_joblib(backend, n, n_jobs))

    for cell in cells:  # warm-up: imports, loky's reusable executor, dask's workers
        measure(*cell[:2], 2)
    times = {cell: [] for cell in cells}
    try:
        for r in range(repeats):
            shift = r % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                times[cell].append(measure(*cell))
    finally:
        if client is not None:
            client.close()
            cluster.close()

    out = {}
    for backend in dict.fromkeys(b for _, b, _ in cells):
        n1, n2 = sizes[backend]
        row = {}
        for impl in ("mlpar", "joblib"):
            t1 = statistics.median(times[(impl, backend, n1)])
            t2 = statistics.median(times[(impl, backend, n2)])
            slope = (t2 - t1) / (n2 - n1)
            row[impl] = {
                "per_trial_ms": 1e3 * slope,
                "fixed_ms": 1e3 * (t1 - slope * n1),
                f"total_s_{n1}": t1,
                f"total_s_{n2}": t2,
            }
        row["extra_per_trial_ms"] = row["mlpar"]["per_trial_ms"] - row["joblib"]["per_trial_ms"]
        row["sizes"] = [n1, n2]
        out[backend] = row
    return out


def calibrate_burn(target_s):
    """Iterations of ``burn`` that take about ``target_s`` on one core here."""
    n = 20_000
    elapsed = min(timed(lambda: burn({"iterations": n}, 0)) for _ in range(3))
    return max(1, int(n * target_s / elapsed))


def bench_efficiency(n_trials, trial_s, repeats):
    iterations = calibrate_burn(trial_s)
    space = {"i": list(range(n_trials)), "iterations": [iterations]}
    startup = statistics.median(
        timed(
            lambda: sweep(
                noop, {"i": [0, 1]}, backend="processes", n_jobs=2, blas_threads=1, progress=False
            )
        )
        for _ in range(2)
    )
    times = {"serial": [], "processes": []}
    for r in range(repeats):
        for backend in ["serial", "processes"] if r % 2 == 0 else ["processes", "serial"]:
            n_jobs = 2 if backend == "processes" else None
            times[backend].append(
                timed(
                    lambda backend=backend, n_jobs=n_jobs: sweep(
                        burn, space, backend=backend, n_jobs=n_jobs, blas_threads=1, progress=False
                    )
                )
            )
    serial, parallel = statistics.median(times["serial"]), statistics.median(times["processes"])
    return {
        "n_trials": n_trials,
        "trial_s_target": trial_s,
        "iterations": iterations,
        "serial_s": serial,
        "processes_2_s": parallel,
        "speedup": serial / parallel,
        "worker_startup_s": startup,
        "speedup_excluding_startup": serial / max(1e-9, parallel - startup),
        "all_times": times,
    }


def bench_memory(size_mb, n_trials):
    """Run the memory measurement in a fresh interpreter and return its figures.

    Fresh, because this process has imported Dask, joblib's loky and more for
    the other measurements: the parent of the measured sweep should be what a
    user's script is, numpy and mlpar.
    """
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(size_mb), str(n_trials)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_child(size_mb, n_trials):
    with tempfile.TemporaryDirectory(prefix="mlpar-bench-") as tmp:
        path = Path(tmp) / "array.npy"
        n = size_mb * MB // 4
        # Written in chunks through a memory map: the parent never holds a copy.
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n,))
        rng = np.random.default_rng(0)
        for start in range(0, n, 8 * MB):
            stop = min(n, start + 8 * MB)
            array[start:stop] = rng.random(stop - start, dtype=np.float32)
        array.flush()
        del array
        gc.collect()
        space = {"i": list(range(n_trials))}
        with Sampler() as base:
            sweep(noop, space, backend="processes", n_jobs=2, blas_threads=1, progress=False)
        with Sampler() as data:
            result = sweep(
                functools.partial(read_array, path=str(path)),
                space,
                backend="processes",
                n_jobs=2,
                blas_threads=1,
                progress=False,
            )
        assert all(r.status == "ok" for r in result), [r.error_message for r in result]
    copy = size_mb
    return {
        "array_mb": size_mb,
        "n_trials": n_trials,
        "peak_total_pss_mb": data.peak_pss,
        "baseline_peak_pss_mb": base.peak_pss,
        "total_over_one_copy": data.peak_pss / copy,
        "data_attributable_over_one_copy": (data.peak_pss - base.peak_pss) / copy,
    }


def bench_soak(n_trials, backends=("processes", "threads")):
    out = {}
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="mlpar-soak-") as tmp:
            journal = Path(tmp) / "journal.jsonl"
            gc.collect()
            with Sampler(interval=0.1) as sampler:
                t0 = time.perf_counter()
                result = sweep(
                    noop,
                    {"i": list(range(n_trials))},
                    backend=backend,
                    n_jobs=2,
                    blas_threads=1,
                    journal=journal,
                    progress=False,
                )
                wall = time.perf_counter() - t0
            with open(journal) as f:
                rows = sum(1 for line in f) - 1
            rss = [s[2] for s in sampler.samples]
            out[backend] = {
                "n_trials": n_trials,
                "journal_rows": rows,
                "all_ok": all(r.status == "ok" for r in result),
                "wall_s": wall,
                "per_trial_ms": 1e3 * wall / n_trials,
                "parent_rss_mb": {"start": rss[0], "middle": rss[len(rss) // 2], "end": rss[-1]},
                "result_rows_in_memory": len(result),
            }
            del result
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory-child"]:
        print(json.dumps(_memory_child(int(argv[1]), int(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    parser.add_argument("--soak", action="store_true", help="also run the 10,000-trial soak")
    parser.add_argument(
        "--only",
        choices=["overhead", "efficiency", "memory", "soak"],
        help="run one measurement (saved as bench_sweep-<name>.json)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    wanted = (
        {args.only}
        if args.only
        else {"overhead", "efficiency", "memory"} | ({"soak"} if args.soak or args.quick else set())
    )

    if args.quick:
        sizes = {
            "serial": (50, 250),
            "threads": (50, 250),
            "processes": (100, 1000),
            "dask": (10, 50),
        }
        plan = dict(
            sizes=sizes, repeats=1, n_trials=4, trial_s=0.1, eff_repeats=1, memory_mb=50, soak=1000
        )
    else:
        sizes = {
            "serial": (500, 2500),
            "threads": (500, 2500),
            "processes": (500, 4000),
            "dask": (50, 300),
        }
        plan = dict(
            sizes=sizes,
            repeats=5,
            n_trials=24,
            trial_s=0.5,
            eff_repeats=3,
            memory_mb=500,
            soak=10_000,
        )
    report = {"environment": environment(), "plan": plan}
    print(json.dumps(report["environment"], indent=1))

    if "overhead" in wanted:
        report["overhead"] = bench_overhead(plan["sizes"], plan["repeats"], 2)
        print_overhead(report["overhead"])
    if "efficiency" in wanted:
        eff = report["efficiency"] = bench_efficiency(
            plan["n_trials"], plan["trial_s"], plan["eff_repeats"]
        )
        print(
            f"\nparallel efficiency: {eff['n_trials']} trials of ~{eff['trial_s_target']} s: serial "
            f"{eff['serial_s']:.2f} s, processes x2 {eff['processes_2_s']:.2f} s -> {eff['speedup']:.2f}x "
            f"(worker start-up {eff['worker_startup_s']:.2f} s; {eff['speedup_excluding_startup']:.2f}x without it)"
        )
    if "memory" in wanted and sys.platform.startswith("linux"):
        mem = report["memory"] = bench_memory(plan["memory_mb"], 4)
        print(
            f"\nmemory: {mem['array_mb']} MB array, 2 workers: peak total PSS {mem['peak_total_pss_mb']:.0f} MB "
            f"= {mem['total_over_one_copy']:.2f}x one copy; no-op baseline {mem['baseline_peak_pss_mb']:.0f} MB; "
            f"data-attributable {mem['data_attributable_over_one_copy']:.2f}x"
        )
    if "soak" in wanted and sys.platform.startswith("linux"):
        soak = report["soak"] = bench_soak(plan["soak"])
        for backend, row in soak.items():
            rss = row["parent_rss_mb"]
            print(
                f"\nsoak {backend}: {row['journal_rows']} journal rows, {row['per_trial_ms']:.3f} ms/trial, "
                f"parent RSS start/middle/end {rss['start']:.0f}/{rss['middle']:.0f}/{rss['end']:.0f} MB"
            )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = "bench_sweep" + ("-quick" if args.quick else "") + (f"-{args.only}" if args.only else "")
    out = args.out_dir / f"{name}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {out}")
    return 0


def print_overhead(overhead):
    print("\nper-trial overhead, no-op trial, n_jobs=2 (ms; medians; slope of two sweep sizes)")
    print(
        f"{'backend':10} {'mlpar':>8} {'joblib':>8} {'extra':>8} {'mlpar fixed':>12} {'joblib fixed':>13}"
    )
    for backend, row in overhead.items():
        print(
            f"{backend:10} {row['mlpar']['per_trial_ms']:8.3f} {row['joblib']['per_trial_ms']:8.3f} "
            f"{row['extra_per_trial_ms']:8.3f} {row['mlpar']['fixed_ms']:12.1f} {row['joblib']['fixed_ms']:13.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
