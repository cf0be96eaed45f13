"""Tests of mlpar.config: shipped configs, defaults, overrides, round trips,
search spaces, trial parameters and error messages."""

import dataclasses
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.model_selection import ParameterGrid, ParameterSampler

from mlpar.config import (
    TRIAL_PARAM_NAMES,
    CompareConfig,
    ConfigError,
    DataConfig,
    Distribution,
    ExecutionConfig,
    ExperimentConfig,
    ModelConfig,
    OverrideWarning,
    SweepConfig,
    TrainConfig,
    TrialSettings,
    config_from_dict,
    load_config,
    parse_override,
    resolve_trial_params,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def errors_of(path, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value.errors


def expand(space, n_iter, random_state=0):
    if n_iter is None:
        return list(ParameterGrid(space))
    return list(ParameterSampler(space, n_iter=n_iter, random_state=random_state))


# ---------------------------------------------------------------- shipped configs


def test_the_five_shipped_configs_exist():
    assert {p.name for p in SHIPPED} >= {
        "quickstart.yaml",
        "digits_grid.yaml",
        "random_search.yaml",
        "width_scan.yaml",
        "dask.yaml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads_and_every_trial_resolves(path):
    cfg = load_config(path)
    assert cfg.source == str(path)
    trials = expand(cfg.search_space(), cfg.sweep.n_iter)
    assert trials
    for params in trials:
        settings = resolve_trial_params({**cfg.trial_base(), **params})
        assert isinstance(settings, TrialSettings)


def test_quickstart_is_a_small_grid_on_processes():
    cfg = load_config(CONFIGS / "quickstart.yaml")
    assert cfg.data.dataset == "digits"
    assert not cfg.is_random_search
    assert len(expand(cfg.search_space(), None)) == 4
    assert cfg.execution.backend == "processes"
    assert cfg.compare.backends == ("serial", "threads", "processes", "forked")
    assert cfg.compare.n_jobs == (2,)


def test_digits_grid_is_the_twelve_configuration_grid():
    cfg = load_config(CONFIGS / "digits_grid.yaml")
    space = cfg.search_space()
    assert space == {"hidden": [[64], [256], [256, 256]], "lr": [1e-3, 3e-3], "alpha": [1e-4, 1e-3]}
    assert len(expand(space, None)) == 12
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer) == (30, 64, "adam")
    assert (cfg.execution.backend, cfg.execution.n_jobs) == ("processes", 2)


def test_random_search_draws_from_distributions():
    cfg = load_config(CONFIGS / "random_search.yaml")
    assert cfg.is_random_search
    assert cfg.sweep.n_iter == 12
    kinds = {name: v.kind for name, v in cfg.sweep.params[0] if isinstance(v, Distribution)}
    assert kinds == {
        "lr": "loguniform",
        "alpha": "loguniform",
        "batch_size": "choice",
        "units": "randint",
    }
    assert len(expand(cfg.search_space(), cfg.sweep.n_iter)) == 12


def test_width_scan_spans_8_to_2048_with_two_batch_sizes():
    cfg = load_config(CONFIGS / "width_scan.yaml")
    space = cfg.search_space()  # one grid per (units, batch_size), each with its epochs
    units = {u for grid in space for u in grid["units"]}
    batches = {b for grid in space for b in grid["batch_size"]}
    assert min(units) == 8 and max(units) == 2048 and len(batches) >= 2
    assert {(g["units"][0], g["batch_size"][0]) for g in space} == {
        (u, b) for u in units for b in batches
    }
    assert cfg.compare.group_by == ("units", "batch_size")
    assert cfg.data.dataset == "classification"
    assert cfg.compare.backends == ("serial", "threads", "processes", "forked")
    assert cfg.compare.n_jobs == (1, 2)
    assert cfg.compare.repeats == 3


def test_dask_config_uses_a_local_cluster():
    cfg = load_config(CONFIGS / "dask.yaml")
    assert cfg.execution.backend == "dask"
    assert cfg.execution.address is None


# ---------------------------------------------------------------- defaults


def test_a_name_alone_is_a_complete_config_of_defaults():
    cfg = config_from_dict({"name": "x"})
    assert cfg == ExperimentConfig(name="x")
    assert cfg.data == DataConfig() and cfg.train == TrainConfig()
    assert cfg.sweep.params == () and not cfg.is_random_search
    assert cfg.search_space() == {}
    assert expand(cfg.search_space(), None) == [{}]


def test_documented_defaults():
    cfg = config_from_dict({"name": "x"})
    assert (cfg.data.dataset, cfg.data.val_fraction, cfg.data.test_fraction) == ("digits", 0.2, 0.2)
    assert (cfg.model.hidden, cfg.model.activation, cfg.model.dtype) == ((64,), "relu", "float32")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer, cfg.train.lr) == (
        30,
        64,
        "adam",
        1e-3,
    )
    assert (cfg.sweep.n_iter, cfg.sweep.seeds, cfg.sweep.random_state) == (None, 1, 0)
    assert (cfg.execution.backend, cfg.execution.n_jobs, cfg.execution.retries) == (
        "serial",
        None,
        0,
    )
    assert cfg.compare == CompareConfig(
        backends=("serial", "threads", "processes"), n_jobs=(2,), repeats=3
    )
    assert cfg.output.folder == "runs"


def test_trial_defaults_are_the_config_defaults():
    # One set of defaults: a Python sweep with no parameters trains what a
    # config with no settings trains.
    settings = resolve_trial_params({})
    cfg = config_from_dict({"name": "x"})
    assert (settings.data, settings.model, settings.train) == (cfg.data, cfg.model, cfg.train)


def test_empty_sections_take_the_defaults():
    assert config_from_dict({"name": "x", "data": None, "sweep": None}) == ExperimentConfig(
        name="x"
    )


def test_sections_are_frozen_and_normalized():
    model = ModelConfig(hidden=[32, 32], alpha=0)
    assert model.hidden == (32, 32) and model.alpha == 0.0 and isinstance(model.alpha, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.alpha = 1.0
    assert ModelConfig(hidden=16).hidden == (16,)


@pytest.mark.parametrize(
    "build, kind, message",
    [
        (lambda: DataConfig(dataset="mnist"), ValueError, "DataConfig.dataset must be one of "),
        (
            lambda: TrainConfig(batch_size=0),
            ValueError,
            "TrainConfig.batch_size must be a positive integer, got 0 (int)",
        ),
        (
            lambda: TrainConfig(epochs="3"),
            TypeError,
            "TrainConfig.epochs must be a positive integer, got '3' (str)",
        ),
        (
            lambda: ExecutionConfig(backend="threads", address="tcp://h:1"),
            ValueError,
            "ExecutionConfig.address must be null unless ExecutionConfig.backend is dask",
        ),
        (
            lambda: SweepConfig(params={"lr": {"uniform": [0.1, 0.2]}}),
            ValueError,
            "SweepConfig.n_iter must be a positive integer for a random search",
        ),
    ],
)
def test_sections_check_their_values_when_built(build, kind, message):
    with pytest.raises(kind, match=re.escape(message)):
        build()


def test_experiment_config_checks_data_against_the_sweep():
    with pytest.raises(
        ConfigError, match=re.escape("<dict>: data.noise must be null for dataset 'digits'")
    ):
        ExperimentConfig(name="x", data=DataConfig(noise=0.1))
    # The sweep makes every trial a moons trial, which takes noise.
    sweep = SweepConfig(params={"dataset": ["moons"]})
    assert ExperimentConfig(name="x", data=DataConfig(noise=0.1), sweep=sweep)


def test_sweep_config_accepts_its_checked_form_back():
    sweep = SweepConfig(params=[{"lr": [0.1, 0.2]}, {"units": {"randint": [1, 4]}}], n_iter=3)
    again = dataclasses.replace(sweep, seeds=2)
    assert again.params == sweep.params and again.seeds == 2


# ---------------------------------------------------------------- overrides

QUICK = CONFIGS / "quickstart.yaml"


@pytest.mark.parametrize(
    "overrides, get, expected",
    [
        (["train.lr=0.01"], lambda c: c.train.lr, 0.01),
        (["train.lr=1e-2"], lambda c: c.train.lr, 0.01),  # YAML 1.1 reads 1e-2 as a string
        (["model.hidden=[64,64]"], lambda c: c.model.hidden, (64, 64)),
        (["model.hidden=128"], lambda c: c.model.hidden, (128,)),
        (
            ["execution.backend=threads", "execution.n_jobs=-1"],
            lambda c: (c.execution.backend, c.execution.n_jobs),
            ("threads", -1),
        ),
        (["train.epochs=5", "train.epochs=7"], lambda c: c.train.epochs, 7),  # later wins
        (["name=other"], lambda c: c.name, "other"),
        (["data={dataset: iris}"], lambda c: c.data, DataConfig(dataset="iris")),
        (["sweep.params.lr=[0.1]"], lambda c: c.search_space()["lr"], [0.1]),
        (["sweep.params.epochs=[1, 2]"], lambda c: c.search_space()["epochs"], [1, 2]),
        (
            ["sweep.params.lr=null"],
            lambda c: c.search_space(),
            {"hidden": [[256, 256], [512, 512]]},
        ),
        (["sweep.params.lr=null", "sweep.params.hidden=null"], lambda c: c.sweep.params, ()),
        (["sweep.params=null"], lambda c: c.search_space(), {}),
        (
            ["sweep.params.lr={loguniform: [1e-4, 1e-2]}", "sweep.n_iter=3"],
            lambda c: (c.is_random_search, c.sweep.n_iter),
            (True, 3),
        ),
        (["output.folder=/tmp/x y"], lambda c: c.output.folder, "/tmp/x y"),
        (["compare.n_jobs=[1, 2, 4]"], lambda c: c.compare.n_jobs, (1, 2, 4)),
        (" train.batch_size = 32", lambda c: c.train.batch_size, 32),  # one string is one override
    ],
)
def test_override_sets_value(overrides, get, expected):
    assert get(load_config(QUICK, overrides)) == expected


def test_override_of_a_swept_key_applies_to_every_grid(tmp_path):
    path = write(tmp_path, "name: g\nsweep:\n  params:\n    - lr: [0.1]\n    - units: [8]\n")
    cfg = load_config(path, ["sweep.params.batch_size=[16, 32]"])
    assert cfg.search_space() == [
        {"lr": [0.1], "batch_size": [16, 32]},
        {"units": [8], "batch_size": [16, 32]},
    ]
    cfg = load_config(path, ["sweep.params.lr=null"])
    assert cfg.search_space() == {"units": [8]}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["train.lr=-1"], ["--set train.lr: train.lr must be a positive number, got -1 (int)"]),
        (["train.lrr=1"], ["--set train.lrr: unknown key train.lrr; did you mean train.lr?"]),
        (["trian.lr=1"], ["--set trian.lr: unknown key trian; did you mean train?"]),
        (["foo"], ["--set foo: expected KEY=VALUE, e.g. train.lr=0.01"]),
        (["=3"], ["--set =3: expected KEY=VALUE, e.g. train.lr=0.01"]),
        (["train..lr=3"], ["--set train..lr: expected KEY=VALUE, e.g. train.lr=0.01"]),
        (
            ["model.hidden=[64,-1]"],
            ["--set model.hidden: model.hidden[1] must be a positive integer, got -1 (int)"],
        ),
        (
            ["model.hidden.0=64"],
            [
                "--set model.hidden.0: cannot set inside model.hidden; set it whole, "
                "e.g. model.hidden=..."
            ],
        ),
        (["name.x=1"], ["--set name.x: cannot set inside name; set it whole, e.g. name=..."]),
        (
            ["sweep.params.lr.loguniform=[1, 2]"],
            [
                "--set sweep.params.lr.loguniform: cannot set inside sweep.params.lr; set it whole, "
                "e.g. sweep.params.lr=[...]"
            ],
        ),
        (
            ["sweep.params.lerning_rate=[1]"],
            [
                "--set sweep.params.lerning_rate: unknown key sweep.params.lerning_rate; "
                "expected one of " + ", ".join(TRIAL_PARAM_NAMES)
            ],
        ),
        (
            ["sweep.params.lr=[0.1, -1]"],
            ["--set sweep.params.lr: sweep.params.lr[1] must be a positive number, got -1 (int)"],
        ),
        (
            ["train.lr=[1"],
            [
                "--set train.lr: invalid YAML value '[1': expected ',' or ']', but got '<stream end>'"
            ],
        ),
        (
            ["train.lr=!!python/object/apply:os.system [ls]"],
            [
                "--set train.lr: YAML tag !!python/object/apply:os.system is not allowed "
                "(only plain YAML)"
            ],
        ),
        (
            ["data={datset: iris}"],
            ["--set data: unknown key data.datset; did you mean data.dataset?"],
        ),
        (
            ["train.epochs=0", "foo", "model.hiden=1"],
            [
                "--set foo: expected KEY=VALUE, e.g. train.lr=0.01",
                "--set model.hiden: unknown key model.hiden; did you mean model.hidden?",
            ],
        ),
        (
            ["sweep.n_iter=4"],
            [
                "--set sweep.n_iter: sweep.n_iter must be null for a grid search "
                "(sweep.params has no distributions), got 4 (int)"
            ],
        ),
    ],
)
def test_override_errors(overrides, expected):
    assert errors_of(QUICK, overrides) == expected


