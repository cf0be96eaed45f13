"""Experiment configs: YAML files -> validated, frozen dataclasses.

A config file has a ``name`` and seven sections, each a dataclass below:
``data`` (:class:`DataConfig`), ``model`` (:class:`ModelConfig`), ``train``
(:class:`TrainConfig`), ``sweep`` (:class:`SweepConfig`), ``execution``
(:class:`ExecutionConfig`), ``compare`` (:class:`CompareConfig`) and
``output`` (:class:`OutputConfig`). Every key is optional except ``name``;
the defaults live in the dataclass fields, each with a comment, and nowhere
else. ``configs/`` holds complete examples.

``sweep.params`` is a grid (a mapping) or a list of grids. Its keys are flat
trial parameter names (:data:`TRIAL_PARAM_NAMES`: any field of data, model or
train, plus ``units`` and ``layers``, which set ``hidden = [units] * layers``).
A value is a list of values, or a distribution for random search::

    sweep:
      params:
        lr: {loguniform: [1.0e-4, 1.0e-2]}    # 0 < low < high
        alpha: {uniform: [0.0, 1.0e-3]}        # low < high
        units: {randint: [16, 256]}            # integers, both ends included
        batch_size: {choice: [32, 64, 128]}    # one of the values
      n_iter: 12                               # required when a distribution is present

A swept parameter replaces the fixed value of the same name for every trial
(so a key may be both fixed and swept: the sweep wins). Every swept value is
checked like the fixed setting it replaces.

Files are read with YAML's safe loader only, and a key given twice in a mapping
is an error (plain YAML would keep the last). Every error in a file is reported
at once, one line each, naming the file, the key path, what was expected and
what was found::

    configs/sweep.yaml: train.batch_size must be a positive integer, got -3 (int)
    configs/sweep.yaml: unknown key model.hiden; did you mean model.hidden?
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ._checks import INVALID, OverrideWarning, Problem, closest, plain, printable, show, unknown_key
from ._schema import (NAME, NESTED, SCHEMA, SECTIONS, TOP_KEYS, TRIAL_CHECKS, TRIAL_PARAM_NAMES,
                      CompareConfig, DataConfig, ExecutionConfig, ModelConfig, OutputConfig,
                      SweepConfig, TrainConfig, settings)
from ._sweepspec import (Distribution, HalvingConfig, candidates, data_problems, params_to_yaml,
                         search_space)
# ._yaml (and PyYAML) load when a file or override is read: workers check trial
# parameters with this package and need not pay PyYAML's imports.

__all__ = [
    "ConfigError", "ExperimentConfig", "DataConfig", "ModelConfig", "TrainConfig",
    "SweepConfig", "ExecutionConfig", "CompareConfig", "OutputConfig", "TrialSettings",
    "Distribution", "TRIAL_PARAM_NAMES", "load_config", "config_from_dict", "parse_override",
    "resolve_trial_params", "OverrideWarning", "HalvingConfig",
]


class ConfigError(ValueError):
    """A config that cannot be used; ``errors`` holds one line per problem.

    A ``ValueError``, so code that catches bad values catches bad configs too.
    """

    def __init__(self, errors):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__(self.errors)

    def __str__(self):
        return "\n".join(self.errors)


def _cross_problems(data, grids):
    """Problems between the data settings and every grid of the sweep.

    ``data`` maps data field names to values (INVALID ones are skipped);
    ``grids`` is the checked ``sweep.params``.
    """
    fixed = {name: value for name, value in data.items() if value is not INVALID}
    grids = grids or ((),)
    problems = []
    for i, grid in enumerate(grids):
        grid_path = "sweep.params" if len(grids) == 1 else f"sweep.params[{i}]"
        for label, expected, value in data_problems(candidates(fixed, grid, grid_path)):
            message = f"{label} {expected}, got {show(value)}"
            if message not in [p.message for p in problems]:
                problems.append(Problem(label, message))
    return problems


def _group_by_problems(group_by, grids):
    """compare.group_by may only name parameters every grid sweeps as a list."""
    if group_by is INVALID or not group_by:
        return []
    problems = []
    for name in group_by:
        found = [dict(grid).get(name) for grid in grids] if grids else []
        if not found:
            got = "no sweep"
        elif any(v is None for v in found):
            got = "a grid without it"
        elif any(not isinstance(v, (list, tuple)) for v in found):
            got = "a distribution"
        else:
            continue
        problems.append(Problem(
            "compare.group_by", f"compare.group_by names {name}, which must be swept as a "
            f"list of values in every grid of sweep.params, got {got}"))
    return problems


def _values(section):
    return {f.name: getattr(section, f.name) for f in settings(type(section))}


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: what to train, what to sweep, where to run it.

    Build one with :func:`load_config` or :func:`config_from_dict`; the
    sections check their values when constructed, so an instance is always valid.

    Parameters
    ----------
    name : str
        Names the run folder ``<output.folder>/<name>/<timestamp>/``.
    data, model, train, sweep, execution, compare, output : section dataclasses
        The sections; each defaults to its dataclass's defaults.
    source : str, default="<dict>"
        Where the config came from (a file path), for messages. Not compared.
    """

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = field(default="<dict>", compare=False)

    def __post_init__(self):
        problems = []
        name = NAME.collect(self.name, "name", problems)
        if name is not INVALID:
            object.__setattr__(self, "name", name)
        for key, cls in SECTIONS.items():
            if not isinstance(getattr(self, key), cls):
                problems.append(Problem(key, f"{key} must be a {cls.__name__}, got "
                                             f"{show(getattr(self, key))}", TypeError))
        if not problems:
            problems = _cross_problems(_values(self.data), self.sweep.params)
        if problems:
            raise ConfigError([f"{printable(str(self.source))}: {p.message}" for p in problems])

    @property
    def is_random_search(self) -> bool:
        """Whether the sweep draws from distributions (then ``sweep.n_iter`` is set)."""
        return self.sweep.is_random_search

    def to_dict(self) -> dict:
        """The fully resolved config as plain dicts, lists and scalars (YAML-ready)."""
        out = {"name": self.name}
        for key in SECTIONS:
            section = getattr(self, key)
            out[key] = {f.name: plain(getattr(section, f.name)) for f in settings(type(section))}
        out["sweep"]["params"] = params_to_yaml(self.sweep.params) if self.sweep.params else None
        out["sweep"]["halving"] = self.sweep.halving and self.sweep.halving.to_yaml()
        out["sweep"]["sampler"] = self.sweep.sampler and self.sweep.sampler.to_yaml()
        return out

    def to_yaml(self) -> str:
        """The fully resolved config as YAML; :func:`load_config` reads it back equal."""
        from ._yaml import dump_yaml

        return dump_yaml(self.to_dict())

    def trial_base(self) -> dict:
        """The fixed parameters of every trial: all data, model and train fields, flat."""
        return {f.name: plain(getattr(getattr(self, key), f.name))
                for key in ("data", "model", "train") for f in settings(SECTIONS[key])}

    def search_space(self):
        """The search space for ``mlpar.sweep`` (and scikit-learn's samplers).

        Returns
        -------
        dict or list of dict
            One mapping per grid (a single grid is returned as a mapping):
            lists stay lists, distributions become ``scipy.stats`` frozen
            distributions (``choice`` becomes its list). ``{}`` without a sweep.
        """
        return search_space(self.sweep.params)


