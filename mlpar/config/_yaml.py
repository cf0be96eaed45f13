"""Reading config files and ``--set`` overrides into plain Python values.

Only YAML's safe loader: a config is data, never code, so tags such as
``!!python/object`` are refused. It is subclassed for one thing only: a key
given twice in a mapping is an error (plain YAML keeps the last one without a
word, so a pasted second ``sweep:`` block would silently replace the first).
Every failure becomes one line naming the file (or the override) and, where
YAML gives one, the line and column.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import yaml

from ._checks import OverrideWarning, printable, show_key, unknown_key

__all__ = []

# A config is a page of YAML; a bigger file is a wrong path (a dataset, a log),
# and parsing it would take long before failing.
MAX_BYTES = 1 << 20

_TAG = re.compile(r"could not determine a constructor for the tag '([^']*)'")


def read_yaml_file(path, top_keys):
    """Read and parse one config file.

    Returns
    -------
    (value, error) : (object, str or None)
        The parsed document, or an error line for a file that cannot be read
        or parsed.
    """
    p = Path(os.fspath(path))
    label = printable(os.fspath(path))
    try:
        if p.is_dir():
            return None, f"{label}: is a directory, expected a YAML file"
        size = p.stat().st_size
        if size > MAX_BYTES:
            return None, (
                f"{label}: is {size} bytes, expected a YAML config (at most {MAX_BYTES} bytes)"
            )
        data = p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, f"{label}: no such file"
    except OSError as exc:
        return None, f"{label}: cannot read: {(exc.strerror or str(exc)).lower()}"
    try:
        # utf-8-sig: editors on Windows may start the file with a byte order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, (
            f"{label}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        )
    value, error = parse_yaml(text, label)
    if error is None and value is None and _only_comments(text):
        return None, (f"{label}: file is empty; expected a mapping with keys {', '.join(top_keys)}")
    return value, error


def _only_comments(text):
    lines = (line.strip() for line in text.splitlines())
    return all(not s or s.startswith("#") or s in ("---", "...") for s in lines)


class _Duplicates(Exception):
    """Keys given twice: ``found`` holds ``(path, line, first_line)`` for each."""

    def __init__(self, found):
        super().__init__(found)
        self.found = found


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, at any depth.

    The whole document's node tree is checked before anything is built, so
    every duplicate is reported at once with its key path and line.
    """

    def construct_document(self, node):
        found = []
        self._find_duplicates(node, "", found, set())
        if found:
            raise _Duplicates(found)
        return super().construct_document(node)

    def _find_duplicates(self, node, path, found, seen):
        # Aliases can make the node graph cyclic (`a: &x [*x]`): visit each node once.
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._find_duplicates(item, f"{path}[{i}]", found, seen)
        elif isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, value_node in node.value:
                # `<<: *base` merges are not keys of their own; their keys may
                # be overridden on purpose.
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self._key(key_node)
                name = show_key(key) if key is not _UNBUILT else "?"
                child = f"{path}.{name}" if path else name
                if key is not _UNBUILT:
                    try:
                        mark = key_node.start_mark
                        if key in first:
                            found.append((child, (mark.line + 1, mark.column + 1), first[key]))
                        else:
                            first[key] = (mark.line + 1, mark.column + 1)
                    except TypeError:  # unhashable: the constructor reports it
                        pass
                self._find_duplicates(value_node, child, found, seen)

    def _key(self, key_node):
        """The key a scalar key node builds (`yes` and `true` are the same key)."""
        if not isinstance(key_node, yaml.ScalarNode):
            return _UNBUILT  # a list or mapping as a key: the constructor says why not
        try:
            return self.construct_object(key_node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return _UNBUILT  # a bad tag or value: the constructor reports it


_UNBUILT = object()


def _safe_load(text):
    # What yaml.safe_load does, with the duplicate-refusing SafeLoader subclass.
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _duplicate_lines(found, label, inline):
    if inline:
        return "\n".join(
            f"{label}: duplicate key {path} in the value; each key may appear only once"
            for path, _, _ in found
        )
    lines = []
    for path, (line, column), (first, first_column) in found:
        # The column only where the line alone does not tell: `{lr: 1, lr: 2}`.
        where = f"line {line}, column {column}" if line == first else f"line {line}"
        before = f"line {first}, column {first_column}" if line == first else f"line {first}"
        lines.append(
            f"{label}: {where}: duplicate key {path} (first at {before}); "
            f"each key may appear only once"
        )
    return "\n".join(lines)


def parse_yaml(text, label, *, inline=False):
    """``yaml.safe_load(text)`` and an error (or None) naming ``label``.

    The error is one line, or one line per duplicate key when keys repeat.
    ``inline``: ``text`` is one value (an override), quoted in messages
    instead of pointing at a line and column.
    """
    try:
        return _safe_load(text), None
    except _Duplicates as exc:
        return None, _duplicate_lines(exc.found, label, inline)
    except yaml.MarkedYAMLError as exc:
        if inline:
            tag = _TAG.match(_one_line(exc.problem or ""))
            if tag:
                name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
                return None, f"{label}: YAML tag {name} is not allowed (only plain YAML)"
            return None, (
                f"{label}: invalid YAML value {text!r}: "
                f"{_one_line(exc.problem or exc.context or '')}"
            )
        return None, _marked_error(exc, label, text)
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, exc.position)
        return None, (
            f"{label}: invalid YAML at line {line}, column {column}: unacceptable "
            f"character #x{exc.character:04x}: {exc.reason}"
            if isinstance(exc.character, int)
            else f"{label}: invalid YAML: {_one_line(str(exc))}"
        )
    except yaml.YAMLError as exc:
        return None, f"{label}: invalid YAML: {_one_line(str(exc))}"
    except RecursionError:
        return None, f"{label}: invalid YAML: nested too deeply"
    except (ValueError, TypeError, OverflowError) as exc:
        # The safe constructors of standard tags raise these, e.g. `!!int abc`.
        return None, f"{label}: invalid YAML: {_one_line(str(exc))}"


