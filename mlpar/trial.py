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

from .config import TRIAL_CHECKS, resolve_trial_params
from .context import checkpoint_path, previous_checkpoint_path, trial_deadline
from .data import DATASETS, load_splits, prepare_splits
from .nn import fit_mlp
from .nn._checkpoint import load_checkpoint, save_checkpoint

#: Trial parameters whose values are numbers (``epochs``, ``n_samples``, ``lr``...).
NUMERIC_PARAMS = frozenset(n for n, check in TRIAL_CHECKS.items() if check.numeric is not None)

__all__ = ["train_mlp", "MLPTrial", "build_estimator", "prepare_data"]

# The split is the same for every trial of every sweep: trials compare on equal
# data, and ``seed`` drives only what should vary between repeats (weight init,
# minibatch order).
SPLIT_SEED = 0


def _model_options(settings):
    """The engine's options for a trial: the same for fit_mlp and the estimators."""
    m, t = settings.model, settings.train
    return dict(
        hidden_layer_sizes=tuple(m.hidden),
        activation=m.activation,
        alpha=m.alpha,
        dtype=m.dtype,
        solver=t.optimizer,
        learning_rate_init=t.lr,
        batch_size=t.batch_size,
        max_iter=t.epochs,
        momentum=t.momentum,
        nesterovs_momentum=t.nesterov,
        beta_1=t.beta1,
        beta_2=t.beta2,
        epsilon=t.epsilon,
        early_stopping=t.early_stopping,
        n_iter_no_change=t.patience,
        tol=t.tol,
    )


def _split_options(settings):
    d = settings.data
    return dict(
        n_samples=d.n_samples,
        n_features=d.n_features,
        n_classes=d.n_classes,
        noise=d.noise,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        random_state=SPLIT_SEED,
        dtype=settings.model.dtype,
    )


def build_estimator(settings, *, random_state, max_time=None, instrument=False):
    """The scikit-learn estimator equivalent to a trial, from resolved :class:`TrialSettings`.

    Trials themselves train with :func:`mlpar.nn.fit_mlp` (NumPy only); this
    estimator gives the same model, for use in scikit-learn tools.
    """
    from .nn import MLPClassifier, MLPRegressor

    task = DATASETS[settings.data.dataset][0]
    cls = MLPClassifier if task == "classification" else MLPRegressor
    est = cls(
        **_model_options(settings),
        random_state=random_state,
        max_time=max_time,
        instrument=instrument,
    )
    # A trial trains for a fixed budget on purpose and reports stop_reason;
    # "max_iter reached" is not worth a ConvergenceWarning per trial.
    est._warn_max_iter = False
    return est


def prepare_data(params_list):
    """Build the prepared-data cache for every dataset these trials use, once.

    Called by :func:`mlpar.sweep` in its own process before any trial runs
    (``train_mlp.prepare``), so that workers only memory-map ready files and
    never import scikit-learn. Parameters that do not resolve are skipped:
    that trial reports its own error as a row.
    """
    specs = {}
    for params in params_list:
        try:
            settings = resolve_trial_params(params)
        except (TypeError, ValueError):
            continue  # the trial itself fails with this message, as a row
        options = _split_options(settings)
        specs[(settings.data.dataset, *sorted(options.items()))] = (settings.data.dataset, options)
    for name, options in specs.values():
        try:
            prepare_splits(name, **options)
        except (TypeError, ValueError):
            continue  # e.g. a generator refusing its sizes: reported by the trial


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
    # Memory-mapped from the prepared-data cache (built by the sweep's parent).
    splits = load_splits(settings.data.dataset, **_split_options(settings))
    t1 = time.perf_counter()
    options = _model_options(settings)
    # A promoted halving trial continues from the previous rung's weights.
    init, done = _load_checkpoint(previous_checkpoint_path(), options)
    options["max_iter"] -= done
    model = fit_mlp(
        splits.X_train,
        splits.y_train,
        task=splits.task,
        **options,
        random_state=int(seed),
        max_time=_time_left(),
        instrument=instrument,
        warn_max_iter=False,
        init=init,
    )
    _save_checkpoint(checkpoint_path(), model, done + model.n_iter)
    t2 = time.perf_counter()
    metrics = _metrics(model, splits, data_time=t1 - t0, fit_time=t2 - t1, instrument=instrument)
    if checkpoint_path() is not None:  # a halving rung: what this rung itself trained
        metrics["epochs_trained"] = int(model.n_iter)
    if done:
        metrics.update(epochs=done + model.n_iter, epochs_continued_from=done)
    return metrics