def test_override_and_file_errors_are_reported_together(tmp_path):
    path = write(tmp_path, "name: x\ntrain:\n  epochs: 0\n")
    assert errors_of(path, ["train.lr=0"]) == [
        f"{path}: train.epochs must be a positive integer, got 0 (int)",
        "--set train.lr: train.lr must be a positive number, got 0 (int)",
    ]
    # An override that fixes the file's problem fixes the config.
    assert load_config(path, ["train.epochs=3"]).train.epochs == 3


def test_override_errors_come_with_an_unreadable_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    assert errors_of(missing, ["x=1"]) == [
        f"{missing}: no such file",
        "--set x: unknown key x; expected one of name, data, model, train, sweep, execution, "
        "compare, output",
    ]


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("train.lr=0.01", ("train", "lr"), 0.01),
        ("model.hidden=[64, 64]", ("model", "hidden"), [64, 64]),
        ("sweep.params.units=[8, 16]", ("sweep", "params", "units"), [8, 16]),
        ("name=run-2", ("name",), "run-2"),
        ("execution.address=", ("execution", "address"), None),
        ("output.folder=a=b", ("output", "folder"), "a=b"),  # only the first '=' splits
    ],
)
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


def test_parse_override_rejects_text_without_equals():
    with pytest.raises(ConfigError) as info:
        parse_override("train.lr")
    assert info.value.errors == ["--set train.lr: expected KEY=VALUE, e.g. train.lr=0.01"]


