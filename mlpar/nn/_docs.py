"""Parameter and attribute documentation shared by the two estimators."""

PARAMETERS_DOC = """
    hidden_layer_sizes : array-like of int, default=(100,)
        Units of each hidden layer; ``()`` gives a linear (or logistic) model.

    activation : {"identity", "logistic", "relu", "tanh"}, default="relu"
        Activation of the hidden layers.

    solver : {"adam", "sgd"}, default="adam"
        Optimizer. "sgd" uses a constant learning rate (``learning_rate_init``)
        with optional (Nesterov) momentum.

    alpha : float, default=1e-4
        L2 penalty, ``alpha / 2 * sum(W ** 2) / n_samples_in_batch`` as in scikit-learn.

    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.

    learning_rate_init : float, default=1e-3
        Step size.

    max_iter : int, default=200
        Maximum number of epochs.

    shuffle : bool, default=True
        Shuffle the samples at every epoch.

    random_state : int, numpy.random.Generator or None, default=None
        Seeds weight initialization (Glorot uniform), the validation split and
        the shuffles, through ``numpy.random.default_rng``. None draws fresh
        entropy; a Generator is used (and advanced) as is. The global NumPy
        random state is never used.

    tol : float, default=1e-4
        Improvement below which an epoch counts as "no change".

    verbose : bool, default=False
        Print the loss after each epoch.

    warm_start : bool, default=False
        Continue from the previous fit's weights instead of re-initializing.

    momentum : float, default=0.9
        Momentum of "sgd", in [0, 1].

    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with "sgd".

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (the split
        scikit-learn's ``train_test_split`` makes, by a NumPy port of it, seeded
        from ``random_state``'s generator, stratified for binary targets) and
        stop when its score (accuracy, or
        R^2) has not improved by ``tol`` for more than ``n_iter_no_change``
        epochs; the best weights are kept. Otherwise stop when the training
        loss has not improved by ``tol`` for more than ``n_iter_no_change``
        epochs (scikit-learn's counting).

    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping, in (0, 1).

    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's moment estimates, in [0, 1).

    epsilon : float, default=1e-8
        Adam's numerical-stability term.

    n_iter_no_change : int, default=10
        Epochs without improvement tolerated before stopping.

    dtype : {"float32", "float64"}, default="float32"
        Floating-point type of data, weights, gradients and optimizer state,
        kept end to end (float32 halves memory traffic and doubles BLAS speed).

    max_time : float or None, default=None
        Stop training once this many seconds have passed since ``fit`` (or
        ``partial_fit``) started, checked after every minibatch;
        ``stop_reason_`` is then "max_time". The epoch under way counts as one
        iteration, its loss as the mean over the minibatches it ran.

    instrument : bool, default=False
        Time the numeric kernels of every step and record the totals in
        ``fit_stats_``. The timer calls inflate the totals slightly; their cost
        is recorded (``timer_overhead``, ``wrapper_overhead``) for subtraction.
"""

ATTRIBUTES_DOC = """
    coefs_ : list of ndarray
        Weight matrix of each layer (views into one flat parameter buffer).
    intercepts_ : list of ndarray
        Bias vector of each layer.
    loss_ : float
        Training loss of the last epoch (the mean minibatch loss).
    loss_curve_ : list of float
        Training loss of every epoch, across warm starts and partial_fit calls.
    best_loss_ : float or None
        Lowest training loss; None with early stopping.
    validation_scores_ : list of float or None
        Validation score of every epoch with early stopping, else None.
    best_validation_score_ : float or None
        Best validation score with early stopping, else None.
    n_iter_ : int
        Epochs run by the last fit.
    t_ : int
        Training samples seen, all fits together.
    n_features_in_ : int
        Number of features seen during fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units.
    out_activation_ : str
        Activation of the output layer.
    stop_reason_ : {"max_iter", "converged", "early_stopping", "max_time", "diverged"}
        Why the last fit stopped. "diverged": a minibatch loss became NaN or
        infinite; training stopped at once, without raising. The weights are
        left as they were then (non-finite, so predictions are too), except
        with early stopping, which restores the best ones.
    fit_stats_ : dict or None
        With ``instrument=True``: ``fit_time``, ``train_time``, ``n_steps``,
        ``n_samples_seen``, ``n_epochs``, ``step_time``, ``gemm_time`` and
        ``gemm_calls`` (inside ``np.dot``), ``ufunc_big_time`` and
        ``ufunc_big_calls`` (ufuncs over more than 500 elements, which release
        the GIL too), ``ufunc_small_calls``, ``other_time`` (the rest of the
        steps: small ufuncs and Python overhead; ``gemm_time + ufunc_big_time
        + other_time == step_time``), ``shuffle_time``, ``eval_time``,
        ``timer_overhead`` (one ``perf_counter`` pair), ``wrapper_overhead``
        (per wrapped call), ``batch_size``. All values are numbers; times in
        seconds. None when ``instrument=False``.
"""
