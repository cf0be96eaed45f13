"""Property tests of the config loader: whatever it is given, it returns a valid
config or raises ConfigError, never another exception; and whatever it accepts
expands into trials that all resolve."""

import copy
import string
import warnings
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import ParameterGrid, ParameterSampler

from mlpar.config import (
    TRIAL_PARAM_NAMES,
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    load_config,
    resolve_trial_params,
)

CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"
BASES = {
    p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(CONFIGS.glob("*.yaml"))
}
SECTION_KEYS = {
    "data": [
        "dataset",
        "n_samples",
        "n_features",
        "n_classes",
        "noise",
        "val_fraction",
        "test_fraction",
    ],
    "model": ["hidden", "activation", "alpha", "dtype"],
    "train": [
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "beta1",
        "beta2",
        "epsilon",
        "early_stopping",
        "patience",
        "tol",
    ],
    "sweep": ["params", "n_iter", "seeds", "random_state"],
    "execution": ["backend", "n_jobs", "blas_threads", "timeout", "retries", "address"],
    "compare": ["backends", "n_jobs", "repeats"],
    "output": ["folder"],
}
KNOWN_KEYS = [
    "name",
    *SECTION_KEYS,
    *TRIAL_PARAM_NAMES,
    "loguniform",
    "uniform",
    "randint",
    "choice",
    *sorted({k for keys in SECTION_KEYS.values() for k in keys}),
]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**13), 10**13)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["digits", "relu", "adam", "serial", "1e-3", "float32", "moons"])
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8) | st.integers(-3, 3) | st.booleans()
yamlish = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def valid_or_config_error(build):
    """Run ``build``; it must return an ExperimentConfig or raise ConfigError."""
    try:
        cfg = build()
    except ConfigError as err:
        assert err.errors and all(isinstance(e, str) and e and "\n" not in e for e in err.errors)
        return None
    assert isinstance(cfg, ExperimentConfig)
    return cfg


def every_trial_resolves(cfg, *, limit=40):
    """Expand the config's space as the sweep does; each trial must resolve."""
    space = cfg.search_space()
    if cfg.is_random_search:
        with warnings.catch_warnings():
            # Lists and choices only: scikit-learn warns when n_iter exceeds the
            # grid and samples the whole grid, which is what the sweep wants.
            warnings.filterwarnings("ignore", "The total space of parameters", UserWarning)
            # A sampler's search has n_trials, not n_iter: draw as many at random.
            sampler = cfg.sweep.sampler
            n_iter = cfg.sweep.n_iter if sampler is None else sampler.n_trials
            trials = list(ParameterSampler(space, n_iter=min(n_iter, limit), random_state=0))
    else:
        grid = ParameterGrid(space)
        trials = [grid[i] for i in range(min(len(grid), limit))]
    assert trials
    base = cfg.trial_base()
    for params in trials:
        resolve_trial_params({**base, **params})


@PROPERTY
@given(yamlish)
def test_any_mapping_gives_a_config_or_a_config_error(value):
    valid_or_config_error(lambda: config_from_dict(value))


@PROPERTY
@given(st.dictionaries(st.sampled_from(["name", *SECTION_KEYS]), yamlish, max_size=8))
def test_any_sections_give_a_config_or_a_config_error(value):
    value.setdefault("name", "p")
    cfg = valid_or_config_error(lambda: config_from_dict(value))
    if cfg is not None:
        every_trial_resolves(cfg)


@st.composite
def mutated_configs(draw):
    """A shipped config with random deletions, insertions and type swaps."""
    raw = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 4))):
        # Walk down to a random mapping inside the config.
        node = raw
        while True:
            children = [k for k, v in node.items() if isinstance(v, dict)]
            if not children or draw(st.booleans()):
                break
            node = node[draw(st.sampled_from(children))]
        op = draw(st.sampled_from(["delete", "insert", "swap", "swap_known"]))
        existing = list(node)
        if op == "delete" and existing:
            del node[draw(st.sampled_from(existing))]
        elif op == "insert":
            node[draw(keys)] = draw(yamlish)
        elif op == "swap" and existing:
            node[draw(st.sampled_from(existing))] = draw(yamlish)
        elif existing:
            # Values of the right kind for some key: finds cross-field problems.
            node[draw(st.sampled_from(existing))] = draw(
                st.sampled_from(
                    [
                        0,
                        1,
                        -1,
                        2,
                        0.5,
                        0.99,
                        1e-3,
                        2048,
                        None,
                        True,
                        [],
                        {},
                        [8, 8],
                        "moons",
                        "classification",
                        "dask",
                        {"randint": [1, 4]},
                        {"uniform": [0.1, 0.2]},
                        {"loguniform": [1e-4, 1e-2]},
                        {"choice": [1, 2]},
                        [0.3, 0.9],
                    ]
                )
            )
    return raw