# ---------------------------------------------------------------- round trips and export


def _round_trip(tmp_path, cfg):
    path = write(tmp_path, cfg.to_yaml(), name="resolved.yaml")
    again = load_config(path)
    assert again == cfg
    assert again.to_yaml() == cfg.to_yaml()
    return again


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_to_yaml_round_trip_of_shipped_configs(tmp_path, path):
    _round_trip(tmp_path, load_config(path))


def test_to_yaml_round_trip_of_several_grids_and_all_distributions(tmp_path):
    cfg = config_from_dict(
        {
            "name": "many",
            "data": {"dataset": "regression", "n_samples": 500, "noise": 3},
            "sweep": {
                "params": [
                    {
                        "lr": {"loguniform": ["1e-5", 1e-2]},
                        "alpha": {"uniform": [0, 1e-3]},
                        "units": {"randint": [4, 8]},
                        "activation": {"choice": ["relu", "tanh"]},
                        "noise": {"randint": [0, 5]},
                    },
                    {"hidden": [16, [8, 8]], "dtype": ["float64"]},
                ],
                "n_iter": 5,
                "seeds": 3,
                "random_state": 7,
            },
        }
    )
    again = _round_trip(tmp_path, cfg)
    assert again.sweep.params[0][0] == ("lr", Distribution("loguniform", (1e-5, 1e-2)))
    assert cfg.data.noise == 3.0 and isinstance(cfg.data.noise, float)


