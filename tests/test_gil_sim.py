"""The hand-off simulation on synthetic steps whose answer is known in closed form."""

import pytest

from mlpar.analysis._handoff_sim import segments_from_histogram, simulate


def test_one_thread_is_serial():
    r = simulate([(2e-6, 1e-6), (1e-6, 0.0)], 1, wake_s=30e-6, release_cost_s=1e-6)
    assert r["speedup"] == pytest.approx(1.0)


def test_no_releases_gives_threads_nothing():
    r = simulate([(1e-6, 0.0)], 2, wake_s=0.0, jitter=0.0)
    assert r["speedup"] == pytest.approx(1.0, abs=1e-6)


def test_long_kernels_approach_n():
    for n in (2, 4, 8):
        assert simulate([(1e-6, 1e-3)], n, wake_s=20e-6)["speedup"] > 0.99 * n


def test_free_threaded_mode_has_no_gil_term():
    segs = [(5e-6, 1e-6), (1e-6, 0.0)]
    assert simulate(segs, 4, gil=False, release_cost_s=1e-6)["speedup"] == pytest.approx(4.0)
    all_kernel = [(0.0, 1e-5)]
    r = simulate(all_kernel, 2, gil=False, kernel_contention=0.5, jitter=0.0)
    assert r["speedup"] == pytest.approx(2 / 1.5, rel=1e-3)


def test_convoy_a_short_kernel_waits_for_the_other_threads_python():
    # The waiter wakes (1 us) within the 2 us kernel and keeps the GIL for its
    # whole 100 us segment: each thread runs py + k per py + wake of GIL time.
    py, k, wake = 100e-6, 2e-6, 1e-6
    r = simulate([(py, k)], 2, wake_s=wake, jitter=0.0)
    assert r["speedup"] == pytest.approx((py + k) / (py + wake), rel=0.01)


def test_release_cost_with_a_waiter_that_never_wakes():
    py, k, c = 2e-6, 0.5e-6, 1e-6
    r = simulate([(py, k)], 2, wake_s=10.0, switch_s=100.0, release_cost_s=c, jitter=0.0)
    assert r["speedup"] == pytest.approx((py + k) / (py + k + c), rel=0.01)


def test_segments_keep_the_totals():
    segs = segments_from_histogram(40e-6, 9e-6, [20, 5, 2], 27)
    assert len(segs) == 27
    assert sum(p for p, _ in segs) == pytest.approx(40e-6)
    assert sum(k for _, k in segs) == pytest.approx(9e-6)


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="some work"):
        simulate([], 2)
    with pytest.raises(ValueError, match="n_threads"):
        simulate([(1e-6, 0.0)], 0)
