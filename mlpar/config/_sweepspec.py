"""The ``sweep.params`` part of a config: grids, distributions, and their checks.

Every swept value is checked by the same :class:`~mlpar._checks.Check` as the
setting it sweeps: each grid value, each ``choice`` value and both bounds of a
distribution. The checks of settings that depend on one another (a generator
parameter and the dataset; the validation and test fractions) run here too,
over every value a sweep can give them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._checks import (INVALID, Check, Int, OneOf, Problem, numpy_type, as_number, plain, show,
                      unknown_key)

__all__ = ["Distribution"]

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")

_VALUES = "a non-empty list of values or a distribution such as {loguniform: [low, high]}"


@dataclass(frozen=True)
class Distribution:
    """A distribution that random search draws one parameter from.

    Parameters
    ----------
    kind : {"loguniform", "uniform", "randint", "choice"}
        ``loguniform`` and ``uniform`` draw floats in ``[low, high]``;
        ``randint`` draws integers in ``[low, high]``, both ends included;
        ``choice`` draws one of its values, each equally likely.
    args : tuple
        ``(low, high)``, or the values of ``choice``.
    """

    kind: str
    args: tuple

    def frozen(self):
        """The object :class:`sklearn.model_selection.ParameterSampler` samples.

        Returns
        -------
        scipy.stats frozen distribution or list
            ``loguniform(low, high)``, ``uniform(low, high - low)``,
            ``randint(low, high + 1)``, or the list of ``choice`` values.
        """
        if self.kind == "choice":
            return [plain(v) for v in self.args]
        from scipy import stats  # imported here: scipy.stats takes a while to import

        low, high = self.args
        if self.kind == "loguniform":
            return stats.loguniform(low, high)
        if self.kind == "uniform":
            return stats.uniform(low, high - low)
        return stats.randint(low, high + 1)

    def to_yaml(self) -> dict:
        """The YAML form, e.g. ``{"loguniform": [1e-05, 0.01]}``."""
        return {self.kind: [plain(v) for v in self.args]}


def params_to_yaml(grids):
    """The YAML form of checked grids: a mapping for one grid, a list for several."""
    out = [{name: (v.to_yaml() if isinstance(v, Distribution) else plain(v))
            for name, v in grid} for grid in grids]
    return out[0] if len(out) == 1 else out


def search_space(grids):
    """The search space of checked grids for ``ParameterGrid`` / ``ParameterSampler``."""
    out = [{name: (v.frozen() if isinstance(v, Distribution) else plain(v))
            for name, v in grid} for grid in grids]
    if not out:
        return {}
    return out[0] if len(out) == 1 else out


def has_distribution(value) -> bool:
    """Whether raw or checked ``sweep.params`` ask for random search."""
    grids = value if isinstance(value, (list, tuple)) else [value]
    for grid in grids:
        pairs = grid.items() if isinstance(grid, Mapping) else (
            grid if isinstance(grid, tuple) else ())
        for pair in pairs:
            v = pair[1] if isinstance(pair, tuple) and len(pair) == 2 else None
            if isinstance(v, (Mapping, Distribution)):
                return True
    return False


def n_configurations(grids) -> int:
    """How many configurations a grid search over checked grids has."""
    total = 0
    for grid in grids:
        size = 1
        for _, values in grid:
            size *= len(values)
        total += size
    return total if grids else 1


def _is_checked_form(value) -> bool:
    # SweepConfig(params=...) may receive its own checked form back (a tuple of
    # grids, each a tuple of (name, values) pairs), e.g. from dataclasses.replace.
    return isinstance(value, tuple) and all(
        isinstance(g, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in g)
        for g in value)


class SweepParams(Check):
    """Checks ``sweep.params``: a grid (mapping) or a non-empty list of grids.

    ``checks`` is a function returning ``{trial parameter name: Check}``.
    The checked form is a tuple of grids, each a tuple of ``(name, values)``
    pairs, where ``values`` is a tuple (grid values) or a :class:`Distribution`.
    """

    nullable = True

    def __init__(self, checks):
        self.checks = checks

    def __call__(self, value):  # pragma: no cover - sections use collect()
        raise NotImplementedError("SweepParams reports through collect()")

    def collect(self, value, path, problems):
        if value is None:
            return ()
        if _is_checked_form(value):
            value = params_to_yaml(value) if value else None
            if value is None:
                return ()
        n_before = len(problems)
        expected = ("must be a mapping of parameter names to values, or a non-empty list "
                    "of such mappings")
        if isinstance(value, Mapping):
            grids, paths = [value], [path]
        elif isinstance(value, (list, tuple)) and value:
            grids, paths = list(value), [f"{path}[{i}]" for i in range(len(value))]
        else:
            problems.append(Problem(path, f"{path} {expected}, got {show(value)}",
                                    TypeError if not isinstance(value, list) else ValueError))
            return INVALID
        checks = self.checks()
        out = []
        for grid, gpath in zip(grids, paths):
            if not isinstance(grid, Mapping) or not grid:
                problems.append(Problem(gpath, (
                    f"{gpath} must be a non-empty mapping of parameter names to values "
                    f"(leave sweep.params out to run one configuration), got {show(grid)}"),
                    TypeError if not isinstance(grid, Mapping) else ValueError))
                continue
            items = []
            for name, raw in grid.items():
                if name not in checks:
                    problems.append(unknown_key(gpath, name, tuple(checks)))
                    continue
                v = self._values(name, raw, f"{gpath}.{name}", checks[name], problems)
                if v is not INVALID:
                    items.append((name, v))
            if "hidden" in grid and ("units" in grid or "layers" in grid):
                problems.append(Problem(f"{gpath}.hidden", (
                    f"{gpath}.hidden must not be swept together with units or layers "
                    f"(they set hidden = [units] * layers), got {show(grid['hidden'])}")))
            out.append(tuple(items))
        return INVALID if len(problems) > n_before else tuple(out)

    def _values(self, name, raw, path, check, problems):
        if isinstance(raw, Distribution):
            raw = raw.to_yaml()
        if isinstance(raw, numpy_type("ndarray")) and raw.ndim == 1:
            raw = raw.tolist()
        if isinstance(raw, Mapping):
            return self._distribution(name, raw, path, check, problems)
        if not isinstance(raw, (list, tuple)) or not raw:
            hint = (f"; write [{raw!r}] for a single value"
                    if isinstance(raw, (int, float, str)) else "")
            problems.append(Problem(path, f"{path} must be {_VALUES}, got {show(raw)}{hint}",
                                    ValueError if isinstance(raw, (list, tuple)) else TypeError))
            return INVALID
        return _each(check, raw, path, problems)

    def _distribution(self, name, raw, path, check, problems):
        if len(raw) != 1:
            problems.append(Problem(path, (
                f"{path} must be a mapping with exactly one distribution "
                f"({', '.join(DISTRIBUTIONS)}), got {show(dict(raw))}")))
            return INVALID
        ((kind, args),) = raw.items()
        if kind not in DISTRIBUTIONS:
            problems.append(unknown_key(path, kind, DISTRIBUTIONS))
            return INVALID
        dpath = f"{path}.{kind}"
        if kind == "choice":
            if not isinstance(args, (list, tuple)) or not args:
                problems.append(Problem(dpath, (
                    f"{dpath} must be a non-empty list of values, got {show(args)}")))
                return INVALID
            values = _each(check, args, dpath, problems)
            return INVALID if values is INVALID else Distribution("choice", values)
        if check.numeric is None:
            problems.append(Problem(path, (
                f"{path} must be a list of values or {{choice: [...]}} ({name} is not "
                f"numeric), got {show(dict(raw))}")))
            return INVALID
        if check.numeric == "int" and kind != "randint":
            problems.append(Problem(path, (
                f"{path} must be a list of values, {{randint: [low, high]}} or "
                f"{{choice: [...]}} ({name} is an integer; {kind} draws floats), "
                f"got {show(dict(raw))}")))
            return INVALID
        bounds = _bounds(kind, args)
        if bounds is None:
            rule = {"loguniform": "[low, high] with 0 < low < high",
                    "uniform": "[low, high] with low < high",
                    "randint": "[low, high], two integers with low <= high"}[kind]
            problems.append(Problem(dpath, f"{dpath} must be {rule}, got {show(args)}"))
            return INVALID
        n_before = len(problems)
        checked = [check.collect(b, f"{dpath}[{i}]", problems) for i, b in enumerate(bounds)]
        if len(problems) > n_before:
            return INVALID
        # randint keeps integer bounds even for a float setting (e.g. noise).
        return Distribution(kind, tuple(bounds) if kind == "randint" else tuple(checked))


def _each(check, raw, path, problems):
    n_before = len(problems)
    values = tuple(check.collect(v, f"{path}[{i}]", problems) for i, v in enumerate(raw))
    return INVALID if len(problems) > n_before else values


def _bounds(kind, args):
    """``[low, high]`` as numbers if they fit ``kind``'s rule, else None."""
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        return None
    low, high = (as_number(a) for a in args)
    if low is None or high is None:
        return None
    if kind == "randint":
        ok = isinstance(low, int) and isinstance(high, int) and low <= high
    else:
        ok = low < high and (kind == "uniform" or low > 0)
    return [low, high] if ok else None