@PROPERTY
@given(mutated_configs())
def test_mutated_configs_give_a_config_or_a_config_error(raw):
    cfg = valid_or_config_error(lambda: config_from_dict(raw))
    if cfg is not None:
        # What is accepted round-trips through YAML and expands into valid trials.
        assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
        every_trial_resolves(cfg)


yaml_text = st.text(alphabet=string.printable + "\u00e9\u0430", max_size=200) | st.builds(
    lambda raw, junk: yaml.safe_dump(raw, sort_keys=False) + junk,
    mutated_configs(),
    st.sampled_from(
        ["", "\t", "\n\t- x", ": :", "\n---\nname: y\n", "\n!!python/none x: 1\n", "\0"]
    ),
)


@PROPERTY
@given(yaml_text)
def test_any_file_text_gives_a_config_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    valid_or_config_error(lambda: load_config(path))


@PROPERTY
@given(st.binary(max_size=100))
def test_any_file_bytes_give_a_config_or_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "c.yaml"
    path.write_bytes(data)
    valid_or_config_error(lambda: load_config(path))


@PROPERTY
@given(
    st.lists(
        st.text(max_size=30)
        | st.builds(
            "{}={}".format,
            st.sampled_from(
                [
                    "train.lr",
                    "model.hidden",
                    "sweep.params.lr",
                    "sweep.params.units",
                    "data",
                    "name",
                    "execution.n_jobs",
                    "sweep.n_iter",
                ]
            ),
            st.text(max_size=20),
        ),
        max_size=4,
    )
)
def test_any_overrides_give_a_config_or_a_config_error(overrides):
    valid_or_config_error(lambda: load_config(CONFIGS / "quickstart.yaml", overrides))


# Values each trial parameter accepts, to build random valid sweeps.
GOOD = {
    "lr": st.floats(1e-5, 1.0),
    "alpha": st.floats(0, 1e-2),
    "batch_size": st.integers(1, 512),
    "epochs": st.integers(1, 50),
    "units": st.integers(1, 512),
    "layers": st.integers(1, 4),
    "activation": st.sampled_from(["relu", "tanh", "logistic", "identity"]),
    "optimizer": st.sampled_from(["adam", "sgd"]),
    "dtype": st.sampled_from(["float32", "float64"]),
    "momentum": st.floats(0, 1),
    "beta1": st.floats(0, 0.999),
    "nesterov": st.booleans(),
    "val_fraction": st.floats(0.05, 0.45),
    "test_fraction": st.floats(0.05, 0.45),
}
INTS = {"batch_size", "epochs", "units", "layers"}
NUMERIC = {"lr", "alpha", "momentum", "beta1", "val_fraction", "test_fraction"} | INTS


@st.composite
def sweep_values(draw, name):
    values = GOOD[name]
    kind = draw(st.sampled_from(["list", "choice"] + (["dist"] if name in NUMERIC else [])))
    if kind == "list":
        return draw(st.lists(values, min_size=1, max_size=3))
    if kind == "choice":
        return {"choice": draw(st.lists(values, min_size=1, max_size=3))}
    low, high = sorted(draw(st.lists(values, min_size=2, max_size=2, unique=True)))
    if name in INTS:
        return {"randint": [low, high]}
    if low > 0 and draw(st.booleans()):
        return {"loguniform": [low, high]}
    return {"uniform": [low, high]}


@st.composite
def valid_sweeps(draw):
    grids = []
    for _ in range(draw(st.integers(1, 2))):
        names = draw(st.lists(st.sampled_from(sorted(GOOD)), min_size=1, max_size=4, unique=True))
        grids.append({name: draw(sweep_values(name)) for name in names})
    random = any(isinstance(v, dict) for g in grids for v in g.values())
    return {
        "params": grids if len(grids) > 1 else grids[0],
        "n_iter": draw(st.integers(1, 20)) if random else None,
        "seeds": draw(st.integers(1, 3)),
        "random_state": draw(st.integers(0, 2**32 - 1)),
    }


@PROPERTY
@given(valid_sweeps())
def test_valid_sweeps_expand_with_scikit_learn_and_every_trial_resolves(sweep):
    cfg = valid_or_config_error(lambda: config_from_dict({"name": "s", "sweep": sweep}))
    # The fractions are drawn independently; only their sum can be out of range.
    if cfg is None:
        grids = sweep["params"] if isinstance(sweep["params"], list) else [sweep["params"]]
        assume(not any({"val_fraction", "test_fraction"} & set(g) for g in grids))
        raise AssertionError(f"a valid sweep was refused: {sweep}")
    every_trial_resolves(cfg)
