"""Value checks shared by config files, ``--set`` overrides and trial parameters.

One implementation, several entry points: each check takes a raw value and
returns it normalized (``1`` -> ``1.0`` for a float setting, ``64`` -> ``(64,)``
for ``hidden``), or raises :class:`Bad` saying what it expected. The caller
decides how to name the value (``configs/a.yaml: train.lr``, ``--set train.lr``,
``trial parameter lr``), so every entry point words its errors the same way.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import sys
from dataclasses import dataclass
from numbers import Integral, Real

__all__ = []

_SHOW = reprlib.Repr()
# Messages are one line: long or deeply nested values are cut, and YAML aliases
# can build self-referencing lists, which reprlib's depth limit also stops.
_SHOW.maxstring = 60
_SHOW.maxother = 60
_SHOW.maxlist = _SHOW.maxtuple = 6
_SHOW.maxdict = 4
_SHOW.maxlevel = 3


def numpy_type(name):
    """NumPy's type ``name`` if NumPy is loaded, else a type nothing is an instance of.

    Checking configs must not import NumPy (``mlpar run`` starts its fork
    server first), and a value cannot be NumPy's before NumPy is loaded.
    """
    np = sys.modules.get("numpy")
    return getattr(np, name) if np is not None else _NoNumpy


class _NoNumpy:
    pass


def _is_bool(v) -> bool:
    return isinstance(v, (bool, numpy_type("bool_")))


class OverrideWarning(UserWarning):
    """An override changed a setting the user did not name, as :func:`load_config` explains."""


def printable(text):
    """``text`` as messages name it: as is if printable, else escaped, so it stays one line."""
    return text if text.isprintable() else ascii(text)


def plain(value):
    """Tuples (how frozen configs keep lists) back to lists, recursively, for YAML and JSON."""
    return [plain(v) for v in value] if isinstance(value, tuple) else value


def show(value) -> str:
    """``value`` as messages print it: a short repr, then its type in parentheses."""
    # A NumPy scalar prints as the number it holds: NumPy 2 would print
    # np.float64(nan), NumPy 1 nan; the type in parentheses says it is NumPy's.
    shown = value.item() if isinstance(value, numpy_type("generic")) else value
    # ASCII escapes make look-alike characters visible ('\u0430lpha' is not 'alpha').
    text = _SHOW.repr(shown).encode("ascii", "backslashreplace").decode("ascii")
    return f"{text} ({type(value).__name__})"


def show_key(key) -> str:
    """A mapping key as a key path prints it: plain names bare, anything else escaped."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_]+", key):
        return key
    if isinstance(key, str):
        return ascii(key)
    return f"{_SHOW.repr(key)} ({type(key).__name__})"


