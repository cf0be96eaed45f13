"""What stacking gains: the model of a stacked step, and its short measurement.

A stack of ``k`` compatible trials (``sweep(stack=)``) trains them as one
batched computation; ``advise`` and ``compare`` predict its gain from the
calibrated step and a short stacked run (see :mod:`mlpar.nn._stacked`).
"""

from __future__ import annotations

__all__ = ["stacked_speedup", "stacked_calibration", "measure_stack_gain"]


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


def measure_stack_gain(params, k, *, seed=0, epochs=5, rounds=3):
    """Measured serial speedup of ``k`` trials like ``params`` trained as one stack.

    Seeds ``seed`` .. ``seed + k - 1``, ``epochs`` epochs (at most the
    trial's: enough that a stack's set-up, such as its kernel choice, does
    not dominate), 1 BLAS thread, the median of ``rounds`` interleaved
    timings (a single one, on 4 width-8 models, read 1.37x and 2.15x in two
    runs where the full sweeps measured 2.13x and 1.65x); 1.0 when the
    trial cannot stack.
    """
    from threadpoolctl import threadpool_limits

    from ..trial import stack_gain, stack_key

    if k < 2 or stack_key(params) is None:
        return 1.0
    p = {**params, "epochs": min(epochs, params.get("epochs", epochs))}
    with threadpool_limits(1):
        return stack_gain([(p, seed + i) for i in range(k)], rounds=rounds)