def test_to_dict_is_plain_and_serializable():
    cfg = load_config(CONFIGS / "random_search.yaml")
    d = cfg.to_dict()
    assert list(d) == ["name", "data", "model", "train", "sweep", "execution", "compare", "output"]
    json.dumps(d)  # no tuples or custom objects hiding inside
    assert d["model"]["hidden"] == [64, 64]
    assert d["sweep"]["params"]["lr"] == {"loguniform": [1e-4, 1e-2]}
    assert d["sweep"]["params"]["batch_size"] == {"choice": [32, 64, 128]}
    assert yaml.safe_load(cfg.to_yaml()) == d


def test_source_is_not_part_of_equality(tmp_path):
    a = config_from_dict({"name": "x"}, source="a.yaml")
    b = config_from_dict({"name": "x"}, source="b.yaml")
    assert a == b and a.source == "a.yaml"


# ---------------------------------------------------------------- search spaces


def test_search_space_gives_frozen_scipy_distributions_with_the_right_bounds():
    cfg = config_from_dict(
        {
            "name": "r",
            "sweep": {
                "params": {
                    "lr": {"loguniform": [1e-4, 1e-1]},
                    "alpha": {"uniform": [0.1, 0.3]},
                    "units": {"randint": [1, 3]},
                    "batch_size": {"choice": [16, 32]},
                    "epochs": [3, 4],
                },
                "n_iter": 4,
            },
        }
    )
    space = cfg.search_space()
    rng = np.random.default_rng(0)
    lr = space["lr"].rvs(size=2000, random_state=rng)
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    # Log-uniform: about a third of the draws in each of the three decades.
    assert 0.25 < np.mean(lr < 1e-3) < 0.42
    alpha = space["alpha"].rvs(size=2000, random_state=rng)
    assert alpha.min() >= 0.1 and alpha.max() <= 0.3
    units = space["units"].rvs(size=2000, random_state=rng)
    assert set(units.tolist()) == {1, 2, 3}  # both ends included
    assert space["batch_size"] == [16, 32] and space["epochs"] == [3, 4]
    for params in expand(space, 50):
        assert resolve_trial_params(params).model.hidden[0] in (1, 2, 3)