@dataclass(frozen=True)
class TrialSettings:
    """The resolved settings of one trial (see :func:`resolve_trial_params`)."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def __post_init__(self):
        for key in ("data", "model", "train"):
            if not isinstance(getattr(self, key), SECTIONS[key]):
                raise TypeError(f"TrialSettings.{key} must be a {SECTIONS[key].__name__}, "
                                f"got {show(getattr(self, key))}")
        problems = _cross_problems(_values(self.data), ())
        if problems:
            raise ValueError(problems[0].message)


def _default(cls, name):
    return next(f.default for f in fields(cls) if f.name == name)


def resolve_trial_params(params) -> TrialSettings:
    """The settings of one trial, from flat trial parameters.

    Parameters
    ----------
    params : mapping
        Flat trial parameters (:data:`TRIAL_PARAM_NAMES`), e.g. ``{"lr": 0.01,
        "hidden": [64, 64]}``; missing ones take the defaults of the config
        dataclasses. ``units`` and ``layers`` set ``hidden = [units] * layers``
        and win over ``hidden``, which gives the one not set (its first width,
        its number of layers). NumPy scalars (from random search) are accepted.

    Returns
    -------
    TrialSettings

    Raises
    ------
    ValueError
        For an unknown parameter (with a did-you-mean) or a bad value.
    TypeError
        For a value of the wrong type.

    Examples
    --------
    >>> resolve_trial_params({"units": 32, "layers": 2}).model.hidden
    (32, 32)
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"trial parameters must be a mapping of parameter names to values, "
                        f"got {show(params)}")
    values = {}
    for key, raw in params.items():
        if key not in TRIAL_CHECKS:
            match = closest(key, TRIAL_PARAM_NAMES)
            hint = f" did you mean {match!r}?" if match else ""
            raise ValueError(f"unknown trial parameter {key!r};{hint} valid: "
                             f"{', '.join(TRIAL_PARAM_NAMES)}")
        problems = []
        values[key] = TRIAL_CHECKS[key].collect(raw, key, problems)
        if problems:
            raise problems[0].kind(f"trial parameter {problems[0].message}")
    units, layers = values.pop("units", None), values.pop("layers", None)
    if units is not None or layers is not None:
        hidden = values.get("hidden", _default(ModelConfig, "hidden"))
        values["hidden"] = (units or hidden[0],) * (layers or len(hidden))
    sections = {key: {f.name: values[f.name] for f in settings(cls) if f.name in values}
                for key, cls in SECTIONS.items() if key in ("data", "model", "train")}
    data = DataConfig(**sections["data"])
    cands = {f.name: [(getattr(data, f.name), f.name)] for f in settings(DataConfig)}
    found = data_problems(cands)
    if found:
        label, expected, value = found[0]
        raise ValueError(f"trial parameter {label} {expected}, got {show(value)}")
    return TrialSettings(data, ModelConfig(**sections["model"]), TrainConfig(**sections["train"]))


