"""Is this interpreter really running Python on several threads at once?

Times a pure-Python CPU-bound function (no NumPy, no IO: nothing that releases
the GIL) run ``--threads`` times serially and then once on each of
``--threads`` threads, and prints the speedup. With the GIL the speedup is at
most ~1 (usually a little below: the hand-over costs); on a free-threaded build
run with ``PYTHON_GIL=0`` it approaches the number of threads, cores allowing.

Run it on one binary with the GIL switched, so that nothing else differs::

    PY=~/.cache/mlpar/cpython-3.13t/venv/bin/python
    PYTHON_GIL=0 $PY experiments/freethreaded/gil_speedup.py
    PYTHON_GIL=1 $PY experiments/freethreaded/gil_speedup.py

Each setting is timed ``--repeats`` times, interleaved, and the medians are
compared, so a burst of load from elsewhere hits both settings alike. On a
machine busy with other work the wall-clock speedup is noisy; the threaded
run's CPU time over its wall time (``parallelism``: how many threads ran
Python at once, on average) is the steadier sign: ~1 with the GIL, up to
``--threads`` without it.
"""

import argparse
import json
import statistics
import sys
import sysconfig
import threading
import time


def count_primes(limit):
    """Count primes below ``limit`` by trial division: pure bytecode, no C calls to speak of."""
    count = 0
    for n in range(2, limit):
        d = 2
        while d * d <= n:
            if n % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def run_serial(n_tasks, limit):
    """Run the tasks one after another; return the wall time in seconds."""
    t0 = time.perf_counter()
    for _ in range(n_tasks):
        count_primes(limit)
    return time.perf_counter() - t0, None


def run_threads(n_tasks, limit):
    """Run one task on each of ``n_tasks`` threads, started together.

    Returns the wall time and the process CPU time (all threads) in seconds.
    """
    start = threading.Barrier(n_tasks + 1)

    def work():
        start.wait()
        count_primes(limit)

    threads = [threading.Thread(target=work) for _ in range(n_tasks)]
    for thread in threads:
        thread.start()
    t0, c0 = time.perf_counter(), time.process_time()
    start.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    """Measure and print the speedup; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads (and serial tasks)")
    parser.add_argument(
        "--limit", type=int, default=60_000, help="primes below this per task (60000: ~0.1-0.3 s)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    count_primes(args.limit // 10)  # warm up: first-call costs out of the timings
    serial, threaded, parallelism = [], [], []
    for _ in range(args.repeats):
        serial.append(run_serial(args.threads, args.limit)[0])
        wall, cpu = run_threads(args.threads, args.limit)
        threaded.append(wall)
        parallelism.append(cpu / wall)
    record = {
        "python": sys.version.split()[0],
        "free_threaded_build": sysconfig.get_config_var("Py_GIL_DISABLED") == 1,
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "threads": args.threads,
        "limit": args.limit,
        "serial_s": statistics.median(serial),
        "threads_s": statistics.median(threaded),
        "parallelism": statistics.median(parallelism),
    }
    record["speedup"] = record["serial_s"] / record["threads_s"]
    if args.json:
        print(json.dumps(record))
    else:
        build = "free-threaded" if record["free_threaded_build"] else "default"
        gil = "enabled" if record["gil_enabled"] else "disabled"
        print(
            f"Python {record['python']} ({build} build, GIL {gil}): "
            f"{args.threads} tasks serial {record['serial_s']:.3f} s, "
            f"on {args.threads} threads {record['threads_s']:.3f} s, "
            f"speedup {record['speedup']:.2f}x, parallelism {record['parallelism']:.2f} "
            f"(medians of {args.repeats})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
