"""MLPClassifier and MLPRegressor: scikit-learn estimators over mlpar's engine."""

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from ._base import BaseMLP
from ._docs import ATTRIBUTES_DOC, PARAMETERS_DOC
from ._fit import class_targets

__all__ = ["MLPClassifier", "MLPRegressor"]


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = f"""Multilayer perceptron classifier on mlpar's NumPy engine.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPClassifier`
    (same parameter names, defaults, losses and stopping rules, "adam" and
    "sgd" solvers), built for speed: float32 by default, one flat parameter
    buffer, an allocation-free training step. Multiclass targets get a softmax
    output and cross-entropy; binary and multilabel (indicator matrix) targets
    get logistic outputs and binary cross-entropy.

    Parameters
    ----------{PARAMETERS_DOC}
    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels.{ATTRIBUTES_DOC}
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from mlpar.nn import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier((64,), max_iter=20, random_state=0).fit(X / 16, y)
    >>> clf.predict_proba(X[:2] / 16).dtype
    dtype('float32')
    """

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _n_classes(self):
        return len(self.classes_)

    def _validate_input(self, X, y, *, incremental, reset, dtype):
        X, y = validate_data(self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        codes = None
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            if y.ndim == 1:
                # One np.unique gives both the classes and each label's index;
                # the binarizer (for inverse_transform) is fitted on the classes.
                classes, codes = np.unique(y, return_inverse=True)
                self._label_binarizer = LabelBinarizer().fit(classes)
            else:
                self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` "
                    f"has {self.classes_}. 'y' has {classes}."
                )
        return X, self._binarize(y, codes, dtype)

    def _binarize(self, y, codes, dtype):
        """Targets for the network: one-hot rows (multiclass), one 0/1 column
        (binary) or the indicator matrix itself (multilabel), in ``dtype``."""
        lb = self._label_binarizer
        n_classes = len(self.classes_)
        if y.ndim == 1 and lb.y_type_ in ("multiclass", "binary") and n_classes >= 2:
            if codes is None:
                codes = np.searchsorted(self.classes_, y)
            # The encoding fit_mlp uses too.
            return class_targets(codes, n_classes, dtype)
        return np.ascontiguousarray(lb.transform(y), dtype=dtype)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or a label indicator matrix (multilabel).
        classes : array-like of shape (n_classes,), default=None
            All the classes across calls; required on the first call, may be
            omitted later. ``y`` need not contain all of them.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to "
                f"partial_fit, was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predict class labels (an indicator matrix for multilabel models).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted labels.
        """
        P = self._forward(X)
        if self.n_outputs_ == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    def predict_proba(self, X):
        """Class probabilities, in the model's dtype.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, columns ordered as ``classes_``.
        """
        P = self._forward(X)
        if self.n_outputs_ == 1:
            return np.hstack([1 - P, P])
        return P

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = f"""Multilayer perceptron regressor on mlpar's NumPy engine.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPRegressor`
    (squared error) with the same parameter names, defaults and stopping
    rules, built for speed: float32 by default, one flat parameter buffer, an
    allocation-free training step.

    Parameters
    ----------{PARAMETERS_DOC}
    Attributes
    ----------{ATTRIBUTES_DOC}
    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.preprocessing import scale
    >>> from mlpar.nn import MLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = MLPRegressor((32,), max_iter=300, random_state=0).fit(scale(X), scale(y))
    >>> reg.predict(scale(X)[:3]).shape
    (3,)
    """

    def _out_activation(self):
        return "identity"

    def _n_classes(self):
        return None

    def _validate_input(self, X, y, *, incremental, reset, dtype):
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=dtype, order="C", reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.ascontiguousarray(y.reshape(X.shape[0], -1), dtype=dtype)
        return X, Y

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, in the model's dtype.
        """
        P = self._forward(X)
        return P.ravel() if P.shape[1] == 1 else P

    def score(self, X, y, sample_weight=None):
        """R^2 of the predictions; NaN when they are not finite (a diverged fit).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        pred = self.predict(X)
        if not np.isfinite(pred).all():
            return float("nan")
        return r2_score(y, pred, sample_weight=sample_weight)