# ---------------------------------------------------------------- consistency

GENERATOR_PARAMS = ("n_samples", "n_features", "n_classes", "noise")


def candidates(fixed, grid, grid_path):
    """Every value a setting can take in one grid: ``{name: [(value, label), ...]}``.

    Fixed settings give one value labelled ``data.<name>``; swept ones give
    their grid values or ``choice`` values, or the bounds of a distribution.
    """
    cands = {name: [(value, f"data.{name}")] for name, value in fixed.items()}
    # A swept setting replaces the fixed one, whose own check may have failed.
    for name, values in grid:
        if name not in GENERATOR_PARAMS + ("dataset", "val_fraction", "test_fraction"):
            continue
        path = f"{grid_path}.{name}"
        if isinstance(values, Distribution):
            path = f"{path}.{values.kind}"
            values = values.args
        cands[name] = [(v, f"{path}[{i}]") for i, v in enumerate(values)]
    return cands


def data_problems(cands):
    """Problems between data settings, as ``(label, expected, value)`` triples.

    ``cands`` maps each data setting to the values it can take, each with the
    label its message names it by (see :func:`candidates`).
    """
    from ..data import DATASETS  # imported here: config is loaded before data is needed

    found = []
    for dataset, _ in cands.get("dataset", ()):
        accepted = DATASETS[dataset][2] if dataset in DATASETS else ()
        takes = (f"it takes only {', '.join(accepted)}" if accepted
                 else "it takes no size parameters")
        for param in GENERATOR_PARAMS:
            for value, label in cands.get(param, ()):
                if value is None:
                    continue
                if param not in accepted:
                    found.append((label, f"must be null for dataset {dataset!r} ({takes})",
                                  value))
                elif param == "noise" and dataset == "classification" and value > 1:
                    found.append((label, "must be at most 1 for dataset 'classification' "
                                         "(the fraction of flipped labels)", value))
    for test, test_label in cands.get("test_fraction", ()):
        for val, val_label in cands.get("val_fraction", ()):
            if val + test >= 1:
                found.append((test_label, f"must be less than 1 - {val_label} = "
                                          f"{1 - val:.6g}", test))
    unique = []
    for item in found:
        if item[:2] not in [u[:2] for u in unique]:
            unique.append(item)
    return unique



