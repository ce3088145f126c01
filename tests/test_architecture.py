"""The floor plan: imports flow one way, from the CLI down to the RASP substrate, and never around a cycle.

Every import statement counts, including those inside functions and under ``TYPE_CHECKING``: a function-level
import does not make an upward dependency go away, it only hides it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import metamodels

PACKAGE = Path(metamodels.__file__).parent

# Lower layers never import higher ones. Modules of one layer may import each other (without cycles).
LAYERS = (
    ("errors", "artifacts", "workers", "options", "devices"),
    ("rasp",),
    ("transformer",),
    ("dataset", "python"),
    ("zoo",),
    ("meta",),
    ("mapping", "hparams"),
    ("decompilation",),
    ("evaluation",),
    ("cli", "demo", "__init__", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a import b`` counts a.b where that is a module, else a)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m.split(".")[0] == "metamodels"}


def graph() -> nx.DiGraph:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(paths)
    for name, path in paths.items():
        g.add_edges_from((name, target) for target in imports_of(path, name, set(paths)) if target != name)
    return g


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {layer_of(m) for m in graph()} <= set(RANK)


def test_no_import_cycle():
    assert list(nx.simple_cycles(graph())) == []


def test_imports_flow_one_way():
    upward = [(a, b) for a, b in graph().edges if RANK[layer_of(b)] > RANK[layer_of(a)]]
    assert upward == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from metamodels.evaluation import metrics\n    from . import y\n")
    found = imports_of(source, "metamodels.rasp.x", {"metamodels.evaluation.metrics", "metamodels.rasp.y"})
    assert found == {"metamodels.evaluation.metrics", "metamodels.rasp.y"}


ADAPTERS = {  # heavy dependency -> the one module allowed to import it (tracr.rasp, the pure-Python RASP, is free)
    "jax": "metamodels.transformer.compiler",
    "tracr.compiler": "metamodels.transformer.compiler",
    "tracr.craft": "metamodels.transformer.compiler",
    "transformer_lens": "metamodels.transformer.lens",
    "transformers": None,  # a test-only dependency: Hugging Face checkpoints are read without it
}


def test_each_heavy_dependency_has_one_adapter():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                for dependency, adapter in ADAPTERS.items():
                    if (name == dependency or name.startswith(dependency + ".")) and module_name(path) != adapter:
                        offenders.append((module_name(path), name))
    assert offenders == []
