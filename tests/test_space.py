"""Search spaces -> trials: expansion, keys, seeds, errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import loguniform, randint
from sklearn.model_selection import ParameterGrid, ParameterSampler

from mlpar.space import Trial, canonical_json, expand_space, fingerprint, trial_key, trial_seed

# Hard-coded on purpose: a change of the hashing scheme must fail here, since
# it would orphan every journal ever written (resume matches trials by key).
KNOWN_KEY = "e5f533aff1dc0531"
KNOWN_PARAMS = {"lr": 0.1, "hidden": (32, 32)}


def test_known_key_is_stable():
    assert trial_key(KNOWN_PARAMS) == KNOWN_KEY
    assert trial_key(KNOWN_PARAMS, repeat=0) == KNOWN_KEY
    assert trial_key(KNOWN_PARAMS, repeat=1) != KNOWN_KEY


@pytest.mark.parametrize(
    "params",
    [
        {"hidden": [32, 32], "lr": 0.1},  # other order, list instead of tuple
        {"lr": np.float64(0.1), "hidden": (np.int64(32), 32)},  # NumPy scalars
        {"lr": 0.1, "hidden": np.array([32, 32])},
    ],
)
def test_key_ignores_spelling_of_equal_params(params):
    assert trial_key(params) == KNOWN_KEY


def test_key_distinguishes_types_and_values():
    assert trial_key({"a": 1}) != trial_key({"a": 1.5})
    assert trial_key({"a": 1}) != trial_key({"a": True})
    assert trial_key({"a": 1}) != trial_key({"a": "1"})
    assert trial_key({"a": 1}) != trial_key({"b": 1})


def test_key_is_the_same_in_another_python_process():
    # A different hash seed: a key built on hash() would differ.
    code = "from mlpar.space import trial_key; print(trial_key({'lr': 0.1, 'hidden': (32, 32)}))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == KNOWN_KEY


def test_seed_is_known_and_depends_on_random_state_and_key():
    assert trial_seed(0, KNOWN_KEY) == trial_seed(0, KNOWN_KEY)
    assert trial_seed(0, KNOWN_KEY) == 1589677021
    assert trial_seed(1, KNOWN_KEY) != trial_seed(0, KNOWN_KEY)
    assert trial_seed(0, trial_key(KNOWN_PARAMS, 1)) != trial_seed(0, KNOWN_KEY)
    assert 0 <= trial_seed(7, KNOWN_KEY) < 2**32


def test_grid_follows_parameter_grid_with_repeats_adjacent():
    space = {"lr": [0.01, 0.1], "hidden": [[32], [64, 64]], "act": ["relu"]}
    trials = expand_space(space, seeds=3, random_state=5)
    configs = list(ParameterGrid(space))
    assert len(trials) == 3 * len(configs)
    for i, trial in enumerate(trials):
        assert isinstance(trial, Trial)
        assert trial.params == configs[i // 3]
        assert trial.repeat == i % 3
        assert trial.key == trial_key(trial.params, trial.repeat)
        assert trial.seed == trial_seed(5, trial.key)
    assert len({t.key for t in trials}) == len(trials)
    assert len({t.seed for t in trials}) == len(trials)


def test_list_of_grids_is_a_union():
    trials = expand_space([{"kind": ["a"], "x": [1, 2]}, {"kind": ["b"], "y": [3]}])
    assert [t.params for t in trials] == [
        {"kind": "a", "x": 1},
        {"kind": "a", "x": 2},
        {"kind": "b", "y": 3},
    ]


def test_random_search_is_reproducible_and_plain_python():
    space = {"lr": loguniform(1e-4, 1e-1), "layers": randint(1, 4), "act": ["relu", "tanh"]}
    a = expand_space(space, n_iter=6, random_state=3)
    b = expand_space(space, n_iter=6, random_state=3)
    c = expand_space(space, n_iter=6, random_state=4)
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.params for t in a] != [t.params for t in c]
    # Same draws as scikit-learn's sampler with the same seed.
    expected = list(ParameterSampler(space, 6, random_state=3))
    assert [t.params["lr"] for t in a] == [float(p["lr"]) for p in expected]
    for trial in a:
        assert type(trial.params["lr"]) is float
        assert type(trial.params["layers"]) is int
        json.dumps(trial.params)  # journal-ready


def test_n_iter_on_a_grid_samples_without_replacement():
    trials = expand_space({"x": list(range(10))}, n_iter=4, random_state=0)
    values = [t.params["x"] for t in trials]
    assert len(set(values)) == 4


def test_duplicate_configurations_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="1 are duplicates"):
        trials = expand_space([{"x": [1, 2]}, {"x": [2]}])
    assert [t.params for t in trials] == [{"x": 1}, {"x": 2}]


def test_fingerprint_tracks_the_trials():
    a = expand_space({"x": [1, 2]})
    assert fingerprint(a) == fingerprint(expand_space({"x": [1, 2]}))
    assert fingerprint(a) != fingerprint(expand_space({"x": [1, 3]}))
    assert fingerprint(a) != fingerprint(expand_space({"x": [1, 2]}, seeds=2))


def test_canonical_json():
    assert canonical_json({"b": (1, 2), "a": np.float32(0.5)}) == '{"a":0.5,"b":[1,2]}'


@pytest.mark.parametrize(
    "space, kwargs, error, message",
    [
        ({}, {}, ValueError, "space is empty; give at least one parameter"),
        ([], {}, ValueError, "space is an empty list"),
        ({"x": []}, {}, ValueError, "space['x'] is an empty list"),
        (
            {"x": 0.1},
            {},
            TypeError,
            "space['x'] must be a list of candidates or a scipy.stats distribution, got 0.1 (float); wrap a single value in a list: [0.1]",
        ),
        ({"x": "abc"}, {}, TypeError, "space['x'] must be a list of candidates"),
        ("x", {}, TypeError, "space must be a dict of parameter lists or distributions"),
        ([{"x": [1]}, 3], {}, TypeError, "space[1] must be a dict, got int"),
        ({1: [1]}, {}, TypeError, "parameter names must be str"),
        ({"x": [object()]}, {}, TypeError, "space['x'] must be JSON-compatible"),
        (
            {"lr": loguniform(1e-3, 1)},
            {},
            ValueError,
            "space holds distributions (lr) but n_iter is None",
        ),
        ({"x": [1]}, {"n_iter": 0}, ValueError, "n_iter must be a positive integer or None, got 0"),
        ({"x": [1]}, {"seeds": 0}, ValueError, "seeds must be a positive integer, got 0"),
        (
            {"x": [1]},
            {"random_state": None},
            ValueError,
            "random_state must be a non-negative integer, got None",
        ),
        (
            {"x": [1]},
            {"random_state": -1},
            ValueError,
            "random_state must be a non-negative integer",
        ),
    ],
)
def test_errors(space, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        expand_space(space, **kwargs)


@pytest.mark.parametrize(
    "space",
    [
        {"lr": [0.1, 0.01], "hidden": [[8], [16, 16]], "alpha": [0.0]},
        [{"b": [1, 2], "a": ["x", "y", "z"]}, {"c": [True]}, {}],
        {"z": [3, 1, 2]},
    ],
)
def test_grid_order_is_scikit_learns(space):
    from sklearn.model_selection import ParameterGrid

    from mlpar.space import grid_configurations

    grids = space if isinstance(space, list) else [space]
    assert list(grid_configurations(grids)) == list(ParameterGrid(space))
