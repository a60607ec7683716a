"""The package's layers point one way (docs/design.md, "Layers and what each may import"):
no module imports another that imports it back, however indirectly (package ``__init__``
registries aside), and the lower layers never reach up."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "secjax"


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(modules) -> dict[str, set[str]]:
    """Every secjax module each module imports, at the top or inside functions."""
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        edges[name].add(full)
                    elif node.module in modules:
                        edges[name].add(node.module)
    return edges


def test_no_import_circle():
    modules = _modules()
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    edges = {name: targets - packages for name, targets in _imports(modules).items()}
    circles, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_lower_layers_do_not_reach_up():
    edges = _imports(_modules())
    rules = {
        "secjax.ring": ("secjax.",),
        "secjax.runtime": ("secjax.protocols", "secjax.primitives", "secjax.api"),
        "secjax.protocols": ("secjax.primitives", "secjax.api", "secjax.interpreter"),
        "secjax.primitives": ("secjax.api", "secjax.interpreter", "secjax.nn"),
        "secjax.nn": ("secjax.api", "secjax.interpreter"),
    }
    wrong = [
        (name, target)
        for name, targets in edges.items()
        for layer, forbidden in rules.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if any(target.startswith(f) for f in forbidden) and not target.startswith(layer)
    ]
    assert wrong == []
