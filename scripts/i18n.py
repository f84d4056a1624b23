"""The message catalogs of ``lookup``: extract, check and compile (stdlib only).

    python scripts/i18n.py extract   add the _() / N_() / pgettext() literals of lookup/
                                     missing from lookup.po (with an empty msgstr)
    python scripts/i18n.py compile   lookup.po -> lookup.mo (the msgfmt logic below: no
                                     Babel or gettext tools needed)
    python scripts/i18n.py check     exit 1 when a message lacks a translation, a
                                     translation's {fields} differ, or lookup.mo is stale

The .mo is committed, so the wheel carries it. The compiler follows CPython's
``Tools/i18n/msgfmt.py``: a GNU .mo file, sorted keys, ``msgctxt`` as ``ctx\\x04id``.
"""

from __future__ import annotations

import argparse
import array
import ast
import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lookup"
PO = PACKAGE / "locale" / "zh_CN" / "LC_MESSAGES" / "lookup.po"
MO = PO.with_suffix(".mo")
FIELD = re.compile(r"\{(\w*)[^{}]*\}")
MARKERS = {"_": 0, "N_": 0, "pgettext": 1}

Key = tuple[str | None, str]  # (context, message id)


def _unquote(line: str) -> str:
    return str(ast.literal_eval(line))


def parse_po(text: str) -> dict[Key, str]:
    """``{(msgctxt, msgid): msgstr}`` of a .po file (the header under ``(None, "")``)."""
    entries: dict[Key, str] = {}
    ctx: str | None = None
    msgid = msgstr = None
    section = None
    fuzzy = False

    def flush() -> None:
        nonlocal ctx, msgid, msgstr, fuzzy
        if msgid is not None and not fuzzy:
            entries[(ctx, msgid)] = msgstr or ""
        ctx = msgid = msgstr = None
        fuzzy = False

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#,") and "fuzzy" in line:
            if msgstr is not None:
                flush()
            fuzzy = True
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgctxt "):
            if msgstr is not None:
                flush()
            ctx, section = _unquote(line[8:]), "ctx"
        elif line.startswith("msgid "):
            if msgstr is not None:
                flush()
            msgid, section = _unquote(line[6:]), "id"
        elif line.startswith("msgstr "):
            msgstr, section = _unquote(line[7:]), "str"
        elif line.startswith('"'):
            value = _unquote(line)
            if section == "ctx":
                ctx = (ctx or "") + value
            elif section == "id":
                msgid = (msgid or "") + value
            elif section == "str":
                msgstr = (msgstr or "") + value
        else:
            raise ValueError(f"{PO.name}: cannot read {raw!r}")
    if msgstr is not None:
        flush()
    return entries


def mo_bytes(entries: dict[Key, str]) -> bytes:
    """A GNU .mo file of ``entries`` (empty translations left out, as msgfmt does)."""
    pairs = sorted(
        ((f"{c}\x04{i}" if c is not None else i).encode(), s.encode())
        for (c, i), s in entries.items()
        if s
    )
    ids = strs = b""
    offsets = []
    for k, v in pairs:
        offsets.append((len(ids), len(k), len(strs), len(v)))
        ids += k + b"\0"
        strs += v + b"\0"
    n = len(pairs)
    keystart = 7 * 4 + 16 * n
    valuestart = keystart + len(ids)
    koffsets: list[int] = []
    voffsets: list[int] = []
    for o1, l1, o2, l2 in offsets:
        koffsets += [l1, o1 + keystart]
        voffsets += [l2, o2 + valuestart]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    return header + array.array("i", koffsets + voffsets).tobytes() + ids + strs


def extract(root: Path = PACKAGE) -> dict[Key, str]:
    """Every literal given to ``_``, ``N_`` or ``pgettext`` under ``root``: key -> where."""
    found: dict[Key, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            n = MARKERS.get(node.func.id)
            if n is None or len(node.args) <= n:
                continue
            args = node.args[: n + 1]
            if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
                continue
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            key: Key = (values[0], values[1]) if n else (None, values[0])
            found.setdefault(key, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def fields(text: str) -> list[str]:
    return sorted(FIELD.findall(text))


def problems() -> list[str]:
    """What is wrong with the catalog: missing or empty translations, field mismatches,
    a stale .mo."""
    entries = parse_po(PO.read_text(encoding="utf-8"))
    out = []
    for key, where in extract().items():
        if key not in entries:
            out.append(f"{where}: {key[1]!r} is not in {PO.name} (run: scripts/i18n.py extract)")
    for (ctx, msgid), msgstr in entries.items():
        if not msgid:
            continue
        label = f"{ctx}|{msgid}" if ctx else msgid
        if not msgstr.strip():
            out.append(f"{PO.name}: no zh_CN translation of {label!r}")
        elif fields(msgid) != fields(msgstr):
            out.append(f"{PO.name}: the fields of {label!r} differ in its translation")
    if not MO.exists() or MO.read_bytes() != mo_bytes(entries):
        out.append(f"{MO.name} is stale: run scripts/i18n.py compile")
    return out


def _po_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/i18n.py", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["extract", "compile", "check"])
    args = parser.parse_args(argv)
    if args.action == "extract":
        entries = parse_po(PO.read_text(encoding="utf-8"))
        new = [(k, w) for k, w in extract().items() if k not in entries]
        with PO.open("a", encoding="utf-8") as f:
            for (ctx, msgid), where in new:
                f.write(f"\n#: {where}\n")
                if ctx is not None:
                    f.write(f"msgctxt {_po_string(ctx)}\n")
                f.write(f'msgid {_po_string(msgid)}\nmsgstr ""\n')
        print(f"{len(new)} new messages in {PO.relative_to(ROOT)}")
        return 0
    if args.action == "compile":
        entries = parse_po(PO.read_text(encoding="utf-8"))
        MO.write_bytes(mo_bytes(entries))
        print(f"{MO.relative_to(ROOT)}: {sum(1 for v in entries.values() if v)} messages")
        return 0
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
