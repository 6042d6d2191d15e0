"""pydeploy's import layering: no module imports from a layer above its own, and there are no cycles.

Read from the source (ast), so it costs nothing and needs no database. Function-level imports count
too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pydeploy"

# lowest first; a module may import from its own layer and the ones below it
LAYERS: list[set[str]] = [
    {"errors", "paths", "ports"},
    {"dsn", "db", "sql_split", "validate"},
    {"migrations", "engines", "receiver", "net_worker", "channels", "report", "monitor", "verify", "advisor",
     "extensions_build", "functions_server", "schema_check", "alertmanager", "heartbeat", "exporter_queries",
     "dashboard", "ingest_keys", "digests", "log_export"},
    {"bench"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("pydeploy")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pydeploy"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return out


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {d for d in _imports(p, modules) if d != m} for m, p in modules.items() if m != "pydeploy"}


def test_every_module_has_a_layer_and_imports_none_above_it() -> None:
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, deps in _graph().items() for d in deps if d != "pydeploy" and _layer(d) > _layer(m)]
    assert upward == []


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    # a package's __init__ re-exports its submodules: the edge from a submodule back to its own
    # package is how `from pydeploy.engines import choice` reads, not a dependency on the package
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert cycles == []