def _load_checkpoint(path, options):
    """``(init, epochs done)`` from a checkpoint, or ``(None, 0)`` to train from scratch.

    A checkpoint of other layer widths or dtype, or of the whole budget
    already, is not continued from: the trial restarts, which is correct.
    """
    ckpt = load_checkpoint(path)
    if ckpt is None:
        return None, 0
    import numpy as np

    widths = [w.shape[1] for w in ckpt.coefs[:-1]]
    if (
        ckpt.epochs >= options["max_iter"]
        or widths != list(options["hidden_layer_sizes"])
        or ckpt.coefs[0].dtype != np.dtype(options["dtype"])
    ):
        return None, 0
    return ckpt.init, ckpt.epochs


def _save_checkpoint(path, model, epochs):
    """Save the weights, optimizer buffers and epochs so far to ``path``, atomically."""
    if path is None or model.stop_reason == "diverged":
        return
    save_checkpoint(path, model, epochs=epochs)


def _time_left():
    """The engine's ``max_time`` from the trial's cooperative deadline (None: no limit)."""
    deadline = trial_deadline()
    # Past the deadline already: the smallest positive budget, so the engine stops
    # after one minibatch and the trial is reported late, with its metrics.
    return None if deadline is None else max(1e-6, deadline - time.monotonic())


def _metrics(model, splits, *, data_time, fit_time, instrument=False):
    """A trial's metrics from its trained model (scored here, on validation and test)."""
    t0 = time.perf_counter()
    diverged = model.stop_reason == "diverged"
    if diverged:
        val_score = test_score = float("nan")
    else:
        val_score = float(model.score(splits.X_val, splits.y_val))
        test_score = float(model.score(splits.X_test, splits.y_test))
    n_params = int(sum(w.size for w in model.coefs) + sum(b.size for b in model.intercepts))
    metrics = {
        "val_score": val_score,
        "test_score": test_score,
        "loss": float(model.loss_curve[-1]) if model.loss_curve else float("nan"),
        "best_loss": float(model.best_loss) if model.best_loss is not None else float("nan"),
        "epochs": int(model.n_iter),
        "stop_reason": model.stop_reason,
        "diverged": diverged,
        "n_params": n_params,
        "data_time": data_time,
        "fit_time": fit_time,
        "score_time": time.perf_counter() - t0,
        "samples_per_s": model.n_iter * splits.X_train.shape[0] / max(fit_time, 1e-12),
    }
    if instrument and model.fit_stats:
        metrics.update({f"stats_{k}": v for k, v in model.fit_stats.items()})
    return metrics


def stack_key(params):
    """What trials must share to train in one stack; None if this one cannot stack.

    The data (dataset and split), the architecture, dtype, optimizer kind,
    batch size and epochs. Seeds, learning rates, L2 and optimizer constants
    may differ. Early stopping does not stack: each model would hold out its
    own validation split.
    """
    try:
        settings = resolve_trial_params(params)
    except (TypeError, ValueError):
        return None  # the trial reports its own error, alone
    m, t = settings.model, settings.train
    if t.early_stopping:
        return None
    return (
        settings.data.dataset,
        tuple(sorted(_split_options(settings).items())),
        tuple(m.hidden),
        m.activation,
        m.dtype,
        t.optimizer,
        t.batch_size,
        t.epochs,
    )


def run_stack(batch, *, kernel="auto"):
    """Train the trials of one stack together; their metrics, in order.

    Each trial's metrics equal ``train_mlp(params, seed)``'s (same initial
    weights, minibatches and arithmetic, see :mod:`mlpar.nn._stacked`), but
    for the times: ``fit_time`` and ``data_time`` are each trial's share of
    the stack's.
    """
    from .nn import StackMember, fit_mlp_stack  # here: one-model workers never load it

    t0 = time.perf_counter()
    settings = [resolve_trial_params(params) for params, _ in batch]
    first = settings[0]
    splits = load_splits(first.data.dataset, **_split_options(first))
    t1 = time.perf_counter()
    members = [
        StackMember(
            random_state=int(seed),
            learning_rate_init=s.train.lr,
            alpha=s.model.alpha,
            momentum=s.train.momentum,
            nesterovs_momentum=s.train.nesterov,
            beta_1=s.train.beta1,
            beta_2=s.train.beta2,
            epsilon=s.train.epsilon,
            tol=s.train.tol,
            n_iter_no_change=s.train.patience,
        )
        for s, (_, seed) in zip(settings, batch)
    ]
    options = _model_options(first)
    for name in (
        "alpha",
        "learning_rate_init",
        "momentum",
        "nesterovs_momentum",
        "beta_1",
        "beta_2",
        "epsilon",
        "early_stopping",
        "tol",
        "n_iter_no_change",
    ):
        options.pop(name)
    models = fit_mlp_stack(
        splits.X_train,
        splits.y_train,
        members,
        task=splits.task,
        max_time=_time_left(),
        kernel=kernel,
        **options,
    )
    t2 = time.perf_counter()
    k = len(batch)
    return [
        _metrics(model, splits, data_time=(t1 - t0) / k, fit_time=(t2 - t1) / k) for model in models
    ]


