"""The house keeps its plan (docs/architecture.md).

The layer order itself is one import-linter contract (``.importlinter``, run by ``lint-imports``
in tox); these tests keep what that contract cannot see: every folder is in it, no import
cycles between modules, no module reached by an import string, and the few modules that must
stay stdlib-only. Every ``import`` counts: module level, inside functions, under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import configparser
import os
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("LOOKUP_SOURCE_TREE") or Path(__file__).resolve().parent.parent)
PACKAGE = ROOT / "lookup"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .base import x
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            # ``from lookup.scale.redis import scripts`` imports the submodule
            subs = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODULES]
            out.update(subs or [name])
    return {name for name in out if name in MODULES}


def _layers() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter", encoding="utf-8")
    text = config["importlinter:contract:layers"]["layers"]
    return [name.strip() for line in text.splitlines() for name in line.split("|") if name]


def test_every_folder_is_a_layer_of_the_contract() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(_layers()), "add the folder to .importlinter and docs/architecture.md"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert not loose, f"every module lives in a layer's folder: {loose}"


def test_the_architecture_page_explains_every_folder() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for name in _layers() if f"`{name}/`" not in page]
    assert not missing, f"docs/architecture.md says nothing of {missing}"


def test_no_import_cycles() -> None:
    graph = {module: _imports(module) - {module} for module in MODULES}
    # A package's __init__ is imported by its submodules' import machinery, not by their
    # code: only real import statements are edges.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    # The package facade re-exports lazily from every layer; it is imported by nobody inside.
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_reached_by_an_import_string(module: str) -> None:
    """``importlib.import_module("lookup....")`` hides a dependency from the contract; the
    package facades (``lookup``, ``lookup.orders``) map their lazy names in one dict."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("lookup")
        ):
            pytest.fail(f"{module} imports {node.args[0].value!r} by name")


def test_errors_and_privacy_are_stdlib_only() -> None:
    for name in ("lookup.domain.errors", "lookup.domain.privacy"):
        assert _imports(name) == set(), name


def test_the_domain_does_no_asyncio_and_no_io_libraries() -> None:
    for module in (m for m in MODULES if m.startswith("lookup.domain")):
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {
            (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        }
        assert not names & {"asyncio", "aiohttp", "socket", "redis", "asyncpg"}, module


def test_the_checker_is_wired_in_runtime_only() -> None:
    """``open_engine`` is the one place that makes a Checker for an opened API (the library's
    conveniences for a bare ``api=``, ``find`` and the thread client, make their own)."""
    makers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Checker":
                makers.add(module)
    assert makers <= {"lookup.runtime.engine", "lookup.engine.matcher", "lookup.engine.threads"}
