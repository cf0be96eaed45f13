"""sweep(): run a function over a search space on a named backend.

The sweep derives every trial's seed, applies one thread budget
(``n_jobs x blas_threads`` cores), streams each finished trial into the
journal, retries and isolates failures, and returns a :class:`SweepResult`.
What runs is decided by a source (:mod:`mlpar.search`): every trial of a grid
or random space here.
"""

# The results, search and space modules (and NumPy with them) are imported
# on the first call, not here: ``import mlpar`` binds this function, and
# ``mlpar run`` starts its fork server before NumPy has loaded in this
# process, so the server's imports overlap the rest of the run's.
__all__ = ["sweep"]  # and SweepResult, by the __getattr__ below


def __getattr__(name):
    if name == "SweepResult":
        from .results import SweepResult

        return SweepResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sweep(
    fn,
    space,
    *,
    backend="serial",
    n_jobs=None,
    blas_threads=None,
    n_iter=None,
    seeds=1,
    random_state=0,
    timeout=None,
    retries=0,
    error_score=float("nan"),
    journal=None,
    resume=False,
    progress=None,
    address=None,
    stack=None,
    sampler=None,
    halving=None,
):
    """Run ``fn`` on every trial of a search space, in parallel, and collect the results.

    Every trial is a configuration from ``space`` and a seed: the sweep calls
    ``fn(params, seed)``, which returns a dict of metrics. A trial that
    raises, returns NaN or infinite metrics, runs past its timeout or kills
    its worker becomes a row with that status; the sweep goes on.

    Parameters
    ----------
    fn : callable
        ``fn(params, seed) -> dict`` of JSON-compatible metrics (numbers,
        strings, lists). For ``processes`` and ``dask`` it is sent to worker
        processes with cloudpickle: it may be a lambda, but must not capture
        locks, open files or connections (checked before anything runs).
        Return ``{"diverged": True, ...}`` to report a diverged run. If fn has
        a ``prepare`` attribute, ``fn.prepare(list_of_params)`` is called once
        in this process before the first trial (``train_mlp`` builds its data
        cache there, so that workers only memory-map it).
    space : dict or list of dict
        Parameter names mapped to lists of candidates (a grid) or
        ``scipy.stats`` distributions (random search, needs ``n_iter``); see
        :func:`mlpar.space.expand_space`.
    backend : str, default='serial'
        ``'serial'``, ``'threads'``, ``'processes'``, ``'forked'`` (processes
        started by ``fork()``: no interpreter start-up; POSIX, NumPy-style
        trials), ``'dask'`` or a name registered with
        :func:`mlpar.backends.register_backend`.
    n_jobs : int, default=None
        Trials run at once. None means 1 for ``serial`` and all cores
        otherwise (for Dask on an existing cluster: all its threads); -1 means
        all cores (``joblib.cpu_count()``).
    blas_threads : int, default=None
        BLAS/OpenMP threads per trial, so the sweep uses ``n_jobs x
        blas_threads`` cores. None means ``max(1, cpu_count // n_jobs)``.
        Applied process-wide for ``serial`` and ``threads`` (threadpoolctl's
        OpenBLAS limit is process-wide) and inside every worker otherwise.
        Every row records the thread count its trial actually saw.
    n_iter : int, default=None
        Number of configurations for random search.
    seeds : int, default=1
        Repeats of every configuration, each with its own seed.
    random_state : int, default=0
        Seeds the sampling and every trial's seed. A trial's seed depends only
        on ``random_state`` and its parameters and repeat index, never on the
        backend, ``n_jobs`` or completion order.
    timeout : float, default=None
        Seconds per trial. Trials can read their deadline with
        :func:`mlpar.context.trial_deadline` and stop in time; a trial that
        returns late is marked ``timeout`` (its metrics are kept). On
        ``processes`` and a sweep's own Dask cluster, a trial still running
        at ``timeout`` + grace (0.5 s + 10 %) has its worker killed. Threads
        cannot be killed: on ``threads`` and ``serial`` the sweep waits for
        the trial to return.
    retries : int, default=0
        Extra attempts for trials that end ``failed``, ``timeout`` or
        ``crashed``; the row records ``attempts``.
    error_score : 'raise' or float, default=nan
        Value that summaries give to metrics of trials that did not end
        ``ok``. ``'raise'`` stops the sweep at the first trial that still
        fails after its retries, raising its exception (re-raised as is on
        ``serial`` and ``threads``, as a RuntimeError with the worker's
        traceback otherwise).
    journal : str or path-like, default=None
        JSONL file receiving one line per finished trial, written and flushed
        as each finishes. An existing journal is never overwritten.
    resume : bool, default=False
        Finish the sweep recorded in ``journal``: trials with a row there are
        skipped (whatever their status; every row is final), a torn last line
        is dropped with a warning, and a journal of a different sweep (other
        fn name, space, seeds or random_state) is refused. A missing journal
        starts afresh.
    progress : bool, default=None
        Show a progress bar on stderr; None shows it when stderr is a terminal.
    address : str or distributed.Client, default=None
        Dask only: the scheduler to use. None starts a private
        ``LocalCluster`` on 127.0.0.1 and closes it afterwards.
    stack : int, 'auto' or None, default=None
        Train up to ``stack`` compatible trials as one batched computation
        (one task on any backend), paying Python's per-call overhead once for
        all of them. fn opts in with ``fn.stack_key(params)`` (a hashable key,
        equal for trials that can stack, or None) and
        ``fn.run_stack([(params, seed), ...])`` (one metrics dict per trial);
        ``'auto'`` asks ``fn.auto_stack()`` and runs unstacked without the
        hooks. Rows, seeds, keys, resume and retries are as without stacking
        (each row records ``stack_id`` and ``stack_size``). Timeouts stay per
        trial: a stack of K trials gets K x ``timeout``, the time they would
        have had one after another. A stack that fails as a whole (an
        exception, a crash, a timeout) is re-run one trial at a time, so a bad
        trial costs only itself.

    sampler : optuna sampler, str or dict, default=None
        Ask an Optuna sampler for the trials (see :mod:`mlpar.samplers`).
    halving : dict, default=None
        Successive halving or ASHA over the configurations, with keys
        ``resource`` (default ``'epochs'``), ``min_resource``,
        ``max_resource``, ``factor`` (3), ``metric`` (``'val_score'``),
        ``metric_mode`` (None: ``min`` for losses, ``max`` otherwise) and
        ``mode`` (``'sync'``, or ``'async'`` for ASHA); see
        :func:`mlpar.halving.successive_halving`. Every row carries ``rung``
        and ``resource``, ``best()`` ranks the last rung, and the result's
        ``halving`` attribute is the :class:`~mlpar.halving.HalvingResult`.
        Promoted trials continue from their checkpoint (``epochs`` only), kept
        beside the journal in ``<journal stem>.checkpoints/``.

    Returns
    -------
    result : SweepResult
        One row per trial in the space's order, with ``summary()``,
        ``best()``, ``failures()``, ``to_pandas()`` and ``to_csv()``.

    Raises
    ------
    TypeError
        If fn is not callable or cannot be sent to worker processes.
    ValueError
        For a malformed space or option, an unknown backend, or a journal of
        a different sweep.
    FileExistsError
        If ``journal`` exists and ``resume`` is False.
    ImportError
        If ``backend='dask'`` and dask.distributed is not installed.
    KeyboardInterrupt
        On Ctrl-C, after stopping the workers; finished trials are already in
        the journal, and ``resume=True`` finishes the sweep.

    Notes
    -----
    To share a large array with process or Dask workers without copying it
    per worker, save it once (``np.save``) and open it in ``fn`` with
    ``np.load(path, mmap_mode="r")``, passing the path (for instance with
    ``functools.partial``): the operating system then shares one copy
    between all workers.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpar.sweep import sweep
    >>> def fn(params, seed):
    ...     rng = np.random.default_rng(seed)
    ...     x = rng.normal(size=100)
    ...     return {"score": float(-abs(x.mean() - params["mu"]))}
    >>> result = sweep(fn, {"mu": [0.0, 1.0]}, seeds=2)
    >>> len(result), result.best("score")["params"]
    (4, {'mu': 0.0})
    >>> result.summary()["n_ok"]
    [2, 2]
    """
    from .search import run_source

    options = dict(
        backend=backend,
        n_jobs=n_jobs,
        blas_threads=blas_threads,
        timeout=timeout,
        retries=retries,
        error_score=error_score,
        journal=journal,
        resume=resume,
        progress=progress,
        address=address,
    )
    if halving is not None:
        if sampler is not None:
            raise ValueError("sampler and halving do not combine yet: use one of them")
        from .halving import run_halving  # here: it loads the config schema

        return run_halving(
            fn,
            space,
            halving,
            n_iter=n_iter,
            seeds=seeds,
            random_state=random_state,
            stack=stack,
            **options,
        )
    source = _source(space, n_iter=n_iter, seeds=seeds, random_state=random_state, sampler=sampler)
    if sampler is not None:
        stack = None  # asked one free worker at a time: nothing to stack
    return run_source(
        fn,
        source,
        header={"random_state": int(random_state), "seeds": int(seeds), "n_iter": n_iter},
        stack=stack,
        **options,
    )


def _source(space, *, n_iter, seeds, random_state, sampler=None):
    """The source of a sweep's trials: the expanded grid or random space, or a sampler."""
    from .search import GridSource
    from .space import expand_space

    if sampler is not None:
        from .samplers import SamplerSource

        spec = sampler if isinstance(sampler, dict) else {"sampler": sampler}
        if seeds != 1:
            raise ValueError(
                f"a sampler's search runs each trial once: seeds must be 1, got {seeds}"
            )
        return SamplerSource(
            space,
            spec["sampler"],
            n_trials=n_iter,
            metric=spec.get("metric", "val_score"),
            mode=spec.get("mode", "max"),
            random_state=random_state,
            lists_are_choices=spec.get("lists_are_choices", False),
        )
    return GridSource(expand_space(space, n_iter=n_iter, seeds=seeds, random_state=random_state))
