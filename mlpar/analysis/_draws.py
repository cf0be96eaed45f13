"""A sweep's workload: how long each trial trains, and the draws that stand for it.

``advise`` and ``compare`` rank a sweep's trials by their weights x epochs,
estimate each one's serial time from a calibrated trial, and, where the trials
differ in shape, calibrate one draw per equal share of the sweep's time.
"""

from __future__ import annotations

import functools

__all__ = ["workload_weight", "trial_time_estimates", "time_shares", "mix_calibrations"]


def workload_weight(params):
    """Weights x epochs of a trial's MLP: how long it trains, relative to others.

    The input and output widths come from the trial's dataset, so a sweep over
    datasets (or over a generated dataset's ``n_features``) is ranked correctly.
    """
    from ..config import resolve_trial_params

    settings = resolve_trial_params(params)
    d = settings.data
    n_in, n_out = _io_widths(d.dataset, d.n_samples, d.n_features, d.n_classes, d.noise)
    sizes = [n_in, *settings.model.hidden, n_out]
    return sum(a * b for a, b in zip(sizes, sizes[1:])) * settings.train.epochs


@functools.lru_cache(maxsize=32)
def _io_widths(dataset, n_samples, n_features, n_classes, noise):
    """(input features, network outputs) of a trial's dataset."""
    from ..data import load_dataset

    ds = load_dataset(
        dataset, n_samples=n_samples, n_features=n_features, n_classes=n_classes, noise=noise
    )
    classes = ds.n_classes
    # Binary classification trains one logistic output, like scikit-learn's MLP.
    n_out = (1 if classes == 2 else classes) if classes else 1
    return int(ds.X.shape[1]), int(n_out)


def trial_time_estimates(cal, params_list, probe_params):
    """Seconds each trial should take serially, scaled from the calibrated one.

    A trial's training time is taken proportional to its weights x samples
    seen (epochs over the same data); data loading and scoring are added as
    measured. Rough, but it ranks a sweep of mixed sizes correctly.
    """
    ref = workload_weight(probe_params)
    ref_epochs = probe_params.get("epochs", 1)
    epoch = cal["epoch_time"]
    return [
        cal["overhead_time"]
        + epoch
        * p.get("epochs", ref_epochs)
        * (workload_weight(p) / max(1, p.get("epochs", 1)))
        / (ref / max(1, ref_epochs))
        for p in params_list
    ]


def time_shares(trials, base, k):
    """The trials, heaviest first, cut into up to ``k`` groups of about equal weight."""
    weighted = sorted(
        ((workload_weight({**base, **t.params}), t) for t in trials), key=lambda wt: -wt[0]
    )
    total = sum(w for w, _ in weighted) or 1.0
    groups, done = {}, 0.0
    for w, t in weighted:
        groups.setdefault(min(k - 1, int((done + w / 2) / total * k)), []).append((w, t))
        done += w
    return [g for _, g in sorted(groups.items())]


def mix_calibrations(cal, probe, trials, base, *, calibrate_one, draws):
    """Calibrate one draw per share of the sweep's time and mix them into ``cal``.

    The first share's draw is ``probe`` (the heaviest, ``cal``), each other's its
    middle trial unless a draw of the same shape (weights x epochs, batch size)
    stands for it already; each share's time is estimated from its own draw.
    """
    from .gilmodel import mix_draws

    def shape(t):
        p = {**base, **t.params}
        return workload_weight(p), p.get("batch_size")

    chosen = {}  # shape -> [draw trial, its calibration, its trials]
    for i, group in enumerate(time_shares(trials, base, draws)):
        stand = probe if i == 0 else group[len(group) // 2][1]
        entry = chosen.setdefault(shape(stand), [stand, None, []])
        entry[2] += [t for _, t in group]
    if len(chosen) < 2:
        return cal
    mixed = []
    for stand, c, members in chosen.values():
        c = cal if stand is probe else calibrate_one(stand)
        params = [{**base, **t.params} for t in members]
        mixed.append((sum(trial_time_estimates(c, params, {**base, **stand.params})), c))
    return mix_draws(cal, mixed)