def _one_line(text):
    return " ".join(str(text).split())


def _position(text, index):
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _marked_error(exc, label, text):
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    problem = _one_line(exc.problem or exc.context or "")
    tag = _TAG.match(problem)
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"{label}: line {line}: YAML tag {name} is not allowed (only plain YAML)"
    lines = text.splitlines()
    indent = ""
    if line is not None and line <= len(lines):
        bad = lines[line - 1]
        indent = bad[: len(bad) - len(bad.lstrip(" \t"))]
    if "\\t" in problem or "tab" in problem or "\t" in indent:
        tab_column = indent.index("\t") + 1 if "\t" in indent else column
        return (
            f"{label}: tab character at line {line}, column {tab_column}; "
            f"indent YAML with spaces, not tabs"
        )
    if exc.context and exc.problem:
        context = _one_line(exc.context)
        cmark = exc.context_mark
        if context.startswith("while") and cmark is not None:
            problem += f" ({context} at line {cmark.line + 1}, column {cmark.column + 1})"
        elif not context.startswith("while"):
            problem = f"{context}, {problem}"
    where = f" at line {line}, column {column}" if line is not None else ""
    return f"{label}: invalid YAML{where}: {problem}"


def parse_override_text(text, schema, trial_names, nested=None):
    """Split ``KEY=VALUE`` and check KEY against the schema.

    ``schema`` maps each top-level key to its field names (None for a plain
    value such as ``name``); ``nested`` maps ``(section, field)`` to the keys
    of a mapping field that may be set one key at a time
    (``sweep.halving.factor=2``). Returns ``(path, value, error)``.
    """
    if not isinstance(text, str):
        return None, None, f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=0.01"
    key, sep, raw = text.partition("=")
    key = key.strip()
    label = f"--set {printable(key or text)}"
    path = tuple(key.split("."))
    if not sep or not key or not all(path):
        return None, None, f"{label}: expected KEY=VALUE, e.g. train.lr=0.01"
    error = _schema_error(path, schema, trial_names, nested or {})
    if error:
        return None, None, f"{label}: {error}"
    value, error = parse_yaml(raw, label, inline=True)
    return (None, None, error) if error else (path, value, None)


