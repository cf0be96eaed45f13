"""What stacking gains: the model of a stacked step, and its short measurement.

A stack of ``k`` compatible trials (``sweep(stack=)``) trains them as one
batched computation; ``advise`` and ``compare`` predict its gain from the
calibrated step and a short stacked run (see :mod:`mlpar.nn._stacked`).
"""

from __future__ import annotations

__all__ = ["stacked_speedup", "stacked_calibration", "measure_stack_gain", "extrapolated_gain"]


def stacked_speedup(cal, k):
    """Predicted serial speedup of training ``k`` alike models as one stack.

    A stacked step pays a step's Python part ``P`` once for all ``k`` models
    and its numeric part ``N`` once per model: ``k (P + N)`` become ``P + k N``,
    a gain of ``k (1 + r) / (r + k)`` with ``r = P / N``. ``r`` comes from the
    stack gain measured at some size (``cal["stack_gain"]``, see
    :func:`measure_stack_gain`) where there is one: a stack's per-model BLAS
    calls and passes cost more than the single step's ``N``. Else from the
    calibrated ``python_time`` and ``numeric_time``.
    """
    if k <= 1:
        return 1.0
    gains = cal.get("stack_gain") or {}
    if gains:
        size = str(k) if str(k) in gains else max(gains, key=int)
        big, g = int(size), gains[size]
        r = big * (g - 1) / max(big - g, 1e-9) if g > 1 else 0.0
    else:
        r = cal["python_time"] / max(cal["numeric_time"], 1e-12)
    return k * (1 + r) / (r + k)


def stacked_calibration(cal, k):
    """``cal`` for one step of a stack of ``k`` models: what threads predictions run on.

    The stacked step (:func:`stacked_speedup`) takes ``k (P + N) / gain``: the
    same Python part ``P`` and as many GIL releases (one call per layer for
    all ``k``), with kernels ``k`` times the work, so its numeric part is what
    is left. The hand-off simulation then runs on the same segment sequence
    with every kernel scaled to it (see
    :func:`~mlpar.analysis._handoff_sim.segments_from_histogram`). Cached
    predictions and a mixed sweep's draws are left out: they are the single step's.
    """
    from .gilmodel import Calibration

    dropped = ("predictions", "predicted_2", "predicted_2_band", "draws")
    out = Calibration({key: v for key, v in cal.items() if key not in dropped})
    if k <= 1:
        return out
    python, numeric = cal["python_time"], cal["numeric_time"]
    step = k * (python + numeric) / stacked_speedup(cal, k)
    out["numeric_time"] = max(step - python, 0.0)
    out["p"] = out["numeric_time"] / step if step > 0 else 0.0
    return out


def measure_stack_gain(params, k, *, seed=0, epochs=(2, 10), rounds=3):
    """Measured serial speedup of ``k`` trials like ``params`` trained as one stack, at their epochs.

    Seeds ``seed`` .. ``seed + k - 1``, 1 BLAS thread. The ``k`` trials are
    timed stacked and one by one at two short epoch counts (``epochs``, at
    most the trial's; medians of ``rounds`` interleaved timings each, see
    :func:`mlpar.trial.stack_seconds`) and the gain is taken where the trial
    runs (:func:`extrapolated_gain`). A short run alone underestimates it:
    each trial's fixed costs (set-up, the stack's kernel choice, the final
    scoring) weigh more there (4 width-8 models: 1.8x at 5 epochs, 2.0x at
    20, 2.3x at 60; the sweep of 130 measured 2.1x). 1.0 when the trial
    cannot stack.
    """
    from threadpoolctl import threadpool_limits

    from ..trial import stack_key, stack_seconds

    if k < 2 or stack_key(params) is None:
        return 1.0
    full = params.get("epochs") or max(epochs)
    short, long = (min(e, full) for e in epochs)

    def batch(e):
        return [({**params, "epochs": e}, seed + i) for i in range(k)]

    with threadpool_limits(1):
        if long <= short:
            one, stacked = stack_seconds(batch(long), rounds=rounds)
            return one / stacked
        points = [(e, *stack_seconds(batch(e), rounds=rounds)) for e in (short, long)]
    return extrapolated_gain(*points, epochs=full, k=k)


def extrapolated_gain(short, long, *, epochs, k):
    """The stack gain at ``epochs`` from two timings ``(epochs, one_by_one_s, stacked_s)``.

    Both ways take ``fixed + per_epoch * epochs`` seconds: two points give
    each line, and the gain is their ratio at ``epochs``. Where noise leaves a
    slope that is not positive, the longer timing's ratio; the result stays
    between the two measured ratios' lower one and ``k``.
    """
    (e1, u1, s1), (e2, u2, s2) = short, long
    measured = (u1 / s1, u2 / s2)
    bu, bs = (u2 - u1) / (e2 - e1), (s2 - s1) / (e2 - e1)
    if bu <= 0 or bs <= 0:
        return measured[1]
    au, as_ = max(u1 - bu * e1, 0.0), max(s1 - bs * e1, 0.0)
    gain = (au + bu * epochs) / (as_ + bs * epochs)
    return min(max(gain, min(measured)), float(k))
