"""Lesson 3: a race condition on shared training state, and the lock that fixes it."""

import statistics
import sys
import threading
import time
from contextlib import nullcontext

import numpy as np

from ._common import LessonResult, gil_enabled, time_interleaved, timing_row

TITLE = "A race condition on shared training state, and its fix"
CLAIM = (
    "Shared state updated read-modify-write from several threads loses updates "
    "(a race condition); a lock fixes it."
)

# Updates per thread with 2 threads. Even "quick" is sized so that each run lasts ~0.1 s: on an
# oversubscribed machine the OS may run one thread alone for several ms, and a
# run shorter than that can finish before the threads ever interleave. At these
# sizes, runs on 2 cores with 4 CPU hogs beside them lost hundreds of updates.
SIZES = {
    "quick": {"tally_trials": 500, "hogwild_steps": 150, "counter_increments": 20_000},
    "normal": {"tally_trials": 2000, "hogwild_steps": 600, "counter_increments": 200_000},
}
BATCH_SIZE = 32
LEARNING_RATE = 0.5
N_PREDICTIONS = 16  # distinct prediction vectors the trials cycle through


def _log_write_seconds():
    """How long the stand-in for a log write between read and write sleeps.

    With the GIL, ``sleep(0)`` is enough: it releases the GIL and the other
    thread runs inside the read-modify-write. Without the GIL (free-threaded
    CPython, ``PYTHON_GIL=0``) threads run truly in parallel and ``sleep(0)``
    returns at once, so the windows of two threads rarely overlap; a realistic
    50 µs write makes them overlap reliably.
    """
    return 0.0 if gil_enabled() else 50e-6


def _run_threads(n_threads, target):
    """Run ``target(thread_index, barrier)`` on ``n_threads`` threads, join, re-raise errors."""
    # The barrier releases all threads together, so the first thread does not
    # finish before the last one has started. Its timeout turns a thread that
    # died before reaching it into an error in the others instead of a hang.
    barrier = threading.Barrier(n_threads, timeout=60.0)
    errors = []

    def guarded(index):
        try:
            target(index, barrier)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        # The first error is the cause; the others are BrokenBarrierError from abort().
        raise errors[0]


def make_predictions(*, random_state):
    """Validation labels of ``digits`` and predictions of varying accuracy to score."""
    from sklearn.datasets import load_digits

    y_val = load_digits().target
    rng = np.random.default_rng(random_state)
    predictions = []
    for error_rate in np.linspace(0.05, 0.5, N_PREDICTIONS):
        wrong = rng.random(len(y_val)) < error_rate
        predictions.append(np.where(wrong, (y_val + 1) % 10, y_val))
    return y_val, predictions


def tally_race(n_threads, n_trials, *, lock, y_val, predictions):
    """Concurrent trials record themselves in a shared tally, with or without a lock.

    Each record is read-modify-write: read the trial count and the best score,
    score the trial, log it, write count + 1 (and the new best).

    Returns
    -------
    dict
        ``expected`` and ``observed`` trial counts, ``best`` recorded and
        ``true_best`` (the best score any trial had).
    """
    tally = {"trials": 0, "best": -1.0}
    guard = threading.Lock() if lock else nullcontext()
    log_write_s = _log_write_seconds()

    def trial_thread(index, barrier):
        barrier.wait()
        for i in range(n_trials):
            prediction = predictions[(index * n_trials + i) % len(predictions)]
            with guard:
                count, best = tally["trials"], tally["best"]
                # Scoring on 1797 labels: NumPy may release the GIL for loops
                # this long, but not reliably on every call.
                score = float(np.mean(prediction == y_val))
                # Stands for logging the trial (a write to a file or a stream).
                # Any blocking call releases the GIL, and sleep(0) always
                # does: another thread runs inside this read-modify-write.
                time.sleep(log_write_s)
                tally["trials"] = count + 1
                if score > best:
                    tally["best"] = score

    _run_threads(n_threads, trial_thread)
    used = {k % len(predictions) for k in range(n_threads * n_trials)}
    true_best = max(float(np.mean(predictions[k] == y_val)) for k in used)
    return {
        "expected": n_threads * n_trials,
        "observed": tally["trials"],
        "best": tally["best"],
        "true_best": true_best,
    }


