"""Docs that cannot go stale: every command and code example of README.md and docs/*.md is
run and compared with the output it shows (the runner: ``support.docexamples``), the
configuration page lists every setting, and the site's navigation lists every page.

``python scripts/docs_outputs.py`` rewrites the shown outputs from real runs; this test only
compares.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.components import missing
from support.docexamples import page_runner, read_blocks

from lookup.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
MAX_SKIPPED = 8  # blocks shown but not run (a server that never ends, pip install ...)
_COUNTS: dict[str, tuple[int, list[str]]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Say how many examples ran and which were skipped, and why, after the module."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not _COUNTS:
        return
    ran = sum(n for n, _ in _COUNTS.values())
    skipped = [s for _, skips in _COUNTS.values() for s in skips]
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("-", f"docs examples: {ran} run and compared, {len(skipped)} skipped")
        for item in skipped:
            reporter.write_line(f"  skipped {item}")


TOOLS = ("curl", "jq", "iconv", "redis-server", "redis-cli")  # what the pages' commands call


def _tools_missing(page: Path) -> list[str]:
    words = {
        word for block in read_blocks(page) if block.skip is None
        for command in block.commands for word in re.findall(r"[\w-]+", command.text)
    }  # fmt: skip
    return [tool for tool in TOOLS if tool in words and shutil.which(tool) is None]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_print_what_they_show(page: Path) -> None:
    if absent := _tools_missing(page):
        missing(f"{page.name}'s examples call {', '.join(absent)}: install it (.ci/run does)")
    with page_runner(page) as runner:
        outcome = runner.run()
    _COUNTS[page.name] = (outcome.ran, outcome.skipped)
    assert not outcome.failures, "\n\n".join(outcome.failures)


def test_the_docs_run_many_examples_and_skip_few() -> None:
    blocks = [b for page in PAGES for b in read_blocks(page)]
    commands = sum(len(b.commands) for b in blocks if b.lang == "console" and b.skip is None)
    python = sum(1 for b in blocks if b.lang == "python" and b.skip is None)
    skipped = [b.where for b in blocks if b.skip is not None]
    assert commands >= 40 and python >= 4, (commands, python)
    assert len(skipped) <= MAX_SKIPPED, f"too many examples not run: {skipped}"


def test_the_readme_library_example_is_short_and_self_contained() -> None:
    readme = read_blocks(ROOT / "README.md")
    python = [b for b in readme if b.lang == "python" and b.skip is None]
    assert python, "README.md has no runnable library example"
    assert "import lookup" in python[0].body and len(python[0].body.splitlines()) <= 14


# -- the configuration page ------------------------------------------------------------------------

_ROW = re.compile(r"^\|\s*`(LOOKUP_[A-Z_]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|$")


def _default(name: str) -> str:
    """How the configuration page writes a setting's default."""
    info = Settings.model_fields[name]
    value = info.get_default(call_default_factory=True)
    if value is None or value in ([], {}):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _options() -> dict[str, str]:
    from lookup.runtime import settings

    return dict(settings._OPTIONS)


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    """One row per ``Settings`` field: ``LOOKUP_<NAME>``, its option, its default."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = {m[1]: (m[2], m[3]) for line in text.splitlines() if (m := _ROW.match(line.strip()))}
    fields = {f"LOOKUP_{name.upper()}": name for name in Settings.model_fields}
    missing = sorted(set(fields) - set(rows))
    stale = sorted(set(rows) - set(fields))
    assert not missing, f"docs/configuration.md misses {missing}"
    assert not stale, f"docs/configuration.md lists settings that do not exist: {stale}"
    options = _options()
    for variable, name in fields.items():
        option, default = rows[variable]
        want_option = f"`{options[name]}`" if name in options else ""
        assert option == want_option, f"{variable}: option {option!r}, expected {want_option!r}"
        assert default == _default(name), f"{variable}: default {default!r}, expected {_default(name)!r}"


# -- the site ---------------------------------------------------------------------------------------


def _nav_pages(nav: object) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def test_the_site_navigation_lists_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert sorted(_nav_pages(config["nav"])) == sorted(p.name for p in DOCS.glob("*.md"))


# -- the runner itself: a stale example fails ----------------------------------------------------

STALE_PAGE = """\
```console
$ echo 'took 0.41 s at 127.0.0.1:4242'
took 12 ms at 127.0.0.1:80
$ printf 'a\\nb\\nc\\n'
a
...
$ echo $?
0
$ echo fresh
stale
```

```python
print("shown")
```
```text
not what it prints
```

```sh
rm -rf /
```

<!-- skip: a server that never ends -->
```console
$ sleep infinity
```
"""


def test_the_runner_fails_stale_outputs_and_unmarked_shell_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(STALE_PAGE, encoding="utf-8")
    with page_runner(page) as runner:
        outcome = runner.run()
    assert outcome.ran == 5
    assert outcome.skipped == ["page.md:25 (a server that never ends)"]
    failed = [f.split("\n", 1)[0] for f in outcome.failures]
    assert failed == [
        "page.md:9: $ echo fresh",
        "page.md:13: python block",
        (
            "page.md:20: a ```sh block: show commands as ```console (run and compared), "
            "or mark it <!-- skip: why -->"
        ),
    ]
