"""Search spaces -> trials: grids and random search, seeds and stable keys.

A space is what scikit-learn's ``ParameterGrid`` and ``ParameterSampler``
take: a dict mapping parameter names to lists of candidates (a grid), a list
of such dicts, or dicts whose values may also be ``scipy.stats`` frozen
distributions (random search, with ``n_iter``). Expansion is delegated to
those two classes; this module adds what a distributed sweep needs on top:

- every trial gets a *key*, a short hash of its parameters and repeat index,
  stable across processes, machines and Python runs (never ``hash()``, which
  is salted per process);
- every trial gets a *seed* derived from ``random_state`` and its key through
  ``np.random.SeedSequence``, so a trial's seed does not depend on the
  backend, ``n_jobs`` or the order in which trials finish.
"""

import hashlib
import itertools
import json
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Trial",
    "expand_space",
    "grid_configurations",
    "trial_key",
    "trial_seed",
    "canonical_json",
]

# 16 hex digits = 64 bits: collisions are out of reach for any sweep size
# (birthday bound ~4e9 trials) while keys stay short enough to read in a log.
_KEY_HEX_DIGITS = 16


@dataclass(frozen=True)
class Trial:
    """One unit of work of a sweep: a configuration, a repeat index and a seed.

    Parameters
    ----------
    key : str
        Stable short hash of ``params`` and ``repeat`` (see :func:`trial_key`).
    params : dict
        The configuration, with JSON-compatible values (Python scalars,
        strings, None, lists and dicts).
    repeat : int
        Index of this repetition of the configuration, ``0 <= repeat < seeds``.
    seed : int
        Seed for the trial's random number generators, derived from the
        sweep's ``random_state`` and ``key`` (see :func:`trial_seed`).
    """

    key: str
    params: dict
    repeat: int
    seed: int


