import re

import numpy as np
import pytest

from mlpar.data import DATASETS, load_dataset, make_splits


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_loads_and_splits(name):
    ds = load_dataset(name)
    assert ds.X.ndim == 2 and ds.X.shape[0] == ds.y.shape[0] > 0
    sp = make_splits(ds, val_fraction=0.2, test_fraction=0.2, random_state=1)
    n = sp.X_train.shape[0] + sp.X_val.shape[0] + sp.X_test.shape[0]
    assert n == ds.X.shape[0]
    assert sp.X_train.dtype == np.float32
    # standardized on the training part only
    np.testing.assert_allclose(sp.X_train.mean(axis=0), 0.0, atol=1e-4)
    if ds.task == "regression":
        assert sp.y_train.dtype == np.float32
        assert abs(float(sp.y_train.mean())) < 1e-4


def test_splits_are_deterministic_and_seed_dependent():
    ds = load_dataset("digits")
    a = make_splits(ds, random_state=3)
    b = make_splits(ds, random_state=3)
    c = make_splits(ds, random_state=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)


def test_classification_split_is_stratified():
    sp = make_splits(load_dataset("digits"), random_state=0)
    counts = np.bincount(sp.y_test, minlength=10) / sp.y_test.size
    assert counts.min() > 0.08 and counts.max() < 0.12


def test_generators_take_size_parameters_and_seed():
    ds = load_dataset("classification", n_samples=300, n_features=10, n_classes=3, random_state=5)
    assert ds.X.shape == (300, 10) and set(np.unique(ds.y)) == {0, 1, 2}
    again = load_dataset(
        "classification", n_samples=300, n_features=10, n_classes=3, random_state=5
    )
    np.testing.assert_array_equal(ds.X, again.X)
    other = load_dataset(
        "classification", n_samples=300, n_features=10, n_classes=3, random_state=6
    )
    assert not np.array_equal(ds.X, other.X)
    assert load_dataset("moons", n_samples=50, noise=0.1).X.shape == (50, 2)
    assert load_dataset("regression", n_samples=40, n_features=3).task == "regression"


def test_float64_on_request():
    sp = make_splits(load_dataset("diabetes"), dtype="float64")
    assert sp.X_train.dtype == np.float64 and sp.y_train.dtype == np.float64


def test_cached_arrays_are_read_only():
    ds = load_dataset("iris")
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: load_dataset("mnist"),
            (
                "unknown dataset 'mnist'; available: breast_cancer, "
                "classification, diabetes, digits, iris, moons, regression, wine"
            ),
        ),
        (
            lambda: load_dataset("digits", n_samples=10),
            "dataset 'digits' does not take n_samples; it accepts no size parameters",
        ),
        (
            lambda: load_dataset("moons", n_classes=3),
            "dataset 'moons' does not take n_classes; it accepts n_samples, noise",
        ),
        (
            lambda: make_splits(load_dataset("iris"), val_fraction=0.0),
            "val_fraction must be in (0, 1), got 0.0",
        ),
        (
            lambda: make_splits(load_dataset("iris"), val_fraction=0.5, test_fraction=0.5),
            "val_fraction + test_fraction must be below 1, got 1.0",
        ),
        (
            lambda: load_dataset("classification", n_features=2, n_classes=10),
            "dataset 'classification' with n_classes=10 needs n_features >= 5, got 2",
        ),
    ],
)
def test_bad_input_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
