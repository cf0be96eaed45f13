"""Accuracy and R^2 in NumPy, computed as scikit-learn computes them.

The engine scores early stopping and :class:`FittedMLP` predictions without
scikit-learn. The estimators use the same functions, so their
``validation_scores_`` must be the very floats scikit-learn's
``accuracy_score`` and ``r2_score`` give: the functions below follow those
functions' dtype rules and operations one for one (tested bit for bit).
"""

import warnings

import numpy as np

__all__ = ["accuracy", "output_score", "r2_score"]


def accuracy(y_true, y_pred):
    """Share of samples whose label is predicted exactly (``accuracy_score``).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Labels.

    Returns
    -------
    score : float
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred have different shapes: {y_true.shape} and "
            f"{y_pred.shape}; pass one label per sample for each"
        )
    if y_true.ndim != 1:
        raise ValueError(f"accuracy expects 1-D labels, got shape {y_true.shape}")
    # count / n: the float scikit-learn's mean of a boolean array gives (an exact
    # integer sum divided once, correctly rounded).
    return int(np.count_nonzero(y_true == y_pred)) / y_true.shape[0]


def _float_dtype(*arrays):
    """scikit-learn's ``_find_matching_floating_dtype``: the widest float dtype among
    inputs that have a dtype (lists do not count), else float64."""
    floats = [
        np.asarray(a).dtype
        for a in arrays
        if hasattr(a, "dtype") and np.asarray(a).dtype.kind == "f"
    ]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def r2_score(y_true, y_pred):
    """Coefficient of determination R^2, averaged uniformly over outputs.

    scikit-learn's ``r2_score`` with its defaults (``multioutput="uniform_average"``,
    ``force_finite=True``): computed in the widest float dtype of the inputs
    (float32 stays float32); an output whose targets are constant scores 1.0 if
    predicted exactly, else 0.0.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets and predictions.

    Returns
    -------
    score : float
        NaN, with a warning, for fewer than two samples.
    """
    dtype = _float_dtype(y_true, y_pred)
    y_true = np.asarray(y_true, dtype=dtype)
    y_pred = np.asarray(y_pred, dtype=dtype)
    y_true = y_true.reshape(-1, 1) if y_true.ndim == 1 else y_true
    y_pred = y_pred.reshape(-1, 1) if y_pred.ndim == 1 else y_pred
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(
            f"y_true and y_pred have different shapes: {y_true.shape} and "
            f"{y_pred.shape}; pass one row of targets per sample for each"
        )
    if y_true.shape[0] < 2:
        warnings.warn(
            "R^2 score is not well-defined with less than two samples.", UserWarning, stacklevel=2
        )
        return float("nan")
    numerator = np.sum((y_true - y_pred) ** 2, axis=0)
    denominator = np.sum((y_true - np.mean(y_true, axis=0)) ** 2, axis=0)
    nonzero_num, nonzero_den = numerator != 0, denominator != 0
    scores = np.ones(y_true.shape[1], dtype=numerator.dtype)
    valid = nonzero_num & nonzero_den
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[nonzero_num & ~nonzero_den] = 0.0
    return float(np.mean(scores))


def output_score(P, Y, *, out_activation, n_classes):
    """Score of network outputs ``P`` against network targets ``Y`` (both 2-D).

    What early stopping maximizes: accuracy for classifiers (``n_classes`` not
    None), R^2 for regressors (``n_classes`` None); NaN if ``P`` is not finite
    (a diverged fit). The labels are compared as scikit-learn's LabelBinarizer
    decodes them: the largest output for softmax, outputs above 0.5 for
    logistic ones (binary, or multilabel with every label right), and a single
    class is always right.
    """
    if not np.isfinite(P).all():
        return np.nan
    if n_classes is None:
        return r2_score(Y, P)
    n = P.shape[0]
    if n_classes == 1:
        return 1.0
    if out_activation == "softmax":
        hits = np.count_nonzero(P.argmax(axis=1) == Y.argmax(axis=1))
    else:
        hits = np.count_nonzero(((P > 0.5) == (Y > 0.5)).all(axis=1))
    return int(hits) / n  # a Python float, as accuracy_score returns
