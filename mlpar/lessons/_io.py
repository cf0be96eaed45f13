"""Lesson 2: IO-bound work speeds up on threads."""

import hashlib
import io
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._common import LessonResult, format_seconds, time_interleaved, timing_row, timing_words
from ._plot import draw_timing_bars

TITLE = "IO-bound work speeds up on threads"
CLAIM = (
    "IO-bound work speeds up on threads, because a thread blocked on IO releases the GIL "
    "and lets the others run."
)

# "normal" latency is that of a nearby object store or network file system;
# "quick" keeps tests short while the latency still dominates the local read.
SIZES = {
    "quick": {"n_shards": 32, "latency_s": 0.002},
    "normal": {"n_shards": 32, "latency_s": 0.020},
}

# Waiting threads need no core, so the thread counts go past the core count.
THREAD_COUNTS = (2, 4, 8, 16)


def write_shards(folder, *, n_shards):
    """Split scikit-learn's ``digits`` into ``n_shards`` pairs of ``.npy`` files.

    Returns
    -------
    shards : list of (Path, Path)
        The inputs file and the labels file of each shard, in order.
    checksum : str
        SHA-256 of the whole dataset, to compare loaded copies against.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data, digits.target
    folder = Path(folder)
    shards = []
    for i, rows in enumerate(np.array_split(np.arange(len(X)), n_shards)):
        x_path, y_path = folder / f"shard-{i:03d}-X.npy", folder / f"shard-{i:03d}-y.npy"
        np.save(x_path, X[rows])
        np.save(y_path, y[rows])
        shards.append((x_path, y_path))
    return shards, checksum(X, y)


def checksum(X, y):
    """SHA-256 over the bytes, dtypes and shapes of inputs and labels."""
    h = hashlib.sha256()
    for a in (X, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fetch_shard(shard, *, latency_s):
    """Fetch one shard: wait ``latency_s`` (simulated), then read and decode both files."""
    # time.sleep stands for network / object-store latency. Like a blocking
    # socket or disk read, it releases the GIL while it waits.
    time.sleep(latency_s)
    arrays = []
    for path in shard:
        with open(path, "rb") as f:
            raw = f.read()
        arrays.append(np.load(io.BytesIO(raw), allow_pickle=False))
    return arrays


def load_dataset(shards, *, latency_s, n_threads=None):
    """Fetch all shards, serially or on ``n_threads`` threads, and concatenate them in order.

    Returns
    -------
    X, y : ndarray
    """

    def fetch(shard):
        return fetch_shard(shard, latency_s=latency_s)

    if n_threads is None:
        parts = [fetch(shard) for shard in shards]
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            # map returns results in submission order, so the dataset is
            # reassembled in shard order whatever order the fetches finish in.
            parts = list(pool.map(fetch, shards))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def run(*, n_jobs, repeats, size, random_state, progress=None):
    """Run lesson 2: fetch the dataset's shards serially and on threads.

    ``random_state`` is unused: the lesson has nothing random.

    Returns
    -------
    LessonResult
    """
    n_shards, latency_s = SIZES[size]["n_shards"], SIZES[size]["latency_s"]
    counts = sorted({k for k in (*THREAD_COUNTS, n_jobs) if k <= n_shards})
    with tempfile.TemporaryDirectory(prefix="mlpar-lesson-io-") as folder:
        shards, source = write_shards(folder, n_shards=n_shards)

        def loader(n_threads, latency):
            def fn():
                return checksum(*load_dataset(shards, latency_s=latency, n_threads=n_threads))

            return fn

        settings = [("serial", loader(None, latency_s))]
        settings += [(f"threads {k}", loader(k, latency_s)) for k in counts]
        settings += [("local reads", loader(None, 0.0))]
        warmup = size == "normal"
        timings = time_interleaved(settings, repeats=repeats, warmup=warmup, progress=progress)

    def identical(label):
        return all(out == source for out in timings[label].outputs)

    serial_row = timing_row(
        "serial", 1, timings["serial"], cores_busy=True, identical=identical("serial")
    )
    serial_row["speedup"] = 1.0
    serial_median = serial_row["median_s"]
    rows = [serial_row]
    for k in counts:
        label = f"threads {k}"
        rows.append(
            timing_row(
                label,
                k,
                timings[label],
                serial_median=serial_median,
                cores_busy=True,
                identical=identical(label),
                # If the waits overlap perfectly and nothing else does, k threads
                # wait ceil(n_shards / k) latencies instead of n_shards.
                latency_bound_speedup=n_shards / math.ceil(n_shards / k),
            )
        )
    rows.append(
        timing_row(
            "serial, no latency (local reads only)",
            1,
            timings["local reads"],
            cores_busy=True,
            identical=identical("local reads"),
        )
    )
    best = max(rows[1:-1], key=lambda row: row["speedup"])
    all_identical = all(row["identical"] for row in rows)
    headline = (
        f"threads {best['workers']}: {best['speedup']:.2f}x serial "
        f"({n_shards} shards, {format_seconds(latency_s)} simulated latency each); "
        f"loaded data {'identical' if all_identical else 'DIFFERENT'} in every mode"
    )
    return LessonResult(
        name="io",
        title=TITLE,
        claim=CLAIM,
        setup=(
            f"Loading a training set stored as {n_shards} shards: scikit-learn's digits "
            f"(1797 x 64) written as {2 * n_shards} .npy files in a temporary folder. Each "
            f"shard fetch waits {format_seconds(latency_s)} (SIMULATED with time.sleep: it "
            "stands for network / object-store latency), then reads both files with "
            "open().read() and decodes them with np.load. Serial fetches one shard after "
            f"the other; threads fetch on a ThreadPoolExecutor ({', '.join(map(str, counts))} "
            "threads: waiting threads need no core, so counts go past the core count). "
            f"{timing_words(repeats, warmup=warmup)} Every loaded copy is checked against the "
            "source by SHA-256."
        ),
        columns=("setting", "workers", "median_s", "spread", "speedup", "cores_busy", "identical"),
        rows=rows,
        headline=headline,
        explanation=_explain(rows, n_shards=n_shards, latency_s=latency_s, source=source),
        environment={},
        options={},
    )


def _explain(rows, *, n_shards, latency_s, source):
    serial, local = rows[0], rows[-1]
    threads = rows[1:-1]
    waiting = n_shards * latency_s
    figures = ", ".join(
        f"{row['workers']} threads {row['speedup']:.1f}x (bound {row['latency_bound_speedup']:.0f}x)"
        for row in threads
    )
    all_identical = all(row["identical"] for row in rows)
    return (
        f"Serially, {format_seconds(serial['median_s'])} per load, of which "
        f"{format_seconds(waiting)} is the simulated waiting ({n_shards} x "
        f"{format_seconds(latency_s)}) and about {format_seconds(local['median_s'])} the "
        "actual reading and decoding (the files sit in the OS page cache). A thread that "
        "waits (sleep, socket, disk) releases the GIL, so the waits overlap: measured "
        f"{figures}, where the bound assumes perfectly overlapped waits and counts "
        f"ceil({n_shards}/threads) waits per thread. The process kept at most "
        f"{max(row['cores_busy'] for row in threads):.2f} cores busy: the speedup comes from "
        "waiting in parallel, not from computing in parallel, which is why it can exceed the "
        f"core count. {_saturation(threads, local)}For training: fetch shards, files or remote batches on "
        "a thread pool (a DataLoader-style prefetcher) even though the model code itself is "
        "GIL-bound. "
        + (
            f"All modes loaded byte-identical data (SHA-256 {source[:12]}...)."
            if all_identical
            else "WARNING: some mode loaded data that differs from the source."
        )
    )


def _saturation(threads, local):
    """A sentence on where more threads stopped helping, if they did."""
    best = max(threads, key=lambda row: row["speedup"])
    if best is threads[-1]:
        return ""
    return (
        f"Beyond {best['workers']} threads it got no faster: once the waits overlap, the "
        f"~{format_seconds(local['median_s'])} of reading and decoding, which mostly holds "
        "the GIL, is what is left. "
    )


def draw(ax, result):
    """The lesson's plot: median load time per setting."""
    draw_timing_bars(ax, result, title="Lesson 2: fetching dataset shards, serial vs threads")