def _load_section(cls, raw, path, problems):
    """A section from its raw mapping, or INVALID after appending its problems.

    Also returns the field values (INVALID for the failed ones), so that checks
    across sections still run on the fields that passed.
    """
    if raw is None:  # `data:` with nothing under it
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, f"{path} must be a mapping of {cls._what}, got {show(raw)}",
                                TypeError))
        return INVALID, {f.name: INVALID for f in settings(cls)}
    n_before = len(problems)
    checked = settings(cls)
    names = tuple(f.name for f in checked)
    problems.extend(unknown_key(path, key, names) for key in raw if key not in names)
    values = {f.name: (f.metadata["check"].collect(raw[f.name], f"{path}.{f.name}", problems)
                       if f.name in raw else f.default) for f in checked}
    cls._consistency(values, raw, path, problems)
    if len(problems) > n_before:
        return INVALID, values
    return cls(**{name: values[name] for name in names if name in raw}), values


def _source(path, label, overrides):
    """The file, or the ``--set`` override that set the value at ``path``."""
    # `--set sweep.params.lr=...` sets lr in every grid: sweep.params[1].lr included.
    path = re.sub(r"^sweep\.params\[\d+\]", "sweep.params", path)
    best = ""
    for dotted in overrides:
        if (path == dotted or path.startswith((dotted + ".", dotted + "["))) \
                and len(dotted) > len(best):
            best = dotted
    return f"--set {best}" if best else label


def _from_raw(raw, label, overrides=()):
    problems = []
    if not isinstance(raw, Mapping):
        problems.append(Problem("", f"the top level must be a mapping with keys "
                                    f"{', '.join(TOP_KEYS)}, got {show(raw)}", TypeError))
    else:
        problems.extend(unknown_key("", key, TOP_KEYS) for key in raw if key not in TOP_KEYS)
        if "name" in raw:
            name = NAME.collect(raw["name"], "name", problems)
        else:
            problems.append(Problem("name", f"name is missing; it {NAME.expected} "
                                            f"(it names the run folder)"))
        loaded = {key: _load_section(cls, raw.get(key), key, problems)
                  for key, cls in SECTIONS.items()}
        sections = {key: section for key, (section, _) in loaded.items()}
        grids = loaded["sweep"][1]["params"]
        if grids is not INVALID:
            problems.extend(_cross_problems(loaded["data"][1], grids))
            problems.extend(_group_by_problems(loaded["compare"][1].get("group_by"), grids))
    if problems:
        raise ConfigError([f"{_source(p.path, label, overrides)}: {p.message}"
                           for p in problems])
    return ExperimentConfig(name=name, **sections, source=label)


