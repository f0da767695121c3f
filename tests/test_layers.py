"""The shape of the tree: no import cycles, and each layer imports only downward.

Read from the code's own imports (``ast``), type-only imports included: a
cycle through ``if TYPE_CHECKING:`` still ties the modules together for a
reader. Run it alone with ``python -m pytest tests/test_layers.py -q``; on a
failure it prints the cycle or the import that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("daemon", "ctl")

# Layers from the bottom (DESIGN.md "Layers"); a module may import from its
# own layer's modules and from layers below, never from above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "records",
        (
            "daemon",  # the package face: __version__
            "daemon.errors",
            "daemon.ids",
            "daemon.fsutil",
            "daemon.timeparse",
            "daemon.quota",
            "daemon.models",
            "daemon.records",
            "daemon.paths",
            "daemon.config",
            "daemon.guards",
            "daemon.logs",
            "daemon.sdnotify",
            "daemon.gc_tuning",
            "daemon.proxy_state",
        ),
    ),
    ("protocols", ("daemon.protocols",)),
    ("upstream", ("daemon.upstream",)),
    (
        "accounts",
        (
            "daemon.accounts",
            "daemon.dispatch",
            "daemon.backends",
            "daemon.monitor",
            "daemon.metrics",
            "daemon.compaction",
            "daemon.refusals",
            "daemon.response_store",
        ),
    ),
    (
        "apps",
        (
            "daemon.proxy",
            "daemon.admin",
            "daemon.app_deps",
            "daemon.listeners",
        ),
    ),
    ("service", ("daemon.service", "daemon.__main__")),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    modules = {
        _module_name(p): p
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                # The longest module name the import names (``from x import y``
                # may name a module y or a name in x).
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _layer_of(module: str) -> int:
    best, index = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, index = len(p), i
    return index


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = _imports()
    cycles = _cycles(graph)
    detail = [
        " <-> ".join(c) + "\n    " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in cycles
    ]
    assert not cycles, "import cycles:\n  " + "\n  ".join(detail)


def test_every_daemon_module_has_a_layer() -> None:
    missing = [m for m in _imports() if m.startswith("daemon") and _layer_of(m) < 0]
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


def test_layers_import_only_downward() -> None:
    graph = _imports()
    upward = [
        f"{a} ({LAYERS[_layer_of(a)][0]}) imports {b} ({LAYERS[_layer_of(b)][0]})"
        for a, deps in sorted(graph.items())
        if a.startswith("daemon")
        for b in sorted(deps)
        if b.startswith("daemon") and _layer_of(b) > _layer_of(a)
    ]
    assert not upward, "imports that run up a layer:\n  " + "\n  ".join(upward)


def test_protocols_are_pure() -> None:
    """Translation imports nothing that does I/O or knows the apps."""
    graph = _imports()
    bad = [
        f"{a} imports {b}"
        for a, deps in graph.items()
        if a.startswith("daemon.protocols")
        for b in deps
        if b.startswith(
            ("daemon.proxy", "daemon.upstream", "daemon.accounts", "daemon.service", "daemon.admin")
        )
        or b in ("daemon.dispatch", "daemon.backends", "daemon.monitor", "daemon.metrics")
    ]
    assert not bad, bad