def make_hogwild_data(n_threads, n_steps, *, random_state):
    """Inputs (with a bias column), one-hot labels and each thread's minibatch indices."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.hstack([digits.data / 16.0, np.ones((len(digits.data), 1))])
    Y = np.eye(10)[digits.target]
    batches = [
        np.random.default_rng(child).integers(0, len(X), size=(n_steps, BATCH_SIZE))
        for child in np.random.SeedSequence(random_state).spawn(n_threads)
    ]
    return X, Y, batches


def softmax_gradient(W, X, Y):
    """Gradient of the mean softmax cross-entropy of ``X @ W`` against one-hot ``Y``."""
    z = np.dot(X, W)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return np.dot(X.T, p - Y) / len(X)


def softmax_loss(W, X, Y):
    """Mean softmax cross-entropy of ``X @ W`` against one-hot ``Y``."""
    z = np.dot(X, W)
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - (z * Y).sum(axis=1)))


def hogwild_race(n_threads, *, lock, X, Y, batches, serial=False):
    """Hogwild-style SGD of a softmax regression: threads share one weight matrix.

    Each step reads the shared weights, computes a minibatch gradient and writes
    back ``W_read - learning_rate * gradient``: an update made by another thread
    in between is overwritten. The weights and an update counter are stored as
    one tuple and replaced by one assignment, so the final counter is exactly
    the number of updates the final weights contain.

    Parameters
    ----------
    serial : bool, default=False
        Run every thread's minibatches one after the other on the calling thread.

    Returns
    -------
    dict
        ``expected`` and ``observed`` update counts and ``final_loss`` on the
        whole dataset.
    """
    log_write_s = _log_write_seconds()
    shared = {"state": (np.zeros((X.shape[1], Y.shape[1])), 0)}
    guard = threading.Lock() if lock else nullcontext()

    def sgd(index, barrier):
        if barrier is not None:
            barrier.wait()
        for rows in batches[index]:
            Xb, Yb = X[rows], Y[rows]
            with guard:
                W, version = shared["state"]
                gradient = softmax_gradient(W, Xb, Yb)
                # Stands for the rest of a real step (a bigger model's gradient,
                # fetching the next batch): long enough that another thread
                # runs before the write, which this tiny model's step is not.
                time.sleep(log_write_s)
                shared["state"] = (W - LEARNING_RATE * gradient, version + 1)

    if serial:
        for index in range(len(batches)):
            sgd(index, None)
    else:
        _run_threads(n_threads, sgd)
    W, version = shared["state"]
    return {
        "expected": sum(len(b) for b in batches),
        "observed": version,
        "final_loss": softmax_loss(W, X, Y),
    }


def counter_race(n_threads, n_increments):
    """The textbook race: a bare ``counter += 1`` from several threads, no lock.

    Returns
    -------
    dict
        ``expected`` and ``observed`` counts.
    """
    tally = {"count": 0}

    def count(index, barrier):
        barrier.wait()
        for _ in range(n_increments):
            tally["count"] += 1

    _run_threads(n_threads, count)
    return {"expected": n_threads * n_increments, "observed": tally["count"]}


def run(*, n_jobs, repeats, size, random_state, progress=None):
    """Run lesson 3: the tally, Hogwild and bare-counter races, without and with a lock.

    Returns
    -------
    LessonResult
    """
    sizes = SIZES[size]
    # Past 2 threads, each thread does proportionally less (down to a quarter),
    # so the run time stays bounded on many cores; more threads collide more.
    n_trials, n_steps = (
        max(n // 4, 2 * n // n_jobs) for n in (sizes["tally_trials"], sizes["hogwild_steps"])
    )
    y_val, predictions = make_predictions(random_state=random_state)
    X, Y, batches = make_hogwild_data(n_jobs, n_steps, random_state=random_state)

    def tally(n_threads, lock):
        return lambda: tally_race(
            n_threads, n_trials, lock=lock, y_val=y_val, predictions=predictions
        )

    def hogwild(lock, serial=False):
        return lambda: hogwild_race(n_jobs, lock=lock, X=X, Y=Y, batches=batches, serial=serial)

    settings = [
        # One thread doing all the trials: the count every variant should reach.
        (
            "tally: serial",
            lambda: tally_race(
                1, n_jobs * n_trials, lock=False, y_val=y_val, predictions=predictions
            ),
        ),
        (f"tally: {n_jobs} threads, no lock", tally(n_jobs, False)),
        (f"tally: {n_jobs} threads + lock", tally(n_jobs, True)),
        ("hogwild: serial", hogwild(False, serial=True)),
        (f"hogwild: {n_jobs} threads, no lock", hogwild(False)),
        (f"hogwild: {n_jobs} threads + lock", hogwild(True)),
        (
            f"bare counter += 1: {n_jobs} threads, no lock",
            lambda: counter_race(n_jobs, sizes["counter_increments"]),
        ),
    ]
    timings = time_interleaved(settings, repeats=repeats, warmup=False, progress=progress)
    rows = []
    for label, _ in settings:
        m = timings[label]
        lost = [out["expected"] - out["observed"] for out in m.outputs]
        row = timing_row(
            label,
            1 if "serial" in label else n_jobs,
            m,
            expected=m.outputs[0]["expected"],
            observed=statistics.median(out["observed"] for out in m.outputs),
            lost=statistics.median(lost),
            lost_min=min(lost),
            lost_max=max(lost),
            lost_per_repeat=lost,
        )
        row["speedup"] = None
        if "final_loss" in m.outputs[0]:
            row["final_loss"] = statistics.median(out["final_loss"] for out in m.outputs)
        if "true_best" in m.outputs[0]:
            row["best_correct"] = all(out["best"] == out["true_best"] for out in m.outputs)
        rows.append(row)
    tally_lost, hog_lost = rows[1], rows[4]
    locked_lost = max(rows[2]["lost_max"], rows[5]["lost_max"])
    headline = (
        f"no lock: {tally_lost['lost'] / tally_lost['expected']:.0%} of tally updates and "
        f"{hog_lost['lost'] / hog_lost['expected']:.0%} of Hogwild updates lost (median of "
        f"{repeats}); with a lock: {locked_lost} lost"
    )
    return LessonResult(
        name="race",
        title=TITLE,
        claim=CLAIM,
        setup=(
            f"(a) Tally: {n_jobs} threads each record {n_trials} trials in a shared dict "
            "(read count and best score; score the trial with NumPy on 1797 labels; log it, "
            "time.sleep(0); write count + 1 and the best). (b) Hogwild SGD: a softmax "
            f"regression on digits, {n_jobs} threads x {n_steps} minibatches of {BATCH_SIZE}; "
            "each step reads the shared weights, computes the gradient (np.dot), "
            "time.sleep(0), writes back W_read - lr * g. (c) A bare counter += 1, "
            f"{sizes['counter_increments']} per thread. Each without and with a "
            f"threading.Lock around the read-modify-write; {repeats} repeats, lost = "
            "expected - kept."
        ),
        columns=(
            "setting",
            "workers",
            "expected",
            "observed",
            "lost",
            "lost_range",
            "median_s",
            "final_loss",
        ),
        rows=rows,
        headline=headline,
        explanation=_explain(rows, n_jobs=n_jobs),
        environment={},
        options={},
    )


def _explain(rows, *, n_jobs):
    tally, tally_locked, hog_serial, hog, hog_locked, counter = (
        rows[i] for i in (1, 2, 3, 4, 5, 6)
    )
    interval_ms = sys.getswitchinterval() * 1e3
    text = (
        f"Without a lock, {n_jobs} threads lost {tally['lost']:.0f} of {tally['expected']} tally "
        f"updates and {hog['lost']:.0f} of {hog['expected']} Hogwild updates (median; range "
        f"{tally['lost_min']}-{tally['lost_max']} and {hog['lost_min']}-{hog['lost_max']}); "
        f"with a lock, {tally_locked['lost_max']} and {hog_locked['lost_max']} in every repeat. "
        "Between its read and its write each update calls something that releases the GIL "
        "(a log write, stood for by time.sleep(0); NumPy work), so another thread runs "
        "inside the read-modify-write, reads the same old value, and one of the two writes "
        "overwrites the other. The lock makes the read-modify-write one indivisible step, "
        f"at a cost in time (see the median column). The bare counter += 1 lost "
        f"{counter['lost']:.0f} of {counter['expected']}: "
    )
    if gil_enabled():
        text += (
            "on CPython 3.10+ with the GIL the interpreter switches threads only at "
            "eval-breaker checks (backward jumps and calls, when another thread has waited "
            f"the {interval_ms:g} ms switch interval), not between the load and the store "
            "of x += 1, so the race is there but "
            + ("never fired here. " if counter["lost_max"] == 0 else "rarely fires. ")
            + "Correctness must come from the lock, not from that timing. "
        )
    else:
        text += (
            "with the GIL disabled (free-threaded build) threads really run at the same "
            "time, so even x += 1 can be interrupted between its load and its store. "
        )
    text += (
        "For training: a shared metrics dict or 'best model so far' written by concurrent "
        "trials needs a lock (or one thread collecting the results as they complete); "
        f"Hogwild SGD that writes back whole weight vectors throws computed gradients "
        f"away (final loss {hog['final_loss']:.3f} unlocked vs {hog_locked['final_loss']:.3f} "
        f"locked and {hog_serial['final_loss']:.3f} serial, for the same gradient work)."
    )
    return text


def draw(ax, result):
    """The lesson's plot: share of updates lost per setting, median with min-max whiskers."""
    rows = result.rows
    y = list(range(len(rows)))
    share = [100.0 * row["lost"] / row["expected"] for row in rows]
    err = [
        [100.0 * (row["lost"] - row["lost_min"]) / row["expected"] for row in rows],
        [100.0 * (row["lost_max"] - row["lost"]) / row["expected"] for row in rows],
    ]
    colors = [
        "tab:red"
        if "no lock" in row["setting"]
        else "tab:green"
        if "lock" in row["setting"]
        else "tab:gray"
        for row in rows
    ]
    ax.barh(y, share, xerr=err, color=colors, capsize=3)
    for yi, row in zip(y, rows):
        right = 100.0 * row["lost_max"] / row["expected"]
        ax.text(right, yi, f"  {row['lost']:.0f} of {row['expected']}", va="center", fontsize=8)
    ax.set_yticks(y, [row["setting"] for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(
        f"% of updates lost, median of {len(rows[0]['times_s'])} repeats (whiskers: min-max)"
    )
    ax.set_title("Lesson 3: lost updates without a lock, none with one", fontsize=10)
