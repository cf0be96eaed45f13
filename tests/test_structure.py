"""The package's shape, read from its source with ``ast`` (nothing is imported).

Dependencies run one way, along the data flow of DESIGN.md: a module may
import only from its own part of the package or from a part of a lower layer.
Lazy imports inside functions count the same: they are still dependencies.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlpar"

# Layer of each part of mlpar (a top-level module or a subpackage). A part may
# import from parts of a strictly lower layer, and from itself.
LAYERS = {
    "environment": 0,
    "context": 0,
    "runs": 1,
    "space": 1,
    "nn": 1,
    "data": 1,
    "results": 2,
    "backends": 2,
    "config": 3,
    "trial": 4,
    "search": 4,
    "samplers": 5,
    "sweep": 6,
    "halving": 5,
    "experiment": 8,
    "analysis": 9,
    "report": 10,
    "lessons": 11,
    "cli": 12,
    "__main__": 13,
}
MAX_LINES = 450


def _modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[("mlpar", *parts)] = path
    return out


def _imports(name, path, modules):
    """The mlpar modules ``name`` imports, resolved to the longest known module name."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(name if is_package else name[:-1])
                base = base[: len(base) - (node.level - 1)]
            else:
                base = []
            target = tuple(base) + (tuple(node.module.split(".")) if node.module else ())
            candidates = [target + (alias.name,) for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [tuple(alias.name.split(".")) for alias in node.names]
        else:
            continue
        for cand in candidates:
            while cand and cand not in modules:
                cand = cand[:-1]
            if cand and cand != name and cand[0] == "mlpar":
                found.add(cand)
    return found


def _graph():
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(name):
    return name[1] if len(name) > 1 else None


def test_every_part_has_a_layer():
    modules, _ = _graph()
    parts = {_part(n) for n in modules} - {None}
    assert parts == set(LAYERS), "give each new part of mlpar a layer in LAYERS"


def test_imports_only_go_down_the_layers():
    _, graph = _graph()
    upward = []
    for name, targets in graph.items():
        src = _part(name)
        for target in targets:
            dst = _part(target)
            # The root package (``__version__``) and a package's own modules are exempt.
            if dst is None or src is None or dst == src:
                continue
            if LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{'.'.join(name)} -> {'.'.join(target)}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    _, graph = _graph()
    edges = defaultdict(set)
    for name, targets in graph.items():
        for target in targets:
            # A package's __init__ re-exporting its own modules is not a cycle of ideas.
            if name == target[: len(name)]:
                continue
            edges[name].add(target)
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(".".join(n) for n in stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_is_too_long_to_read_in_one_sitting(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {n} lines; split it by idea"


def test_the_scan_resolves_relative_imports():
    # Guard the guard: a known downward import must be seen.
    _, graph = _graph()
    assert ("mlpar", "results", "_rows") in graph[("mlpar", "results", "_journal")]
    assert ("mlpar", "sweep") in graph[("mlpar", "experiment")]
    assert ("mlpar", "config") in graph[("mlpar", "trial")]
