"""The shape of the package, from its imports (read with :mod:`ast`, nothing imported):
the layers of CONTRIBUTING.md, no import circles, provider knowledge only in ``providers/``,
no oversized module, and no function-level import but the lazy ones that keep ``%load_ext``
fast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "nbstream"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "limits", "kernel", "retention", "version"),
    ("providers",),
    ("structured", "prompts", "pricing", "settings", "render", "tools"),
    ("response", "conversation", "cache", "engine", "store"),
    ("display",),
    ("call", "run", "background"),
    ("api", "batch", "notebook", "__init__"),
]
"""From the bottom up: a module imports from its own layer or below (CONTRIBUTING.md)."""

SDKS = ("openai", "anthropic", "google", "llama_cpp", "httpx", "httpx2")
MAX_LINES = 650
LAZY = "# lazy:"
"""A function-level import must say why it is lazy (what it keeps out of ``%load_ext``)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if module == "nbstream.__init__":
        top = "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


def imports(module: str, *, functions: bool) -> list[tuple[str, ast.AST]]:
    """``(imported module, node)`` for the nbstream modules ``module`` imports at module
    level (``functions``: also inside functions). ``TYPE_CHECKING`` blocks never run."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.ImportFrom) and (in_function <= functions):
                base = child.module or ""
                if child.level:
                    raise AssertionError(f"{module}: relative import (the package uses absolute)")
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    target = candidate if candidate in MODULES else base
                    if target in MODULES and target != module:
                        found.append((target, child))
            elif isinstance(child, ast.Import) and (in_function <= functions):
                for alias in child.names:
                    if alias.name in MODULES:
                        found.append((alias.name, child))
            visit(child, nested)

    visit(tree, False)
    return found


def circles(functions: bool) -> list[list[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _ in imports(module, functions=functions):
            parts = target.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                runs = ".".join(parts[:k])
                if runs in MODULES and runs != module and not module.startswith(runs + "."):
                    edges[module].add(runs)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            connect(v)
    return out


@pytest.mark.parametrize("functions", [False, True], ids=["module level", "with functions"])
def test_no_import_circles(functions):
    assert circles(functions) == []


def test_every_import_goes_to_the_same_layer_or_below():
    wrong = []
    for module in MODULES:
        for target, node in imports(module, functions=True):
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module}:{node.lineno} imports {target} from a higher layer")
    assert not wrong, "\n".join(wrong)


def test_only_providers_know_providers_and_sdks():
    """Outside ``providers/`` no module imports an SDK or one provider's module (the
    registry and the shared contract are the door)."""
    shared = {"nbstream.providers", "nbstream.providers.base", "nbstream.providers.common"}
    shared |= {"nbstream.providers.messages", "nbstream.providers.batches"}
    wrong = []
    for module, path in MODULES.items():
        if module.startswith("nbstream.providers"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in SDKS:
                    wrong.append(f"{module}:{node.lineno} imports the SDK {name}")
                elif (
                    name.startswith("nbstream.providers.")
                    and name in MODULES
                    and name not in shared
                ):
                    wrong.append(f"{module}:{node.lineno} imports the provider module {name}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_oversized():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_function_level_imports_say_why_they_are_lazy():
    """The lazy exports of ``nbstream/__init__`` aside, an import inside a function is there
    to keep a heavy library (pydantic, markdown-it, anywidget) out of ``%load_ext``, and its
    line says so; never to dodge a circle."""
    wrong = []
    for module, path in MODULES.items():
        if module == "nbstream":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        at_module_level = {node.lineno for _, node in imports(module, functions=False)}
        for target, node in imports(module, functions=True):
            if node.lineno in at_module_level:
                continue
            text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            if LAZY not in text:
                wrong.append(f"{module}:{node.lineno} imports {target} in a function")
    assert not wrong, "\n".join(wrong)