def auto_stack(params_list, *, max_stack=16, probe_epochs=2, margin=1.03):
    """Stack sizes that pay, by measurement: ``{stack_key: size}`` (1: do not stack).

    For each group of compatible trials, trains ``min(len(group), max_stack)``
    of them for ``probe_epochs`` epochs stacked and one after another, and
    stacks the group only if stacking measured at least ``margin`` times
    faster: ``stack='auto'`` never picks a stack that measured slower.
    """
    groups = {}
    for params in params_list:
        key = stack_key(params)
        if key is not None:
            groups.setdefault(key, []).append(params)
    sizes = {}
    for key, group in groups.items():
        k = min(len(group), max_stack)
        if k < 2:
            sizes[key] = 1
            continue
        probe = [({**p, "epochs": probe_epochs}, i) for i, p in enumerate(group[:k])]
        sizes[key] = k if stack_gain(probe) >= margin else 1
    return sizes


def stack_seconds(batch, *, rounds=1):
    """``(one after another, stacked)``: the seconds of ``batch``'s trials trained both ways.

    ``batch`` is a list of ``(params, seed)`` of one stack key; a warm-up
    stack of two runs first (caches, kernel choice, page faults). With
    ``rounds`` > 1 both are timed that many times, in alternating order, and
    each is the median: a short timing on a busy machine can be off by half.
    """
    run_stack(batch[:2])
    seconds = {True: [], False: []}
    for r in range(rounds):
        for stacked in (True, False) if r % 2 == 0 else (False, True):
            t0 = time.perf_counter()
            if stacked:
                run_stack(batch)
            else:
                for params, seed in batch:
                    train_mlp(params, seed)
            seconds[stacked].append(time.perf_counter() - t0)
    one, stacked = (sorted(seconds[k])[len(seconds[k]) // 2] for k in (False, True))
    return one, stacked


def stack_gain(batch, *, rounds=1):
    """Measured: ``batch``'s seconds one after another over its seconds stacked (:func:`stack_seconds`)."""
    one, stacked = stack_seconds(batch, rounds=rounds)
    return one / stacked


# What mlpar.sweep calls in its own process before the first trial, and the
# stacking hooks (see sweep(stack=)).
train_mlp.prepare = prepare_data
train_mlp.stack_key = stack_key
train_mlp.run_stack = run_stack
train_mlp.auto_stack = auto_stack
#: The trial parameters that can be a halving resource (numbers).
train_mlp.numeric_params = NUMERIC_PARAMS


class MLPTrial:
    """A picklable trial function with fixed base parameters.

    ``MLPTrial(base)(params, seed)`` trains with ``{**base, **params}``: the
    fixed settings of a YAML experiment plus the swept ones. Trial keys (and so
    seeds) depend only on the swept ``params``.
    """

    #: The trial parameters that can be a halving resource (numbers).
    numeric_params = NUMERIC_PARAMS

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

    def prepare(self, params_list):
        """Prepare the data of these trials once (see :func:`prepare_data`)."""
        prepare_data([{**self.base, **params} for params in params_list])

    def stack_key(self, params):
        """See :func:`stack_key`."""
        return stack_key({**self.base, **params})

    def run_stack(self, batch):
        """See :func:`run_stack`."""
        return run_stack([({**self.base, **params}, seed) for params, seed in batch])

    def auto_stack(self, params_list):
        """See :func:`auto_stack`; keyed by this trial's own :meth:`stack_key`."""
        return auto_stack([{**self.base, **params} for params in params_list])

    def __repr__(self):
        return f"MLPTrial({self.base!r})"
