"""Regenerate requirements/constraints.txt: the versions tox installs (pip freeze of a fresh
environment with the [test] extra, tox and the build backend).

    python scripts/lock.py          # then run the tests, and commit the file if they pass
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "requirements" / "constraints.txt"
HEADER = """\
# Every version the suite was green with (pip freeze of a tox environment with the [test]
# extra, tox and the build backend). tox installs through it (PIP_CONSTRAINT); regenerate with
#   python scripts/lock.py
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{ROOT}[test]", "tox", "hatchling"], check=True)
        frozen = subprocess.run(
            [python, "-m", "pip", "freeze", "--exclude", "phone-order-lookup"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    OUT.write_text(HEADER + frozen, encoding="utf-8")
    sys.stdout.write(f"wrote {OUT.relative_to(ROOT)}: {len(frozen.splitlines())} pins\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