def _schema_error(path, schema, trial_names, nested):
    top = path[0]
    if top not in schema:
        return _unknown("", top, tuple(schema))
    fields = schema[top]
    if len(path) == 1:
        return None
    if fields is None:
        return f"cannot set inside {top}; set it whole, e.g. {top}=..."
    if path[1] not in fields:
        return _unknown(top, path[1], fields)
    if path[:2] == ("sweep", "params") and len(path) >= 3:
        if path[2] not in trial_names:
            return _unknown("sweep.params", path[2], trial_names)
        if len(path) == 3:
            return None
        whole = "sweep.params." + path[2]
        return f"cannot set inside {whole}; set it whole, e.g. {whole}=[...]"
    if path[:2] in nested and len(path) == 3:
        keys = nested[path[:2]]
        return None if path[2] in keys else _unknown(".".join(path[:2]), path[2], keys)
    if len(path) > 2:
        whole = ".".join(path[:2])
        return f"cannot set inside {whole}; set it whole, e.g. {whole}=..."
    return None


def _unknown(prefix, key, valid):
    return unknown_key(prefix, key, tuple(valid)).message


def apply_override(raw, path, value):
    """Set ``path`` to ``value`` in the parsed document ``raw`` (a dict), in place.

    ``sweep.params.<name>`` applies to every grid of a list of grids; a null
    value removes the name from the sweep, and a grid left empty is dropped.
    A section that is not a mapping is left alone: its own error is reported.
    """
    if len(path) == 1:
        raw[path[0]] = value
        return
    section = raw.get(path[0])
    if section is None:
        section = raw[path[0]] = {}
    if not isinstance(section, dict):
        return
    if len(path) == 2:
        section[path[1]] = value
        return
    if path[1] != "params":  # one key of a mapping such as sweep.halving
        inner = section.get(path[1])
        if inner is None:
            inner = section[path[1]] = {}
        if isinstance(inner, dict):
            inner[path[2]] = value
        return
    name = path[2]
    params = section.get("params")
    if params is None:
        if value is not None:
            section["params"] = {name: value}
        return
    grids = [params] if isinstance(params, dict) else params
    if not isinstance(grids, list):
        return
    for grid in grids:
        if isinstance(grid, dict):
            if value is None:
                grid.pop(name, None)
            else:
                grid[name] = value
    if value is None:
        kept = [g for g in grids if not (isinstance(g, dict) and not g)]
        section["params"] = None if not kept else kept[0] if isinstance(params, dict) else kept


def switch_backend(raw, file_execution, typed, label):
    """Drop what the file set for its own backend that the overriding backend cannot take.

    An override of ``execution.backend`` means "run this on that backend": a
    file's ``n_jobs: 2`` does not make ``serial`` an error, nor a file's
    ``address`` one for ``threads``. What the overrides themselves set is
    never changed, so a contradiction typed on the command line stays an error.
    Each change is reported as an :class:`OverrideWarning`.
    """
    execution = raw.get("execution")
    if (
        ("execution", "backend") not in typed
        or not isinstance(execution, dict)
        or not isinstance(file_execution, dict)
    ):
        return
    backend, notes = execution.get("backend"), []
    n_jobs = file_execution.get("n_jobs")
    if backend == "serial" and ("execution", "n_jobs") not in typed and n_jobs not in (None, 1):
        execution["n_jobs"] = 1
        notes.append(
            f"execution.n_jobs {printable(str(n_jobs))} from {label} replaced by 1: "
            f"backend serial, set by an override, runs one trial at a time; "
            f"override execution.n_jobs too to choose"
        )
    address = file_execution.get("address")
    if backend != "dask" and ("execution", "address") not in typed and address is not None:
        execution["address"] = None
        notes.append(
            f"execution.address {printable(str(address))} from {label} dropped: "
            f"backend {printable(str(backend))}, set by an override, does not use it"
        )
    for note in notes:
        warnings.warn(note, OverrideWarning, stacklevel=3)


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists and distributions.

    Gives ``hidden: [64, 64]`` and ``lr: {loguniform: [1.0e-05, 0.01]}``, as
    people write them, instead of one line per list item.
    """


def _flow_list(dumper, data):
    # A list of grids stays in block style: one grid under another.
    flow = not any(isinstance(item, dict) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _mapping(dumper, data):
    flow = len(data) == 1 and next(iter(data)) in ("loguniform", "uniform", "randint", "choice")
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_Dumper.add_representer(list, _flow_list)
_Dumper.add_representer(dict, _mapping)


def dump_yaml(data) -> str:
    """``data`` (plain dicts, lists and scalars) as YAML, keys in their given order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
