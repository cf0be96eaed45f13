"""The hand-off simulation's mechanics on synthetic steps with closed-form answers.

Every constant here is made up (no probe, no timer): the answers hold on any
machine, at any speed.
"""

import pytest

from mlpar.analysis._handoff_sim import segments_from_histogram, simulate

# A mixed step: short and long kernels, and a stretch of Python without a release.
MIXED = [(10e-6, 3e-6), (20e-6, 0.0), (5e-6, 40e-6)]


def speedup(segments, n, **kw):
    return simulate(segments, n, **kw)["speedup"]


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_one_thread_is_serial(jitter):
    # Nothing to hand over: every cost is paid only with a waiter.
    assert speedup(MIXED, 1, wake_s=30e-6, release_cost_s=1e-6, jitter=jitter) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 4])
def test_no_releases_serialize_on_the_gil(n):
    # All Python: only forced switches move the GIL, so n threads do one's work.
    assert speedup([(50e-6, 0.0)], n, wake_s=0.0, jitter=0.0) == pytest.approx(1.0)
    # A wake-up on each forced switch (every 5 ms) leaves the GIL idle: a bit less.
    s = simulate([(50e-6, 0.0)], n, wake_s=20e-6)
    assert s["forced"] > 0
    assert 1.0 - 2 * 20e-6 / 5e-3 < s["speedup"] < 1.0


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_long_kernels_give_n(n):
    # 1 µs of Python per 1 ms kernel: the GIL is almost never wanted.
    s = speedup([(1e-6, 1e-3)], n, wake_s=20e-6, release_cost_s=1e-6)
    assert s == pytest.approx(n, rel=0.01)


def test_python_bound_two_threads_reach_step_over_python():
    # Kernels shorter than the Python: the GIL is the bottleneck, busy all the
    # time, and two threads reach (P + K) / P.
    assert speedup([(100e-6, 50e-6)], 2, wake_s=0.0, jitter=0.0) == pytest.approx(1.5, rel=0.01)
    # Kernels longer than Python plus a wake-up: perfect alternation, 2x.
    assert speedup([(100e-6, 300e-6)], 2, wake_s=20e-6, jitter=0.0) == pytest.approx(2.0, rel=0.01)


def test_kernels_shorter_than_a_wake_up_form_a_convoy():
    # The releaser retakes the GIL before the signalled thread is awake: no
    # overlap at all, whatever Amdahl's law allows (here 1.05x).
    s = speedup([(10e-6, 0.5e-6)], 2, wake_s=50e-6, jitter=0.0)
    assert 0.95 < s <= 1.0 + 1e-9
    # Each release with a waiter costs c: T / (T + c) of one thread alone.
    s = speedup([(10e-6, 0.5e-6)], 2, wake_s=50e-6, release_cost_s=1e-6, jitter=0.0)
    assert s == pytest.approx(10.5 / 11.5, rel=0.01)


@pytest.mark.parametrize("n", [2, 4, 16])
def test_free_threaded_has_no_gil_term(n):
    # No GIL: the wake-up and release costs do not matter, Python runs in parallel.
    for segs in (MIXED, [(1e-4, 0.0)]):
        s = speedup(segs, n, gil=False, wake_s=1e-3, release_cost_s=1e-4)
        assert s == pytest.approx(n)
    # Only the cores and the kernels' contention remain.
    assert speedup(MIXED, 4, gil=False, cores=2) == pytest.approx(2.0)
    got = speedup([(0.0, 1e-4)], n, gil=False, kernel_contention=0.5, jitter=0.0)
    assert got == pytest.approx(n / (1 + 0.5 * (n - 1)))


def test_wake_samples_are_seeded():
    kw = dict(wake_s=[5e-6, 20e-6, 80e-6], release_cost_s=0.5e-6)
    a, b = simulate(MIXED, 2, seed=3, **kw), simulate(MIXED, 2, seed=3, **kw)
    assert a == b
    assert 0.0 < a["speedup"] < 2.0 and a["handoffs"] > 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="some work"):
        simulate([(0.0, 0.0)], 2)
    with pytest.raises(ValueError, match="n_threads"):
        simulate(MIXED, 0)


def test_segments_keep_the_calibrated_totals():
    # 10 releases: 6 under 1 µs (bucket 0) and 4 of 32-64 µs (bucket 6).
    hist = [6, 0, 0, 0, 0, 0, 4]
    segs = segments_from_histogram(200e-6, 100e-6, hist, 10)
    assert len(segs) == 10
    assert sum(p for p, _ in segs) == pytest.approx(200e-6)
    assert sum(k for _, k in segs) == pytest.approx(100e-6)
    kernels = sorted(k for _, k in segs)
    assert kernels[0] == pytest.approx(kernels[5]) and kernels[6] / kernels[0] == pytest.approx(96)
    # Long kernels are spread through the step, not bunched together.
    longs = [i for i, (_, k) in enumerate(segs) if k > kernels[0]]
    assert max(b - a for a, b in zip(longs, longs[1:])) <= 4
    assert segments_from_histogram(5e-6, 0.0, [], 0) == [(5e-6, 0.0)]
    assert segments_from_histogram(5e-6, 2e-6, [], 2) == [(2.5e-6, 1e-6)] * 2
