"""One trial: build data and an MLP from a params dict, train, score, measure.

``train_mlp`` is the ready trial function for :func:`mlpar.sweep`::

    from mlpar import sweep, train_mlp
    result = sweep(train_mlp, {"lr": [1e-3, 3e-3], "hidden": [[64], [256]]},
                   backend="processes", n_jobs=2)

Parameters missing from ``params`` take the defaults of the config schema
(``mlpar.config``), so a trial of a YAML sweep and a trial of a Python sweep
with the same values are the same trial.
"""

from __future__ import annotations

import time
from .context import trial_deadline
from .config import resolve_trial_params
from .data import DATASETS, load_dataset, make_splits
from .nn import MLPClassifier, MLPRegressor

__all__ = ["train_mlp", "MLPTrial", "build_estimator"]

# The split is the same for every trial of every sweep: trials compare on equal
# data, and ``seed`` drives only what should vary between repeats (weight init,
# minibatch order).
SPLIT_SEED = 0


def build_estimator(settings, *, random_state, max_time=None, instrument=False):
    """The mlpar estimator a trial trains, from resolved :class:`TrialSettings`."""
    m, t = settings.model, settings.train
    common = dict(
        hidden_layer_sizes=tuple(m.hidden), activation=m.activation, alpha=m.alpha,
        dtype=m.dtype, solver=t.optimizer, learning_rate_init=t.lr, batch_size=t.batch_size,
        max_iter=t.epochs, momentum=t.momentum, nesterovs_momentum=t.nesterov,
        beta_1=t.beta1, beta_2=t.beta2, epsilon=t.epsilon, early_stopping=t.early_stopping,
        n_iter_no_change=t.patience, tol=t.tol, random_state=random_state,
        max_time=max_time, instrument=instrument,
    )
    task = DATASETS[settings.data.dataset][0]
    est = MLPClassifier(**common) if task == "classification" else MLPRegressor(**common)
    # A trial trains for a fixed budget on purpose and reports stop_reason;
    # "max_iter reached" is not worth a ConvergenceWarning per trial.
    est._warn_max_iter = False
    return est


def train_mlp(params, seed, *, instrument=False):
    """Train one MLP and return its metrics.

    Parameters
    ----------
    params : mapping
        Flat trial parameters (``dataset``, ``hidden``, ``lr``, ``batch_size``...;
        see ``mlpar.config.TRIAL_PARAM_NAMES``). Missing ones take the defaults.
    seed : int
        Seeds weight initialization and minibatch shuffles.
    instrument : bool, default=False
        Record time inside the numeric kernels (``fit_stats_``) in the metrics.

    Returns
    -------
    dict
        ``val_score`` and ``test_score`` (accuracy, or R^2 for regression),
        ``loss`` (last training loss), ``best_loss``, ``epochs``, ``stop_reason``,
        ``diverged``, ``n_params``, ``data_time``, ``fit_time``, ``score_time``,
        ``samples_per_s``, and the kernel timings when ``instrument`` is true.

    Raises
    ------
    ValueError, TypeError
        For an unknown parameter or a bad value (the message names it).
    """
    t0 = time.perf_counter()
    settings = resolve_trial_params(params)
    d = settings.data
    dataset = load_dataset(
        d.dataset, n_samples=d.n_samples, n_features=d.n_features, n_classes=d.n_classes,
        noise=d.noise, random_state=SPLIT_SEED,
    )
    splits = make_splits(dataset, val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                         random_state=SPLIT_SEED, dtype=settings.model.dtype)
    t1 = time.perf_counter()

    deadline = trial_deadline()
    # Cooperative timeout: the estimator checks its clock between minibatches.
    max_time = None if deadline is None else max(0.0, deadline - time.monotonic())
    est = build_estimator(settings, random_state=int(seed), max_time=max_time,
                          instrument=instrument)
    est.fit(splits.X_train, splits.y_train)
    t2 = time.perf_counter()

    diverged = est.stop_reason_ == "diverged"
    if diverged:
        val_score = test_score = float("nan")
    else:
        val_score = float(est.score(splits.X_val, splits.y_val))
        test_score = float(est.score(splits.X_test, splits.y_test))
    t3 = time.perf_counter()

    n_params = int(sum(w.size for w in est.coefs_) + sum(b.size for b in est.intercepts_))
    metrics = {
        "val_score": val_score,
        "test_score": test_score,
        "loss": float(est.loss_curve_[-1]) if est.loss_curve_ else float("nan"),
        "best_loss": float(est.best_loss_) if est.best_loss_ is not None else float("nan"),
        "epochs": int(est.n_iter_),
        "stop_reason": est.stop_reason_,
        "diverged": diverged,
        "n_params": n_params,
        "data_time": t1 - t0,
        "fit_time": t2 - t1,
        "score_time": t3 - t2,
        "samples_per_s": est.n_iter_ * splits.X_train.shape[0] / max(t2 - t1, 1e-12),
    }
    if instrument and est.fit_stats_:
        metrics.update({f"stats_{k}": v for k, v in est.fit_stats_.items()})
    return metrics


class MLPTrial:
    """A picklable trial function with fixed base parameters.

    ``MLPTrial(base)(params, seed)`` trains with ``{**base, **params}``: the
    fixed settings of a YAML experiment plus the swept ones. Trial keys (and so
    seeds) depend only on the swept ``params``.
    """

    def __init__(self, base=None, *, instrument=False):
        self.base = dict(base or {})
        self.instrument = instrument

    @property
    def sweep_identity(self):
        """A digest of the fixed parameters: resume refuses a journal made with others."""
        import hashlib

        from .space import canonical_json

        return hashlib.sha1(canonical_json(self.base).encode()).hexdigest()[:12]

    def __call__(self, params, seed):
        return train_mlp({**self.base, **params}, seed, instrument=self.instrument)

    def __repr__(self):
        return f"MLPTrial({self.base!r})"