def closest(word, options) -> str | None:
    """The option ``word`` most likely misspells, or None."""
    if not isinstance(word, str):
        word = str(word)
    lowered = {o.lower(): o for o in options}
    # 0.7, not difflib's 0.6: at 0.6 "mnist" would suggest "moons".
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[match[0]] if match else None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value: where it is and the message, minus the source."""

    path: str
    message: str
    kind: type = ValueError


class Bad(Exception):
    """Raised by a check: ``expected`` completes '<name> ...', e.g. 'must be true or false'.

    ``at`` is a sub-path ('[1]') when the offending value is inside the checked
    one, and ``value`` is then that inner value.
    """

    def __init__(self, expected, *, kind=ValueError, at="", value=None, has_value=False, hint=""):
        super().__init__(expected)
        self.expected = expected
        self.kind = kind
        self.at = at
        self.value = value
        self.has_value = has_value
        self.hint = hint

    def problem(self, path, value) -> Problem:
        """The :class:`Problem` for ``value`` found at ``path``."""
        found = self.value if self.has_value else value
        text = f"{path}{self.at} {self.expected}, got {show(found)}"
        if self.hint:
            text += f"; {self.hint}"
        return Problem(f"{path}{self.at}", text, self.kind)


def _is_int(v) -> bool:
    # bool is an int in Python, but `epochs: true` is a mistake, not 1 epoch.
    return isinstance(v, Integral) and not _is_bool(v)


# PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string, not a float.
# Users write it that way, so float settings accept such strings.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# What a check returns for a value it rejected (None can be a valid value).
INVALID = object()


class Check:
    """Base of the checks: ``check(value) -> normalized``; ``numeric`` for sweeps."""

    numeric = None  # "int" or "float" where sweep distributions may draw values
    nullable = False

    def __call__(self, value):
        if value is None and self.nullable:
            return None
        return self.convert(value)

    def collect(self, value, path, problems):
        """The normalized value, or :data:`INVALID` after appending a :class:`Problem`."""
        try:
            return self(value)
        except Bad as bad:
            problems.append(bad.problem(path, value))
            return INVALID

    def convert(self, value):  # pragma: no cover - every subclass defines it
        raise NotImplementedError


class Int(Check):
    """An integer in ``[low, high]``; ``minus_one`` also allows -1 ("all cores")."""

    numeric = "int"

    def __init__(self, low, high, *, nullable=False, minus_one=False):
        self.low, self.high = low, high
        self.nullable, self.minus_one = nullable, minus_one
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            low, f"an integer >= {low}"
        )
        if minus_one:
            what += " or -1 (all cores)"
        if nullable:
            what += " or null"
        self.expected = f"must be {what}"

    def convert(self, value):
        if not _is_int(value):
            raise Bad(self.expected, kind=TypeError)
        value = int(value)
        if self.minus_one and value == -1:
            return value
        if value < self.low:
            raise Bad(self.expected)
        if value > self.high:
            raise Bad(f"must be at most {self.high}")
        return value


def _interval(low, high, low_open, high_open):
    if high is None:
        if low == 0:
            return "a positive number" if low_open else "a non-negative number"
        return f"a number {'>' if low_open else '>='} {low}"
    return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


class Float(Check):
    """A finite real number in an interval; ints are accepted and made floats."""

    numeric = "float"

    def __init__(self, low, high=None, *, low_open=False, high_open=False, nullable=False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.nullable = nullable
        self.expected = f"must be {_interval(low, high, low_open, high_open)}" + (
            " or null" if nullable else ""
        )

    def convert(self, value):
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if not isinstance(value, Real) or _is_bool(value):
            raise Bad(self.expected, kind=TypeError)
        value = float(value)
        if not math.isfinite(value):
            raise Bad("must be a finite number")
        if (
            value < self.low
            or (self.low_open and value == self.low)
            or (
                self.high is not None
                and (value > self.high or (self.high_open and value == self.high))
            )
        ):
            raise Bad(self.expected)
        return value


class StackSize(Check):
    """A stack size: a positive integer, ``auto`` (measured) or null (no stacking)."""

    nullable = True
    expected = "must be a positive integer, auto or null"

    def convert(self, value):
        if value == "auto":
            return value
        if not _is_int(value):
            raise Bad(self.expected, kind=TypeError)
        if not 1 <= int(value) <= 4096:
            raise Bad(self.expected if int(value) < 1 else "must be at most 4096")
        return int(value)


class Bool(Check):
    """true or false (YAML booleans, Python and NumPy bools)."""

    def convert(self, value):
        if not _is_bool(value):
            raise Bad("must be true or false", kind=TypeError)
        return bool(value)


class OneOf(Check):
    """One of a set of names; the set comes from a function, read when checking.

    The function is called lazily so that ``config`` imports the modules that
    own the names (``data``, ``nn``, ``backends``) only when validating, and no
    import cycle can form.
    """

    def __init__(self, options, *, nullable=False):
        self.options = options
        self.nullable = nullable

    def convert(self, value):
        names = tuple(self.options())
        expected = f"must be one of {', '.join(names)}" + (" or null" if self.nullable else "")
        if not isinstance(value, str):
            raise Bad(expected, kind=TypeError)
        if value not in names:
            match = closest(value, names)
            raise Bad(expected, hint=f"did you mean {match}?" if match else "")
        return str(value)


class Hidden(Check):
    """Hidden layer widths: a positive int (one layer) or a non-empty list of them."""

    # 65536 units per layer is a 4-billion-weight square layer: far past "small MLP".
    MAX_WIDTH = 65536
    # 64 layers: deeper plain MLPs do not train without residual connections.
    MAX_LAYERS = 64

    def __init__(self):
        self.width = Int(1, self.MAX_WIDTH)

    def convert(self, value):
        expected = (
            "must be a positive integer or a non-empty list of positive integers "
            "(the hidden layer widths)"
        )
        if isinstance(value, numpy_type("ndarray")) and value.ndim == 1:
            value = value.tolist()
        if _is_int(value):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise Bad(expected, kind=TypeError)
        if not value:
            raise Bad("must have at least one hidden layer")
        if len(value) > self.MAX_LAYERS:
            raise Bad(f"must have at most {self.MAX_LAYERS} layers")
        widths = []
        for i, width in enumerate(value):
            try:
                widths.append(self.width(width))
            except Bad as bad:
                raise Bad(
                    bad.expected, kind=bad.kind, at=f"[{i}]", value=width, has_value=True
                ) from None
        return tuple(widths)


class Text(Check):
    """A string matching a pattern, described in words for the message."""

    def __init__(self, pattern, description, *, nullable=False, max_length=4096):
        self.pattern = re.compile(pattern)
        self.expected = f"must be {description}" + (" or null" if nullable else "")
        self.nullable = nullable
        self.max_length = max_length

    def convert(self, value):
        if not isinstance(value, str):
            raise Bad(self.expected, kind=TypeError)
        if len(value) > self.max_length or not self.pattern.fullmatch(value):
            raise Bad(self.expected)
        return str(value)


class ListOf(Check):
    """A list of distinct items, each passing ``item``; non-empty unless ``empty``."""

    def __init__(self, item, description, *, max_length=64, empty=False):
        self.item = item
        self.expected = f"must be a {'' if empty else 'non-empty '}list of {description}"
        self.max_length = max_length
        self.empty = empty

    def convert(self, value):
        if not isinstance(value, (list, tuple)):
            raise Bad(self.expected, kind=TypeError)
        if not value and not self.empty:
            raise Bad(self.expected)
        if len(value) > self.max_length:
            raise Bad(f"must have at most {self.max_length} entries")
        items = []
        for i, raw in enumerate(value):
            try:
                item = self.item(raw)
            except Bad as bad:
                raise Bad(
                    bad.expected,
                    kind=bad.kind,
                    at=f"[{i}]",
                    value=raw,
                    has_value=True,
                    hint=bad.hint,
                ) from None
            if item in items:
                raise Bad(
                    "must not repeat an earlier entry", at=f"[{i}]", value=raw, has_value=True
                )
            items.append(item)
        return tuple(items)


def as_number(value):
    """``value`` as an int or float if it is a finite real number, else None."""
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        value = float(value)
    if _is_int(value):
        return int(value)
    if isinstance(value, Real) and not _is_bool(value):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def unknown_key(path, key, valid) -> Problem:
    """The problem for a key that is not in ``valid``, with a did-you-mean where one is close."""
    prefix = f"{path}." if path else ""
    match = closest(key, valid)
    tail = f"did you mean {prefix}{match}?" if match else f"expected one of {', '.join(valid)}"
    return Problem(f"{prefix}{show_key(key)}", f"unknown key {prefix}{show_key(key)}; {tail}")
