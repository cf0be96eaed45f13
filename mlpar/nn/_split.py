"""The early-stopping validation split: scikit-learn's ``train_test_split``, in NumPy.

A port, index for index, of ``train_test_split(..., test_size=fraction,
random_state=seed, stratify=labels)``: ShuffleSplit when not stratified,
StratifiedShuffleSplit (with its ``_approximate_mode`` allocation) when it is.
Both draw from ``np.random.RandomState(seed)`` in the same order as
scikit-learn, so a model trained with this split is the model trained with
scikit-learn's, bit for bit (tested against it).
"""

import math

import numpy as np

__all__ = ["approximate_mode", "validation_split"]


def approximate_mode(class_counts, n_draws, rng):
    """scikit-learn's ``_approximate_mode``: how many of ``n_draws`` to take per class.

    The floor of each class's proportional share, then one more for the classes
    with the largest remainders, ties broken at random with ``rng``.
    """
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def validation_split(n_samples, fraction, seed, labels=None):
    """Indices ``(train, validation)`` of a random split of ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
    fraction : float
        Share held out, in (0, 1); the validation set has
        ``ceil(fraction * n_samples)`` samples.
    seed : int
        Seed of the ``np.random.RandomState`` that draws the split.
    labels : ndarray of shape (n_samples,) or None, default=None
        Stratify on these class labels: each class keeps its share in both sets.

    Returns
    -------
    train, validation : ndarray of int
        In the order scikit-learn's ``train_test_split`` gives them.

    Raises
    ------
    ValueError
        An empty training set, a class with a single sample, or fewer samples
        on one side than there are classes (scikit-learn's messages).
    """
    n_test = math.ceil(fraction * n_samples)
    n_train = n_samples - n_test
    if n_train == 0:
        raise ValueError(
            f"With n_samples={n_samples}, test_size={fraction} and train_size=None, the "
            "resulting train set will be empty. Adjust any of the aforementioned parameters."
        )
    rng = np.random.RandomState(seed)
    if labels is None:
        permutation = rng.permutation(n_samples)
        return permutation[n_test : n_test + n_train], permutation[:n_test]

    classes, y_indices, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_classes = classes.shape[0]
    if class_counts.min() < 2:
        raise ValueError(
            "The least populated classes in y have only 1 member, which is too few. The "
            "minimum number of groups for any class cannot be less than 2. Classes with "
            f"too few members are: {classes[class_counts < 2].tolist()}"
        )
    for name, size in (("train_size", n_train), ("test_size", n_test)):
        if size < n_classes:
            raise ValueError(
                f"The {name} = {size} should be greater or equal to the number "
                f"of classes = {n_classes}"
            )
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = approximate_mode(class_counts, n_train, rng)
    t_i = approximate_mode(class_counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(n_classes):
        # Same draws as scikit-learn, class by class; slices joined at the end
        # instead of extending lists of scalars (same values, same order).
        members = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.append(members[: n_i[i]])
        test.append(members[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