def test_search_space_of_several_grids_is_a_list():
    cfg = config_from_dict(
        {
            "name": "g",
            "sweep": {"params": [{"lr": [0.1, 0.2]}, {"hidden": [[8], [8, 8]], "batch_size": [4]}]},
        }
    )
    space = cfg.search_space()
    assert space == [{"lr": [0.1, 0.2]}, {"hidden": [[8], [8, 8]], "batch_size": [4]}]
    assert len(expand(space, None)) == 4


def test_trial_base_is_every_data_model_train_field():
    cfg = load_config(CONFIGS / "width_scan.yaml")
    base = cfg.trial_base()
    assert set(base) == set(TRIAL_PARAM_NAMES) - {"units", "layers"}
    assert base["n_samples"] == cfg.data.n_samples and base["hidden"] == [64, 64]
    assert isinstance(base["hidden"], list)
    # Swept values replace the fixed ones.
    settings = resolve_trial_params({**base, "units": 512, "batch_size": 256})
    assert settings.model.hidden == (512, 512) and settings.train.batch_size == 256


# ---------------------------------------------------------------- trial parameters


@pytest.mark.parametrize(
    "params, hidden",
    [
        ({"units": 32}, (32,)),
        ({"layers": 3}, (64, 64, 64)),
        ({"units": 16, "layers": 2}, (16, 16)),
        ({"hidden": [8, 4], "layers": 3}, (8, 8, 8)),
        ({"hidden": [8, 4], "units": 5}, (5, 5)),
        ({"hidden": 12}, (12,)),
        ({"hidden": np.array([3, 5])}, (3, 5)),
    ],
)
def test_units_and_layers_expand_to_hidden(params, hidden):
    assert resolve_trial_params(params).model.hidden == hidden


def test_numpy_scalars_from_random_search_are_accepted_and_made_plain():
    s = resolve_trial_params(
        {
            "lr": np.float64(0.01),
            "batch_size": np.int64(16),
            "units": np.int32(8),
            "nesterov": np.bool_(False),
            "alpha": np.float32(0.5),
            "activation": np.str_("tanh"),
        }
    )
    assert (s.train.lr, s.train.batch_size, s.model.hidden) == (0.01, 16, (8,))
    assert type(s.train.lr) is float and type(s.train.batch_size) is int
    assert type(s.train.nesterov) is bool and s.model.activation == "tanh"


@pytest.mark.parametrize(
    "params, kind, message",
    [
        (
            {"lrr": 0.1},
            ValueError,
            "unknown trial parameter 'lrr'; did you mean 'lr'? valid: "
            + ", ".join(TRIAL_PARAM_NAMES),
        ),
        (
            {"warmup": 3},
            ValueError,
            "unknown trial parameter 'warmup'; valid: " + ", ".join(TRIAL_PARAM_NAMES),
        ),
        (
            {"batch_size": 0},
            ValueError,
            "trial parameter batch_size must be a positive integer, got 0 (int)",
        ),
        (
            {"batch_size": 16.0},
            TypeError,
            "trial parameter batch_size must be a positive integer, got 16.0 (float)",
        ),
        (
            {"epochs": True},
            TypeError,
            "trial parameter epochs must be a positive integer, got True (bool)",
        ),
        (
            {"lr": np.float64("nan")},
            ValueError,
            "trial parameter lr must be a finite number, got nan (float64)",
        ),
        (
            {"hidden": [64, 0]},
            ValueError,
            "trial parameter hidden[1] must be a positive integer, got 0 (int)",
        ),
        ({"units": 0}, ValueError, "trial parameter units must be a positive integer, got 0 (int)"),
        ({"activation": "Tanh"}, ValueError, "trial parameter activation must be one of "),
        (
            {"noise": 0.1},
            ValueError,
            "trial parameter noise must be null for dataset 'digits' (it takes no size parameters), "
            "got 0.1 (float)",
        ),
        (
            {"dataset": "moons", "n_features": 4},
            ValueError,
            "trial parameter n_features must be null for dataset 'moons' (it takes only n_samples, "
            "noise), got 4 (int)",
        ),
        (
            {"val_fraction": 0.5, "test_fraction": 0.6},
            ValueError,
            "trial parameter test_fraction must be less than 1 - val_fraction = 0.5, got 0.6 (float)",
        ),
        (
            [("lr", 0.1)],
            TypeError,
            "trial parameters must be a mapping of parameter names to values, got [('lr', 0.1)] (list)",
        ),
    ],
)
def test_bad_trial_parameters(params, kind, message):
    with pytest.raises(kind, match=re.escape(message)) as info:
        resolve_trial_params(params)
    assert not isinstance(info.value, ConfigError)


