"""The package users install is the one the tests ran: what tox installed from the wheel
holds every module and file of the source tree, the bundled data, and its metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import lookup

INSTALLED = Path(lookup.__file__).resolve().parent
SOURCE = Path(os.environ.get("LOOKUP_SOURCE_TREE") or Path(__file__).resolve().parents[1])


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_every_file_of_the_source_tree_is_installed() -> None:
    missing = _files(SOURCE / "lookup") - _files(INSTALLED)
    assert not missing, f"not in the installed package (the wheel): {sorted(missing)}"


def test_the_bundled_data_is_installed() -> None:
    data = {f"data/{name}" for name in _files(SOURCE / "data")}
    installed = _files(INSTALLED)
    assert data <= installed or INSTALLED == SOURCE / "lookup", sorted(data - installed)


@pytest.mark.skipif(os.environ.get("LOOKUP_TEST_AGAINST_WHEEL") != "1", reason="tox only")
def test_the_metadata_says_the_licence_and_the_extras() -> None:
    meta = metadata.metadata("phone-order-lookup")
    assert meta["License-Expression"] == "MIT"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"postgres", "redis", "ray", "workers", "fast", "test"} <= extras


@pytest.mark.skipif(os.environ.get("LOOKUP_TEST_AGAINST_WHEEL") != "1", reason="tox only")
def test_the_suite_and_its_children_import_the_installed_package() -> None:
    assert not INSTALLED.is_relative_to(SOURCE / "lookup"), INSTALLED
    child = subprocess.run(
        [sys.executable, "-c", "import lookup; print(lookup.__file__)"],
        cwd=SOURCE, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert not Path(child.stdout.strip()).resolve().is_relative_to(SOURCE / "lookup")


@pytest.mark.parametrize(
    "module",
    ["lookup.scale.redis.connect", "lookup.scale.redis.quota", "lookup.scale.ray.batch",
     "lookup.service.workers", "lookup.orders.postgres", "lookup.mockapi.pgseed",
     "lookup.runtime.loop"],
)  # fmt: skip
def test_each_extras_modules_import_from_the_installation(module: str) -> None:
    """The modules behind --shared, --engine ray, --workers, postgresql:// and [fast]: the
    ones a v2 wheel left out (their end-to-end tests drive them from the same install)."""
    child = subprocess.run(
        [sys.executable, "-c", f"import {module}, lookup; print(lookup.__file__)"],
        cwd=SOURCE, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]


def test_the_sdist_carries_what_its_tests_need(tmp_path: Path) -> None:
    """The source distribution is built from the checkout and holds the suite, its support
    modules, the pinned versions and the tox file: `tox` runs from an unpacked sdist."""
    import tarfile

    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)],
        cwd=SOURCE, check=True, capture_output=True,
    )  # fmt: skip
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    tests = {str(p.relative_to(SOURCE)) for p in (SOURCE / "tests").rglob("*.py")}
    needed = tests | {"tox.ini", "requirements/constraints.txt", "pyproject.toml", "LICENSE",
                      "NOTICE", "README.md", "mkdocs.yml", ".importlinter", "data/segments.bin"}  # fmt: skip
    assert not needed - names, sorted(needed - names)
    modules = {str(p.relative_to(SOURCE)) for p in (SOURCE / "lookup").rglob("*.py")}
    assert not modules - names, sorted(modules - names)


def test_the_console_script_runs_as_the_readme_says() -> None:
    """`lookup` is the installed entry point (pip's script), not `python -m lookup`."""
    script = Path(sys.executable).with_name("lookup")
    if not script.is_file():
        pytest.skip("no console script next to this interpreter (not an installed package)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          check=False, cwd=SOURCE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("lookup ")
