"""The import structure of ``src/evolens``: no circle, and the low layers import nothing above them.

The graph is read from the source (every ``import`` statement, those inside functions included — a lazy import
that runs up a layer is still a dependency), one node per module: ``from X import name`` depends on ``X.name``
when that is a module, else on ``X`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import evolens

SOURCE = Path(evolens.__file__).parent
# the ground: modules every layer may import, which import only each other
GROUND = {"evolens.errors", "evolens._validation", "evolens.names", "evolens._paths", "evolens._device"}
# layers that may import only the ground and themselves
LOW_LAYERS = ("evolens.store", "evolens.metrics")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the evolens modules it imports anywhere in its file."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, (path, package) in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if package else module.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    child = f"{origin}.{alias.name}"
                    targets.add(child if child in modules else origin)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_reader_sees_lazy_imports_and_circles():
    """The reader itself, on a graph with a known circle, and on a lazy import the package really has."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "evolens.encoders" in graph["evolens.analyses.split"]  # get_encoder, imported at the top
    assert "evolens.store.run" in graph["evolens.store.references"]  # store_named_reference's lazy import


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_ground_imports_only_the_ground():
    graph = import_graph()
    for module in GROUND:
        assert graph[module] <= GROUND, (module, graph[module] - GROUND)


@pytest.mark.parametrize("layer", LOW_LAYERS)
def test_low_layers_import_only_the_ground_and_themselves(layer):
    graph = import_graph()
    upward = {(module, target) for module, targets in graph.items()
              if module == layer or module.startswith(layer + ".")
              for target in targets
              if target not in GROUND and target != layer and not target.startswith(layer + ".")}
    assert not upward, sorted(upward)