def test_trial_settings_check_consistency_when_built():
    with pytest.raises(ValueError, match=re.escape("data.noise must be null for dataset 'iris'")):
        TrialSettings(DataConfig(dataset="iris", noise=1.0), ModelConfig(), TrainConfig())


# ---------------------------------------------------------------- error messages

ERRORS = [
    (
        "name: x\ntrain:\n  batch_size: -3\n",
        ["{file}: train.batch_size must be a positive integer, got -3 (int)"],
    ),
    (
        "name: x\nmodel:\n  hiden: [64]\n",
        ["{file}: unknown key model.hiden; did you mean model.hidden?"],
    ),
    (
        "name: x\ntrain: {lr: '0.1'}\n",
        ["{file}: train.lr must be a positive number, got '0.1' (str)"],
    ),
    ("name: x\ntrain: {lr: 1e-3, epsilon: 1E-8}\n", []),  # YAML 1.1 strings, read as floats
    ("name: x\nsweep:\n  params:\n    lr: {loguniform: [1e-5, 1e-2]}\n  n_iter: 2\n", []),
    ("name: x\ndata: {dataset: classification, n_classes: 3, n_features: 8, noise: 0.5}\n", []),
    ("name: x\nexecution: {backend: dask, address: 'tcp://[::1]:8786'}\n", []),
    (
        "name: x\nsweep:\n  params:\n    dataset: [moons, iris]\ndata: {noise: 0.1}\n",
        [
            "{file}: data.noise must be null for dataset 'iris' (it takes no size parameters), "
            "got 0.1 (float)"
        ],
    ),
    (
        "name: x\nsweep:\n  params:\n    noise: {uniform: [0.0, 0.5]}\n  n_iter: 2\n",
        [
            "{file}: sweep.params.noise.uniform[0] must be null for dataset 'digits' "
            "(it takes no size parameters), got 0.0 (float)",
            "{file}: sweep.params.noise.uniform[1] must be null for dataset 'digits' "
            "(it takes no size parameters), got 0.5 (float)",
        ],
    ),
    (
        "name: x\nsweep:\n  params:\n    val_fraction: {uniform: [0.1, 0.6]}\n"
        "    test_fraction: [0.5]\n  n_iter: 2\n",
        [
            "{file}: sweep.params.test_fraction[0] must be less than 1 - "
            "sweep.params.val_fraction.uniform[1] = 0.4, got 0.5 (float)"
        ],
    ),
    (
        "name: x\nsweep:\n  seeds: 0\n  random_state: 1.5\n",
        [
            "{file}: sweep.seeds must be a positive integer, got 0 (int)",
            "{file}: sweep.random_state must be a non-negative integer, got 1.5 (float)",
        ],
    ),
    (
        "name: " + "n" * 129 + "\n",
        [
            "{file}: name must be a name made of letters, digits, '_', '.' and '-', not starting "
            "with '.' or '-', got '" + "n" * 27 + "..." + "n" * 28 + "' (str)"
        ],
    ),  # cut to one line
]


@pytest.mark.parametrize("text, expected", ERRORS)
def test_error_table(tmp_path, text, expected):
    path = write(tmp_path, text)
    if not expected:
        assert isinstance(load_config(path), ExperimentConfig)
    else:
        assert errors_of(path) == [line.replace("{file}", path) for line in expected]