def _jsonable(value, *, where):
    """Return ``value`` with tuples as lists and NumPy scalars as Python scalars."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where=where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v, where=where) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be str, got {k!r} ({type(k).__name__})")
            out[k] = _jsonable(v, where=where)
        return out
    raise TypeError(
        f"{where} must be JSON-compatible (str, int, float, bool, None, lists "
        f"or dicts of those), got {value!r} ({type(value).__name__}); pass a "
        "name or a number and build the object inside fn"
    )


def canonical_json(value):
    """Return the canonical JSON text of ``value``: sorted keys, no spaces.

    Tuples become lists and NumPy scalars Python scalars, so equal
    configurations give equal text whatever types they were written with.

    Parameters
    ----------
    value : object
        JSON-compatible data.

    Returns
    -------
    text : str
    """
    return json.dumps(_jsonable(value, where="value"), sort_keys=True, separators=(",", ":"))


def trial_key(params, repeat=0):
    """Return the stable key of a configuration and repeat index.

    The key is the first 16 hex digits of the SHA-1 of the canonical JSON of
    ``{"params": params, "repeat": repeat}``; it is the same in every process
    and every Python run.

    Parameters
    ----------
    params : dict
        The configuration.
    repeat : int, default=0
        The repeat index.

    Returns
    -------
    key : str

    Examples
    --------
    >>> from mlpar.space import trial_key
    >>> trial_key({"lr": 0.1, "hidden": (32, 32)})
    'e5f533aff1dc0531'
    >>> trial_key({"hidden": [32, 32], "lr": 0.1}) == trial_key({"lr": 0.1, "hidden": (32, 32)})
    True
    """
    text = canonical_json({"params": params, "repeat": int(repeat)})
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:_KEY_HEX_DIGITS]


def trial_seed(random_state, key):
    """Return the seed of the trial with ``key`` in a sweep seeded with ``random_state``.

    ``np.random.SeedSequence`` mixes both numbers so that nearby
    ``random_state`` values or keys still give independent streams.

    Parameters
    ----------
    random_state : int
        The sweep's seed, ``>= 0``.
    key : str
        The trial's key (hex digits).

    Returns
    -------
    seed : int
        A number in ``[0, 2**32)``, ready for ``np.random.default_rng``.
    """
    sequence = np.random.SeedSequence([int(random_state), int(key, 16)])
    return int(sequence.generate_state(1)[0])


def _check_space(space):
    """Return ``space`` as a list of dicts, raising on anything malformed."""
    grids = [space] if isinstance(space, Mapping) else space
    if not isinstance(grids, (list, tuple)):
        raise TypeError(
            "space must be a dict of parameter lists or distributions, or a list "
            f"of such dicts, got {type(space).__name__}"
        )
    if len(grids) == 0:
        raise ValueError("space is an empty list; give at least one dict of parameters")
    checked = []
    for i, grid in enumerate(grids):
        where = "space" if isinstance(space, Mapping) else f"space[{i}]"
        if not isinstance(grid, Mapping):
            raise TypeError(f"{where} must be a dict, got {type(grid).__name__}")
        if len(grid) == 0:
            raise ValueError(f"{where} is empty; give at least one parameter")
        out = {}
        for name, values in grid.items():
            if not isinstance(name, str):
                raise TypeError(f"{where}: parameter names must be str, got {name!r}")
            if hasattr(values, "rvs"):
                out[name] = values
                continue
            if isinstance(values, np.ndarray) and values.ndim == 1:
                values = values.tolist()
            if not isinstance(values, (list, tuple)):
                raise TypeError(
                    f"{where}[{name!r}] must be a list of candidates or a "
                    f"scipy.stats distribution, got {values!r} "
                    f"({type(values).__name__}); wrap a single value in a list: [{values!r}]"
                )
            if len(values) == 0:
                raise ValueError(f"{where}[{name!r}] is an empty list; give at least one candidate")
            out[name] = [_jsonable(v, where=f"{where}[{name!r}]") for v in values]
        checked.append(out)
    return checked


def expand_space(space, *, n_iter=None, seeds=1, random_state=0):
    """Expand a search space into the list of trials of a sweep.

    Parameters
    ----------
    space : dict or list of dict
        Maps parameter names to a list of candidates, or to a ``scipy.stats``
        frozen distribution (anything with ``rvs``). A list of dicts is a union
        of spaces, as in scikit-learn's ``ParameterGrid``.
    n_iter : int, default=None
        Number of configurations to sample (random search, through
        ``ParameterSampler``). Required when the space holds distributions.
        When every value is a list, configurations are sampled from the grid
        without replacement; None runs the whole grid.
    seeds : int, default=1
        Number of repeats of every configuration, each with its own seed.
    random_state : int, default=0
        Seeds random search sampling and every trial's seed, so the same
        arguments give the same trials in every process.

    Returns
    -------
    trials : list of Trial
        Configuration-major: the repeats of a configuration are adjacent.
        Duplicate configurations (overlapping grids, a discrete sampler
        drawing the same point twice) are kept once, with a warning.

    Raises
    ------
    TypeError
        If the space, a parameter name or a candidate has the wrong type.
    ValueError
        If the space or a candidate list is empty, if ``n_iter`` is missing
        while the space holds distributions, or if ``n_iter``, ``seeds`` or
        ``random_state`` is out of range.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from mlpar.space import expand_space
    >>> trials = expand_space({"lr": [0.01, 0.1], "hidden": [[32], [64]]}, seeds=2)
    >>> len(trials), trials[0].params, trials[0].repeat, trials[1].repeat
    (8, {'hidden': [32], 'lr': 0.01}, 0, 1)
    >>> trials = expand_space({"lr": loguniform(1e-4, 1e-1)}, n_iter=5, random_state=0)
    >>> len(trials)
    5
    """
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if (
        isinstance(random_state, bool)
        or not isinstance(random_state, numbers.Integral)
        or random_state < 0
    ):
        raise ValueError(
            f"random_state must be a non-negative integer, got {random_state!r}; "
            "a sweep needs a fixed seed to be reproducible and resumable"
        )
    if n_iter is not None and (
        isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1
    ):
        raise ValueError(f"n_iter must be a positive integer or None, got {n_iter!r}")

    grids = _check_space(space)
    has_distributions = any(hasattr(v, "rvs") for g in grids for v in g.values())
    if has_distributions and n_iter is None:
        names = sorted(k for g in grids for k, v in g.items() if hasattr(v, "rvs"))
        raise ValueError(
            f"space holds distributions ({', '.join(names)}) but n_iter is None; "
            "pass n_iter=<number of configurations to sample>"
        )
    if n_iter is None:
        configs = list(grid_configurations(grids))
    else:
        # Imported here: scikit-learn (and SciPy with it) takes ~2 s to import,
        # which a grid sweep, and every worker, does not need to pay.
        from sklearn.model_selection import ParameterSampler

        sampler = ParameterSampler(grids, n_iter, random_state=int(random_state))
        configs = list(sampler)

    unique, seen = [], set()
    for params in configs:
        # Sampled values come back as NumPy scalars; fn and the journal get
        # plain Python values, so a resumed sweep compares equal.
        params = _jsonable(dict(params), where="sampled parameters")
        text = canonical_json(params)
        if text not in seen:
            seen.add(text)
            unique.append(params)
    if len(unique) < len(configs):
        warnings.warn(
            f"space gave {len(configs)} configurations of which "
            f"{len(configs) - len(unique)} are duplicates; running the "
            f"{len(unique)} distinct ones",
            UserWarning,
            stacklevel=2,
        )

    trials = []
    for params in unique:
        for repeat in range(int(seeds)):
            key = trial_key(params, repeat)
            trials.append(Trial(key, params, repeat, trial_seed(random_state, key)))
    return trials


def grid_configurations(grids):
    """Every configuration of a grid (or a list of grids), in ``ParameterGrid``'s order.

    scikit-learn's ``ParameterGrid`` order exactly (names sorted, the last one
    varying fastest, grids one after another), without importing scikit-learn.
    """
    for grid in grids:
        names = sorted(grid)
        for values in itertools.product(*(grid[name] for name in names)):
            yield dict(zip(names, values))


def fingerprint(trials):
    """Return a short hash identifying a list of trials (their keys, in order)."""
    digest = hashlib.sha1()
    for trial in trials:
        digest.update(trial.key.encode("ascii"))
    return digest.hexdigest()[:_KEY_HEX_DIGITS]
