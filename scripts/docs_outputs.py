"""Rewrite the outputs shown in README.md and docs/*.md from real runs.

    python scripts/docs_outputs.py [PAGE ...]     # default: README.md and every docs page

Runs each page's examples the way tests/test_docs_examples.py does and, where what a command
(or a python block) printed no longer matches what the page shows, puts the printed output in
its place. Review the diff before committing: the test compares, this script rewrites.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.docexamples import matches, normalise, page_runner, read_blocks


def rewrite(page: Path) -> int:
    """Rewrite ``page``'s stale outputs; return how many were replaced."""
    with page_runner(page) as runner:
        outcome = runner.run()
    lines = page.read_text(encoding="utf-8").splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # [start, end) of page lines -> new lines
    for block in read_blocks(page):
        if block.skip is not None:
            continue
        if block.lang == "console":
            for command in block.commands:
                printed = runner.printed.get(command.line)
                if printed is None or matches(normalise(command.shown), normalise(printed)):
                    continue
                count = len(command.shown.splitlines()) if command.shown else 0
                new = printed.rstrip("\n").splitlines()
                if command.text.rstrip().endswith("&"):
                    new = new[:count] or new
                edits.append((command.shown_at, command.shown_at + count, new))
        elif block.lang == "python":
            printed = runner.printed.get(block.line)
            if printed is None or matches(normalise(block.output or ""), normalise(printed)):
                continue
            new = printed.rstrip("\n").splitlines()
            if block.output_at is not None:
                edits.append((*block.output_at, new))
            else:
                edits.append((block.end + 1, block.end + 1, ["```text", *new, "```"]))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    if edits:
        page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for failure in outcome.failures:
        if "raised" in failure.split("\n", 1)[0] or "```" in failure.split("\n", 1)[0]:
            sys.stderr.write(failure + "\n")
    return len(edits)


def main(argv: list[str]) -> int:
    pages = [Path(a).resolve() for a in argv] or [
        ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))
    ]
    for page in pages:
        sys.stdout.write(f"{page.relative_to(ROOT)}: {rewrite(page)} outputs rewritten\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
