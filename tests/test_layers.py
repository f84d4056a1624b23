"""The layers of DESIGN.md, kept by an AST test: each module imports only its layer or lower,
and the shells never import each other (only the shared ``lookup.shell``).

Every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lookup"

LAYERS: dict[str, int] = {
    # L0 vocabulary: no I/O, no asyncio
    "errors": 0, "privacy": 0, "_net": 0,
    # L1 pure domain
    "masks": 1, "segments": 1, "models": 1, "candidates": 1,
    # L2 engine
    "orders": 2, "policies": 2, "checkstate": 2, "checker": 2, "share": 2, "shared": 2,
    "raybatch": 2, "matcher": 2, "batch": 2, "sync": 2,
    # L3 files
    "batchfile": 3, "batchread": 3, "journal": 3,
    # L4 wiring
    "settings": 4, "logs": 4, "runtime": 4, "_loop": 4,
    # L5 shells
    "shell": 5, "cli": 5, "batch_cli": 5, "__main__": 5,
    "service": 5, "service_api": 5, "httpd": 5, "openapi": 5, "problems": 5, "metrics": 5,
    "webui": 5, "webjobs": 5, "jobs": 5, "uploads": 5, "workers": 5,
    "mockapi": 5, "_mockfaults": 5, "_mockstore": 5,
}  # fmt: skip
# A shell may be several modules; they import each other, never another shell's.
SHELL_OF: dict[str, str] = {
    "__main__": "cli",
    "service_api": "service", "httpd": "service", "openapi": "service", "problems": "service",
    "metrics": "service", "webui": "service", "webjobs": "service", "jobs": "service",
    "uploads": "service", "workers": "service",
    "_mockfaults": "mockapi", "_mockstore": "mockapi",
}  # fmt: skip
SHARED_SHELL = "shell"
# (importer, imported): why the rule bends.
ALLOWED: dict[tuple[str, str], str] = {
    ("runtime", "mockapi"): "--api demo starts the bundled mock order API (DESIGN: it stays)",
    ("__main__", "cli"): "python -m lookup is the CLI",
    ("cli", "__init__"): "--version reads lookup.__version__",
    ("service", "__init__"): "the OpenAPI document's version is lookup.__version__",
}
NOT_LAYERED = {"__init__"}  # the package facade: lazy re-exports of every layer


def _top(module: str) -> str:
    """``lookup.orders.http`` -> ``orders``; ``lookup`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        found[".".join(rel.parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
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
            out.add(name)
    return {name for name in out if name == "lookup" or name.startswith("lookup.")}


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    unknown = {m for m in MODULES if _top(m) not in LAYERS and _top(m) not in NOT_LAYERED}
    assert not unknown, f"add these to LAYERS (and DESIGN.md): {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _top(m) not in NOT_LAYERED))
def test_imports_respect_the_layers(module: str) -> None:
    mine = _top(module)
    level = LAYERS[mine]
    bad = []
    for imported in sorted(_imports(MODULES[module], module)):
        other = _top(imported)
        if other == mine or (mine, other) in ALLOWED:
            continue
        if level == 5 and SHELL_OF.get(mine, mine) == SHELL_OF.get(other, other):
            continue  # one shell's own modules
        if other in NOT_LAYERED:
            bad.append(f"{imported} (the package facade: import the module itself)")
        elif LAYERS[other] > level:
            bad.append(f"{imported} (L{LAYERS[other]} above L{level})")
        elif level == LAYERS[other] == 5 and other != SHARED_SHELL:
            bad.append(f"{imported} (shells never import each other; share via lookup.shell)")
        elif mine == SHARED_SHELL and LAYERS[other] == 5:
            bad.append(f"{imported} (lookup.shell must not depend on a shell)")
    assert not bad, f"{module} imports " + "; ".join(bad)


def test_privacy_and_errors_are_stdlib_only() -> None:
    for name in ("lookup.errors", "lookup.privacy"):
        assert _imports(MODULES[name], name) == set(), name


def test_the_checker_is_wired_in_runtime_only() -> None:
    """``open_engine`` is the one place that makes a Checker for an opened API."""
    makers = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "Checker"):  # fmt: skip
                makers.append(module)
    # runtime for the shells; the library's conveniences for a bare api=: find() and the
    # sync client
    assert set(makers) <= {"lookup.runtime", "lookup.matcher", "lookup.sync"}, makers
