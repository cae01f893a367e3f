"""The package's imports go downward only: no cycle between modules or packages, navbuild's own
imports at the top of each module, and only heavy runtimes imported where they are used."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import navbuild

ROOT = Path(navbuild.__file__).parent

#: third-party runtimes a command may never pay for unless it runs them: imported inside functions
HEAVY = ("torch", "onnxruntime", "openvino", "nncf", "tritonclient", "matplotlib", "tensorrt", "polygraphy",
         "onnx", "transformers", "onnxconverter_common", "fsspec", "s3fs", "botocore")


#: modules whose navbuild imports stay inside functions, and why
IMPORTS_INSIDE_FUNCTIONS = {
    # `import navbuild.steps.x` in a step's child process must not load the whole build tool:
    # the package re-exports the API's four calls lazily
    "navbuild",
    # copied into a Triton model folder as model.py and run by the server's python stub, where a
    # navbuild that cannot be imported must fail with a message saying how to fix the stub's path
    "navbuild.triton.python_model",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(modules: dict[str, Path]):
    """(importer, imported navbuild module, line, at module top) for every import statement."""
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body if not _type_checking_block(n)}
        hidden = {id(n) for b in tree.body if _type_checking_block(b) for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] == "navbuild":
                    targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                               for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "navbuild"]
            for t in targets:
                yield name, t, node.lineno, id(node) in top


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b, _, _ in _imports(modules):
        if b in modules and a != b and b != "navbuild":  # the package's own __init__ re-exports the API
            edges[a].add(b)
    assert _cycles(edges) == []


def test_no_two_packages_import_each_other():
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b, _, _ in _imports(modules):
        pa, pb = _package(a), _package(b)
        if pa != pb and b != "navbuild":
            edges[pa].add(pb)
    assert _cycles(edges) == []


def test_navbuild_imports_are_at_module_top():
    modules = _modules()
    hidden = sorted(f"{modules[a].relative_to(ROOT.parent)}:{line} imports {b}"
                    for a, b, line, top in _imports(modules) if not top and a not in IMPORTS_INSIDE_FUNCTIONS)
    assert hidden == []


def test_heavy_runtimes_are_imported_only_where_used():
    """No module imports a heavy runtime at its top: `navbuild plan` and a no-op rebuild pay for none."""
    modules = _modules()
    at_top = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            roots = []
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = [node.module.split(".")[0]]
            at_top += [f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {r}" for r in roots if r in HEAVY]
    assert at_top == []


def test_the_command_line_loads_no_runtime():
    """Importing the CLI (and everything it imports at module top) loads no heavy runtime."""
    code = ("import sys, navbuild.cli, navbuild.api; "
            f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_check_sees_hidden_imports_and_cycles(tmp_path):
    """The walk itself: a function-level import and a two-module cycle are both found."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(edges) == [["a", "b"]]
    tree = ast.parse("def f():\n    from navbuild.cache import keys\n")
    inner = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert inner and inner[0] not in tree.body