# ---------------------------------------------------------------- halving

HALVING_MODES = ("sync", "async")  # async: ASHA
#: The metrics of train_mlp that can rank configurations, with their direction.
HALVING_METRICS = {"val_score": "max", "test_score": "max", "loss": "min", "best_loss": "min"}


@dataclass(frozen=True)
class HalvingConfig:
    """The checked ``sweep.halving`` section (see :func:`mlpar.halving.successive_halving`).

    ``metric_mode`` None means the metric's known direction (``max`` for
    scores, ``min`` for losses).
    """

    mode: str = "sync"
    resource: str = "epochs"
    min_resource: object = None
    max_resource: object = None
    factor: int = 3
    metric: str = "val_score"
    metric_mode: str | None = None

    @property
    def direction(self):
        """``metric_mode``, or the known direction of ``metric``."""
        return self.metric_mode or HALVING_METRICS[self.metric]

    def to_yaml(self) -> dict:
        """The YAML form: a mapping of every key."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class HalvingSpec(Check):
    """Checks ``sweep.halving``: null, or a mapping of :class:`HalvingConfig`'s keys.

    ``checks`` is a function returning ``{trial parameter name: Check}``: the
    resource must be a numeric one, and its bounds pass its check.
    """

    nullable = True
    _KEYS = tuple(HalvingConfig.__dataclass_fields__)

    def __init__(self, checks):
        self.checks = checks

    def __call__(self, value):  # pragma: no cover - sections use collect()
        raise NotImplementedError("HalvingSpec reports through collect()")

    def collect(self, value, path, problems):
        if value is None or isinstance(value, HalvingConfig):
            return value
        if not isinstance(value, Mapping):
            problems.append(Problem(path, f"{path} must be a mapping with keys "
                                          f"{', '.join(self._KEYS)}, got {show(value)}",
                                    TypeError))
            return INVALID
        n_before = len(problems)
        problems.extend(unknown_key(path, k, self._KEYS) for k in value if k not in self._KEYS)
        raw = {**HalvingConfig().to_yaml(), **{k: v for k, v in value.items()
                                                if k in self._KEYS}}
        out = {k: self._one(k, raw[k], f"{path}.{k}", raw, problems) for k in self._KEYS}
        low, high = out["min_resource"], out["max_resource"]
        if INVALID not in (low, high) and low > high:
            problems.append(Problem(f"{path}.min_resource", (
                f"{path}.min_resource must be at most {path}.max_resource ({high!r}), "
                f"got {show(low)}")))
        return INVALID if len(problems) > n_before else HalvingConfig(**out)

    def _one(self, key, value, path, raw, problems):
        if key == "mode":
            return OneOf(lambda: HALVING_MODES).collect(value, path, problems)
        if key == "resource":
            numeric = tuple(n for n, c in self.checks().items() if c.numeric is not None)
            return OneOf(lambda: numeric).collect(value, path, problems)
        if key in ("min_resource", "max_resource"):
            resource = raw["resource"]  # any YAML value; an unhashable one names no parameter
            check = self.checks().get(resource) if isinstance(resource, str) else None
            if value is None:
                problems.append(Problem(path, f"{path} is missing; it must be the "
                                              f"{raw['resource']} of the first rung"
                                        if key == "min_resource" else
                                        f"{path} is missing; it must be the most "
                                        f"{raw['resource']} a rung gets"))
                return INVALID
            if check is None or check.numeric is None:
                return INVALID  # the resource's own problem is reported
            return check.collect(value, path, problems)
        if key == "factor":
            return Int(2, 1000).collect(value, path, problems)
        if key == "metric":
            return OneOf(lambda: tuple(HALVING_METRICS)).collect(value, path, problems)
        return OneOf(lambda: ("max", "min"), nullable=True).collect(value, path, problems)