def test_all_errors_in_a_file_are_reported_together(tmp_path):
    path = write(
        tmp_path,
        (
            "nmae: x\n"
            "data: {dataset: digits, noise: 0.2, val_fraction: 0.5, test_fraction: 0.5}\n"
            "model: {hidden: [64, 0], activation: relu}\n"
            "train: {epochs: 0, lr: .nan}\n"
            "sweep: {params: {lr: {loguniform: [1e-3, 1e-4]}}}\n"
            "execution: {backend: threads, n_jobs: 0, address: 'tcp://h:1'}\n"
            "compare: {backends: [serial, serial]}\n"
            "output: {folder: ''}\n"
        ),
    )
    assert errors_of(path) == [
        line.replace("{file}", path)
        for line in [
            "{file}: unknown key nmae; did you mean name?",
            "{file}: name is missing; it must be a name made of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-' (it names the run folder)",
            "{file}: model.hidden[1] must be a positive integer, got 0 (int)",
            "{file}: train.epochs must be a positive integer, got 0 (int)",
            "{file}: train.lr must be a finite number, got nan (float)",
            "{file}: sweep.params.lr.loguniform must be [low, high] with 0 < low < high, "
            "got ['1e-3', '1e-4'] (list)",
            "{file}: sweep.n_iter must be a positive integer for a random search (sweep.params has "
            "distributions), got None (NoneType)",
            "{file}: execution.n_jobs must be a positive integer or -1 (all cores) or null, "
            "got 0 (int)",
            "{file}: execution.address must be null unless execution.backend is dask, "
            "got 'tcp://h:1' (str)",
            "{file}: compare.backends[1] must not repeat an earlier entry, got 'serial' (str)",
            "{file}: output.folder must be a non-empty folder path, got '' (str)",
        ]
    ]


def test_problems_are_found_even_beside_a_bad_key_in_the_same_section(tmp_path):
    path = write(tmp_path, "name: x\ndata: {datset: iris, val_fraction: 0.6, test_fraction: 0.6}\n")
    assert errors_of(path) == [
        f"{path}: unknown key data.datset; did you mean data.dataset?",
        f"{path}: data.test_fraction must be less than 1 - data.val_fraction = 0.4, "
        f"got 0.6 (float)",
    ]


def test_file_level_errors(tmp_path):
    empty = write(tmp_path, "", name="empty.yaml")
    assert errors_of(empty) == [
        f"{empty}: file is empty; expected a mapping with keys name, "
        f"data, model, train, sweep, execution, compare, output"
    ]
    assert errors_of(str(tmp_path)) == [f"{tmp_path}: is a directory, expected a YAML file"]
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    assert errors_of(big) == [
        f"{big}: is {2 << 20} bytes, expected a YAML config (at most 1048576 bytes)"
    ]


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, "name: x\ntrain: " + "[" * 5000 + "]" * 5000 + "\n")
    assert errors_of(path) == [f"{path}: invalid YAML: nested too deeply"]


def test_self_referencing_yaml_alias_is_reported_in_one_short_line(tmp_path):
    path = write(tmp_path, "name: x\nmodel:\n  hidden: &h [1, *h]\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: model.hidden[1] must be a positive integer, got [1, [")
    assert "\n" not in line and len(line) < len(path) + 200


def test_config_error_is_picklable_and_prints_one_line_per_error():
    err = ConfigError(["a: x must be 1, got 2 (int)", "a: unknown key y"])
    again = pickle.loads(pickle.dumps(err))
    assert again.errors == err.errors
    assert str(again) == "a: x must be 1, got 2 (int)\na: unknown key y"
    assert isinstance(err, ValueError)


def test_config_from_dict_names_its_source_and_leaves_the_input_alone():
    raw = {"name": "x", "train": {"epochs": 0}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, source="my-sweep")
    assert info.value.errors == ["my-sweep: train.epochs must be a positive integer, got 0 (int)"]
    assert raw == {"name": "x", "train": {"epochs": 0}}


def test_loaded_configs_pickle_for_process_backends():
    cfg = load_config(CONFIGS / "random_search.yaml")
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.source == cfg.source


# Keys given twice (issue 15): plain YAML keeps the last one without a word.
@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "name: a\nname: b\n",
            ["{file}: line 2: duplicate key name (first at line 1); each key may appear only once"],
        ),
        (
            "name: x\ntrain:\n  lr: 0.1\ntrain:\n  epochs: 3\n",
            [
                "{file}: line 4: duplicate key train (first at line 2); each key may appear only once"
            ],
        ),
        (
            "name: x\nsweep:\n  params:\n    - {lr: [1]}\n    - {units: [8], units: [16]}\n",
            [
                "{file}: line 5, column 20: duplicate key sweep.params[1].units (first at line 5, "
                "column 8); each key may appear only once"
            ],
        ),
        (
            "name: x\nmodel: {alpha: 1, hidden: [8], alpha: 2}\ndata:\n  dataset: iris\n"
            "  dataset: moons\n",
            [
                "{file}: line 2, column 32: duplicate key model.alpha (first at line 2, column 9); "
                "each key may appear only once",
                "{file}: line 5: duplicate key data.dataset (first at line 4); each key may appear "
                "only once",
            ],
        ),
        (
            "name: x\nmodel:\n  1: a\n  1.0: b\n",  # equal keys are the same key
            [
                "{file}: line 4: duplicate key model.1.0 (float) (first at line 3); each key may "
                "appear only once"
            ],
        ),
    ],
)
def test_duplicate_keys_are_errors_with_their_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert errors_of(path) == [line.replace("{file}", path) for line in expected]


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path):
    # `<<: *base` then a key of base is an override on purpose, not a duplicate.
    path = write(tmp_path, "name: x\ntrain: {<<: {lr: 0.1, epochs: 3}, lr: 0.2}\n")
    assert (load_config(path).train.lr, load_config(path).train.epochs) == (0.2, 3)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["sweep.params={lr: [0.1], lr: [0.2]}"],
            ["--set sweep.params: duplicate key lr in the value; each key may appear only once"],
        ),
        (
            ["train={lr: 0.1, epochs: 2, lr: 0.2}"],
            ["--set train: duplicate key lr in the value; each key may appear only once"],
        ),
    ],
)
def test_duplicate_keys_in_override_values_are_errors(overrides, expected):
    assert errors_of(QUICK, overrides) == expected
    with pytest.raises(ConfigError, match=re.escape(expected[0])):
        parse_override(overrides[0])


