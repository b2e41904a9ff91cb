"""The package's folders are its data flow: each layer imports only the layers above it.

raw files -> ``io`` (readers) -> ``store`` -> ``analysis`` -> ``present`` -> ``render`` -> app/CLI, with
``domain`` and ``geo`` underneath everything and ``demo`` (synthetic inputs) beside the flow. Read
from the source with ``ast``: an import anywhere in a module counts, deferred ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "essmap"

#: Layers, bottom first: a module may import its own layer and those listed before it.
LAYERS = ("domain", "geo", "io", "store", "analysis", "present", "render", "cli")
#: Beside the flow: what each may import (the CLI runs the demo build, ``essmap build``).
SIDE = {"demo": {"domain", "geo", "io", "store"}, "cli": {*LAYERS, "demo"}}


#: Modules of a layer that are not in its folder: click's French classes beside cli.py.
LAYER_OF_MODULE = {"click_fr": "cli"}


def _layer(module: str) -> str:
    parts = module.split(".")
    return LAYER_OF_MODULE.get(parts[1], parts[1]) if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``essmap`` import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("essmap"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("essmap")]
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(module: str, name: str, known: dict[str, Path]) -> str:
    """``from essmap import store`` imports the module essmap.store, not the package root."""
    return f"{module}.{name}" if f"{module}.{name}" in known else module


def test_each_layer_imports_only_the_layers_above_it():
    known = _modules()
    wrong = []
    for module, path in known.items():
        own = _layer(module)
        if not own:
            continue
        allowed = SIDE.get(own) or set(LAYERS[: LAYERS.index(own) + 1])
        for target, names in _imports(path):
            for resolved in {_resolve(target, n, known) for n in names} or {target}:
                layer = _layer(resolved)
                if layer and layer != own and layer not in allowed:
                    wrong.append(f"{module} imports {resolved}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_another_modules_private_names():
    wrong = [f"{module} imports {target}.{name}"
             for module, path in _modules().items() for target, names in _imports(path)
             for name in names if name.startswith("_") and not name.endswith("__") and target != module]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules():
    known = _modules()
    graph = {module: {_resolve(t, n, known) for t, names in _imports(path) for n in (names or [""])} & set(known)
             for module, path in known.items()}
    # a package __init__ re-exporting its modules is not a cycle of its own
    graph = {m: {t for t in targets if not m.startswith(t + ".") and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