def parse_override(text):
    """Parse one ``--set`` override, ``KEY=VALUE``.

    Parameters
    ----------
    text : str
        E.g. ``"train.lr=0.01"`` or ``"model.hidden=[64, 64]"``. KEY is a key
        path of the schema (``sweep.params.<name>`` included); VALUE is YAML.

    Returns
    -------
    (tuple of str, object)
        The key path and the parsed value.

    Raises
    ------
    ConfigError
        For text without ``=``, an unknown key path (with a did-you-mean), or
        a value that is not valid YAML.
    """
    from ._yaml import parse_override_text

    path, value, error = parse_override_text(text, SCHEMA, TRIAL_PARAM_NAMES, NESTED)
    if error:
        raise ConfigError(error.splitlines())
    return path, value


def load_config(path, overrides=(), *, on_read=None) -> ExperimentConfig:
    """Read, override and validate a YAML config file.

    Parameters
    ----------
    path : str or os.PathLike
        The YAML file; messages name it as given.
    overrides : sequence of str, default=()
        ``KEY=VALUE`` overrides (the CLI's ``--set``), applied in order before
        validation; see :func:`parse_override`. ``sweep.params.<name>=...``
        applies to every grid, and ``=null`` there removes the name from the sweep.
        Overriding ``execution.backend`` drops what the file set for its own
        backend that the new one cannot take (``n_jobs`` for ``serial``,
        ``address`` for all but ``dask``) unless an override sets it too, with
        an :class:`OverrideWarning` for each.
    on_read : callable, optional
        Called with the file's ``execution`` mapping, overrides applied, before
        anything is validated (and before validation imports NumPy): ``mlpar
        run`` starts its fork server there. The values are unchecked.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        With one line per problem, all problems at once. Lines about a value an
        override set name ``--set <key>`` instead of the file.

    Examples
    --------
    >>> cfg = load_config("configs/quickstart.yaml", ["train.lr=0.01"])  # doctest: +SKIP
    >>> cfg.train.lr  # doctest: +SKIP
    0.01
    """
    from ._yaml import apply_override, parse_override_text, read_yaml_file, switch_backend

    if isinstance(overrides, str):
        overrides = [overrides]
    label = printable(os.fspath(path))
    parsed, errors = [], []
    for text in overrides:
        key_path, value, error = parse_override_text(text, SCHEMA, TRIAL_PARAM_NAMES, NESTED)
        if error:
            errors.extend(error.splitlines())  # one line per duplicate key
        else:
            parsed.append((key_path, value))
    raw, error = read_yaml_file(path, TOP_KEYS)
    if error or errors:
        # An override that failed could have fixed a value in the file:
        # report the failures, not what the file says without them.
        raise ConfigError((error.splitlines() if error else []) + errors)
    if isinstance(raw, dict):
        file_execution = copy.deepcopy(raw.get("execution"))
        for key_path, value in parsed:
            apply_override(raw, key_path, value)
        switch_backend(raw, file_execution, {p for p, _ in parsed}, label)
        if on_read is not None and isinstance(raw.get("execution", {}), Mapping):
            on_read(raw.get("execution", {}))
    return _from_raw(raw, label, overrides=[".".join(p) for p, _ in parsed])


def config_from_dict(mapping, *, source="<dict>") -> ExperimentConfig:
    """Validate a config given as a mapping (the parsed form of a YAML file).

    Parameters
    ----------
    mapping : mapping
        Same keys and values as a config file.
    source : str, default="<dict>"
        Names the config in error messages.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        With one line per problem, all problems at once.
    """
    return _from_raw(mapping, printable(str(source)))