# Overriding the backend (issue 15): the file's settings for its own backend
# give way; what the overrides themselves say never does.
DIGITS = str(CONFIGS / "digits_grid.yaml")
DASK_AT = "name: x\nexecution: {backend: dask, n_jobs: 4, address: 'tcp://10.0.0.5:8786'}\n"


def test_overriding_the_backend_to_serial_replaces_the_file_n_jobs():
    with pytest.warns(
        OverrideWarning,
        match=re.escape(
            f"execution.n_jobs 2 from {DIGITS} replaced by 1: backend serial, set by an "
            f"override, runs one trial at a time; override execution.n_jobs too to choose"
        ),
    ):
        cfg = load_config(DIGITS, ["execution.backend=serial"])
    assert (cfg.execution.backend, cfg.execution.n_jobs) == ("serial", 1)


def test_overriding_the_backend_drops_the_file_dask_address(tmp_path):
    path = write(tmp_path, DASK_AT)
    with pytest.warns(
        OverrideWarning,
        match=re.escape(
            f"execution.address tcp://10.0.0.5:8786 from {path} dropped: backend threads, "
            f"set by an override, does not use it"
        ),
    ):
        cfg = load_config(path, ["execution.backend=threads"])
    assert (cfg.execution.backend, cfg.execution.n_jobs, cfg.execution.address) == (
        "threads",
        4,
        None,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["execution.backend=threads"],
        ["execution.backend=processes", "execution.n_jobs=1"],
        ["execution.backend=serial", "execution.n_jobs=1"],
        ["train.lr=0.1"],
    ],
)
def test_overrides_that_need_no_change_warn_nothing(overrides):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", OverrideWarning)
        cfg = load_config(DIGITS, overrides)
    assert cfg.execution.n_jobs in (1, 2)


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        # Typed on the command line: still a contradiction.
        (
            None,
            ["execution.backend=serial", "execution.n_jobs=2"],
            [
                "--set execution.n_jobs: execution.n_jobs must be 1 or null for backend serial, which "
                "runs one trial at a time, got 2 (int); choose backend threads or processes to run "
                "trials in parallel"
            ],
        ),
        (
            DASK_AT,
            ["execution.backend=threads", "execution.address=tcp://h:1"],
            [
                "--set execution.address: execution.address must be null unless execution.backend is "
                "dask, got 'tcp://h:1' (str)"
            ],
        ),
        # Written in the file: an error of the file.
        (
            "name: x\nexecution: {backend: serial, n_jobs: 3}\n",
            [],
            [
                "{file}: execution.n_jobs must be 1 or null for backend serial, which runs one trial at "
                "a time, got 3 (int); choose backend threads or processes to run trials in parallel"
            ],
        ),
        (
            "name: x\nexecution: {backend: serial, n_jobs: -1}\n",
            [],
            [
                "{file}: execution.n_jobs must be 1 or null for backend serial, which runs one trial at "
                "a time, got -1 (int); choose backend threads or processes to run trials in parallel"
            ],
        ),
        (
            "name: x\nexecution: {connect_timeout: 0}\n",
            [],
            ["{file}: execution.connect_timeout must be a number in (0, 600], got 0 (int)"],
        ),
    ],
)
def test_execution_contradictions(tmp_path, text, overrides, expected):
    path = DIGITS if text is None else write(tmp_path, text)
    assert errors_of(path, overrides) == [line.replace("{file}", path) for line in expected]


def test_connect_timeout_defaults_to_ten_seconds():
    assert config_from_dict({"name": "x"}).execution.connect_timeout == 10.0
