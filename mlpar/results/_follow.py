"""Following a sweep's journals as they grow: progress for logs, where no bar can be drawn.

A progress bar needs a terminal; under ``nohup``, CI or a pipe the journal is
the one record of how far a sweep is. :class:`JournalFollower` reads the
journals of a run folder from a thread of its own, a few times a second, and
reports what finished; it never writes, and the sweep never waits for it.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JournalFollower", "Progress", "duration"]


def duration(seconds):
    """Seconds as people read them in a log: ``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return (
        f"{minutes} min {seconds:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


@dataclass(frozen=True)
class Progress:
    """How far the sweeps of a run folder are.

    Attributes
    ----------
    done : int
        Trials with a row in the journals.
    not_ok : int
        Of those, the ones that did not end ``ok``.
    total : int
        Trials the journals' headers announce (a halving run announces what
        it runs when no trial fails), or the rows seen if more.
    new : int
        Rows that arrived since following began (a resumed run has others).
    elapsed : float
        Seconds since following began.
    eta : float or None
        Seconds left at the rate the new rows arrived; None before the first.
    last : dict or None
        The newest row.
    """

    done: int
    not_ok: int
    total: int
    new: int
    elapsed: float
    eta: float | None
    last: dict | None = None

    def line(self):
        """One short line for a log, e.g. ``sweep: 12/40 trials, 41 s elapsed, ETA 1 min 36 s``."""
        if not self.total:  # no journal header yet: the space is being drawn, data prepared
            return f"sweep: preparing, {duration(self.elapsed)} elapsed"
        final = self.done >= self.total
        eta = "" if self.eta is None or final else f", ETA {duration(self.eta)}"
        bad = f", {self.not_ok} not ok" if self.not_ok else ""
        return f"sweep: {self.done}/{self.total} trials{bad}, {duration(self.elapsed)} elapsed{eta}"


class JournalFollower:
    """Follow every ``*.jsonl`` journal under ``folder`` while a sweep appends to it.

    Use as a context manager around the sweep: ``on_progress(progress)`` is
    called from the follower's thread as rows arrive, at most every
    ``min_gap`` seconds, and once more, from the exiting thread, with the
    final count if it was not reported yet.

    Parameters
    ----------
    folder : path
    on_progress : callable
        ``on_progress(Progress)``; it must not raise.
    interval : float, default=0.5
        Seconds between looks at the journals.
    min_gap : float, default=0.0
        Seconds at least between two reports, so that fast trials do not
        flood a log; the last count is always reported.
    """

    def __init__(self, folder, on_progress, *, interval=0.5, min_gap=0.0):
        self.folder = Path(folder)
        self.on_progress = on_progress
        self.interval, self.min_gap = interval, min_gap
        self._reported, self._reported_at = None, -float("inf")
        self._offsets, self._totals = {}, {}
        self._done = self._not_ok = self._initial = 0
        self._last = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._t0 = time.monotonic()
        self._poll()  # rows already there (a resumed run) are not new
        self._initial = self._done
        self._thread = threading.Thread(
            target=self._loop, name="mlpar-journal-follower", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self._poll()
        if self._done != self._reported:
            self._report(self.progress())

    def _report(self, progress):
        self._reported, self._reported_at = progress.done, time.monotonic()
        self.on_progress(progress)

    def progress(self):
        """The :class:`Progress` so far."""
        with self._lock:
            elapsed = time.monotonic() - self._t0
            new = self._done - self._initial
            total = max(sum(self._totals.values()), self._done)
            eta = elapsed / new * (total - self._done) if new else None
            return Progress(self._done, self._not_ok, total, new, elapsed, eta, self._last)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._poll()
            progress = self.progress()
            final = progress.done >= progress.total
            if progress.done != self._reported and (
                final or time.monotonic() - self._reported_at >= self.min_gap
            ):
                self._report(progress)

    def _poll(self):
        """Read what the journals gained."""
        for path in sorted(self.folder.rglob("*.jsonl")):
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            # Only whole lines: the sweep may be half-way through writing the last.
            end = data.rfind(b"\n") + 1
            if not end:
                continue
            self._offsets[path] = self._offsets.get(path, 0) + end
            for line in data[:end].splitlines():
                self._take(path, line)

    def _take(self, path, line):
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        with self._lock:
            if record.get("type") == "header" and isinstance(record.get("n_trials"), int):
                self._totals[path] = record["n_trials"]
            elif record.get("type") == "trial":
                self._done += 1
                self._not_ok += record.get("status") != "ok"
                self._last = record
