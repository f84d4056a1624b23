"""The docs' examples, read from the markdown and run: a small runner of our own.

Every fenced block of README.md and docs/*.md is one of:

- ```` ```console ````: ``$ command`` lines, each followed by the output it shows. Each command
  runs in ``bash`` with the page's temp folder as its working directory, the installed
  ``lookup`` first on ``PATH``, ``LANG=C.UTF-8``, ``COLUMNS=100`` and no ``LOOKUP_*`` variable;
  what it prints (stdout and stderr, in the order a terminal shows them) is compared with the
  shown output. A command may continue over lines ending in ``\\`` or carry a heredoc
  (``cat > masks.csv <<'EOF'``: how a page creates its input files). ``$?`` is the previous
  command's exit code. A command ending in ``&`` starts a server in the background: its
  output is read until it shows what the page shows (the server is ready), its ``--port N``
  becomes a free port, and later commands of the page reach it by ``127.0.0.1:N``; it is
  stopped (SIGINT) when the page ends.
- ```` ```python ````: run in process (one namespace per page, top-level ``await`` allowed,
  ``127.0.0.1:N`` of a page's server mapped as for commands); what it prints is compared
  with the ```` ```text ```` block right after it, if any (none: it prints nothing).
- any block right after ``<!-- skip: why -->``: shown, not run (counted, with the reason).
- anything else (a diagram, a TOML or nginx file, JSON): not an example. ``sh``, ``bash``,
  ``shell`` and ``pycon`` blocks are refused unless marked: commands are shown as ``console``.

Both sides are normalised before comparing: ports, dates, durations, rates, request and job
ids, request counts (a batch source's chunk size follows its answer times), runs of blanks,
the page's folder (HOME) as ``~``; a shown line ``...`` stands for any number of lines.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIP = re.compile(r"^<!--\s*skip:\s*(?P<why>.+?)\s*-->$")
FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<lang>[\w-]*)(?P<rest>.*)$")
REFUSED = {"sh", "bash", "shell", "zsh", "pycon"}
HEREDOC = re.compile(r"<<-?\s*'?\"?(?P<end>[A-Za-z_]+)'?\"?")
COMMAND_TIMEOUT = 120.0

_NORMALISE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<date>"),
    (re.compile(r"\b(?:[0-9a-f]{32}|[a-s]{32})\b"), "<id>"),  # request ids: hex, or letters only
    (re.compile(r"(\"?(?:elapsed_ms|elapsed_s|eta_s|started|ended)\"?\s*[=:]\s*)[\d.]+"), r"\1<n>"),
    (re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:[a-z]+ ?)?/s\b"), "<rate>"),
    # requests to a batch source: its chunk size follows the source's answer times
    (re.compile(r"(?<![\w.])\d+(?:,\d{3})*( checks sent| requests\b)"), r"<n>\1"),
    (re.compile(r"(\bchecks: |\bchecks=|\brequests=|\"checks_sent\": ?)\d+(?:,\d{3})*"), r"\1<n>"),
    (re.compile(r"\bETA \d+:\d\d(?::\d\d)?"), "ETA <t>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|s)\b"), "<t>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(text: str) -> list[str]:
    """The lines of ``text`` with the parts that vary from run to run replaced."""
    lines = []
    for line in text.splitlines():
        for pattern, repl in _NORMALISE:
            line = pattern.sub(repl, line)
        lines.append(line.strip())
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def matches(shown: list[str], actual: list[str]) -> bool:
    """``actual`` equals ``shown``, where a shown ``...`` line stands for any lines and a
    ``...`` inside a shown line for any text (a server's log prefix)."""
    if not shown:
        return not actual
    if shown[0] == "...":
        return any(matches(shown[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and _line_matches(shown[0], actual[0]) and matches(shown[1:], actual[1:])


def _line_matches(shown: str, actual: str) -> bool:
    if "..." not in shown:
        return shown == actual
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, actual) is not None


@dataclass
class Command:
    line: int  # of its '$ ' line, from 1
    text: str
    shown: str
    shown_at: int = 0  # index (from 0) of the first shown line in the page's lines


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    skip: str | None = None
    output: str | None = None  # a python block's shown output (the text block after it)
    output_at: tuple[int, int] | None = None  # that block's body, as page line indexes
    end: int = 0  # index of the closing fence
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order, with their marks and commands."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i, last_end = 0, -1
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = "\n".join(line[indent:] for line in lines[i + 1 : j])
        prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.match(prev)
        block = Block(page, start + 1, m["lang"].lower(), body, skip["why"] if skip else None)
        last = blocks[-1] if blocks else None
        between = lines[last_end + 1 : start] if last is not None else []
        if (
            block.lang in ("text", "output") and last is not None and last.lang == "python"
            and last.skip is None and not any(x.strip() for x in between) and block.skip is None
        ):  # fmt: skip
            last.output, last.output_at = body, (start + 1, j)
        else:
            if block.lang == "console" and block.skip is None:
                block.commands = _commands(body, start + 2, block.where)
            block.end = j
            blocks.append(block)
        last_end = j
        i = j + 1
    return blocks


def _commands(body: str, first_line: int, where: str) -> list[Command]:
    lines = body.splitlines()
    if lines and not lines[0].startswith("$ "):
        raise ValueError(f"{where}: a console block starts with a '$ ' command line")
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        start = i
        text = lines[i][2:]
        heredoc = HEREDOC.search(text)
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        if heredoc:
            while i + 1 < len(lines) and lines[i].strip() != heredoc["end"]:
                i += 1
                text += "\n" + lines[i]
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        shown_at = first_line - 1 + i - len(shown)
        commands.append(Command(first_line + start, text, "\n".join(shown), shown_at))
    return commands


def clean_env(workdir: Path, bin_dir: Path) -> dict[str, str]:
    """A new reader's shell: no LOOKUP_* settings, the page's folder as HOME (no state of
    this machine's), our ``lookup`` first on PATH."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().startswith(("LOOKUP_", "XDG_", "LC_", "LANGUAGE")) and k != "TERM"
    }  # fmt: skip
    env.update(
        LANG="C.UTF-8", COLUMNS="100", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
        HOME=str(workdir), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    )  # fmt: skip
    return env


@dataclass
class Outcome:
    ran: int = 0
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class PageRunner:
    """Runs one page's examples in order, in one temp folder, with shared servers."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.bin = workdir / ".bin"
        self.bin.mkdir()
        shim = self.bin / "lookup"
        # The installed console script, as a user runs it (a `python -m lookup` stand-in
        # only where this interpreter has none, e.g. a bare checkout).
        script = Path(sys.executable).with_name("lookup")
        target = f'"{script}"' if script.is_file() else f'"{sys.executable}" -m lookup'
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
        self.env = clean_env(workdir, self.bin)
        self.ports: dict[str, str] = {}
        self.servers: list[subprocess.Popen[str]] = []
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.printed: dict[int, str] = {}  # what each example printed, by its first line
        self.outcome = Outcome()
        self._rc = 0
        self._drains: list[threading.Thread] = []

    def run(self) -> Outcome:
        try:
            for block in read_blocks(self.page):
                if block.lang in REFUSED and block.skip is None:
                    self.outcome.failures.append(
                        f"{block.where}: a ```{block.lang} block: show commands as ```console "
                        "(run and compared), or mark it <!-- skip: why -->"
                    )
                elif block.skip is not None and block.lang in {"console", "python", *REFUSED}:
                    self.outcome.skipped.append(f"{block.where} ({block.skip})")
                elif block.lang == "console":
                    for command in block.commands:
                        self._command(block, command)
                elif block.lang == "python":
                    self._python(block)
        finally:
            self.close()
        return self.outcome

    def _home(self, text: str) -> str:
        """The page's folder is HOME: shown as ``~``."""
        return text.replace(str(self.workdir), "~")

    def _substitute(self, text: str) -> str:
        for shown, real in self.ports.items():
            text = re.sub(rf"\b(127\.0\.0\.1|localhost):{shown}\b", rf"\g<1>:{real}", text)
        return text

    def _compare(self, where: str, what: str, shown: str, printed: str) -> None:
        self.outcome.ran += 1
        printed = self._home(printed)
        if not matches(normalise(shown), normalise(printed)):
            self.outcome.failures.append(
                f"{where}: {what}\n--- shown\n{shown}\n--- printed\n{printed}"
            )

    def _command(self, block: Block, command: Command) -> None:
        where = f"{self.page.name}:{command.line}"
        text = command.text.rstrip()
        if text.endswith("&"):
            self._background(where, text[:-1], command.shown)
            return
        rc = self._rc
        try:
            done = subprocess.run(
                ["bash", "-c", f"(exit {rc}); {self._substitute(text)}"],
                cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                encoding="utf-8", errors="replace", timeout=COMMAND_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.outcome.failures.append(f"{where}: $ {text}\n--- no end in {COMMAND_TIMEOUT} s")
            return
        self._rc = done.returncode
        self.printed[command.line] = self._home(done.stdout)
        self._compare(where, f"$ {text}", command.shown, done.stdout)

    def _free_port(self, shown: str) -> str:
        """A free loopback port standing for the page's ``shown`` one from now on."""
        if shown not in self.ports:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.ports[shown] = str(sock.getsockname()[1])
        return self.ports[shown]

    def _background(self, where: str, text: str, shown: str) -> None:
        port = re.search(r"--port[ =](\d+)", text)
        if port and port.group(1) != "0":
            text = text.replace(port.group(0), f"--port {self._free_port(port.group(1))}")
        proc = subprocess.Popen(
            ["bash", "-c", self._substitute(text)], cwd=self.workdir, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, encoding="utf-8", errors="replace", start_new_session=True,
        )  # fmt: skip
        self.servers.append(proc)
        lines: queue.Queue[str] = queue.Queue()  # a thread reads: no select() on a buffered pipe
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        self._drains.append(reader)
        want = normalise(shown)
        printed: list[str] = []
        until = time.monotonic() + COMMAND_TIMEOUT
        while want and not matches(want, normalise(self._home("".join(printed)))):
            try:
                line = lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if not line:  # the server ended
                break
            printed.append(line)
        first = self._home("".join(printed))
        self.printed[int(where.rsplit(":", 1)[1])] = first
        self._compare(where, f"$ {text}&", shown, first)

    def _python(self, block: Block) -> None:
        code = compile(
            self._substitute(block.body), block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        out = io.StringIO()
        cwd = Path.cwd()
        try:
            os.chdir(self.workdir)
            with contextlib.redirect_stdout(out):
                result = eval(code, self.namespace)  # the page's own example
                if asyncio.iscoroutine(result):
                    asyncio.run(result)
        except Exception as exc:  # noqa: BLE001  (the example's failure, reported with the others)
            self.outcome.ran += 1
            self.outcome.failures.append(f"{block.where}: raised {type(exc).__name__}: {exc}")
            return
        finally:
            os.chdir(cwd)
        self.printed[block.line] = self._home(out.getvalue())
        self._compare(block.where, "python block", block.output or "", out.getvalue())

    def close(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        for drain in self._drains:
            drain.join(timeout=10)  # the server is gone: its output ends
        self._drains.clear()
        for proc in self.servers:
            if proc.stdout is not None:
                proc.stdout.close()
        self.servers.clear()


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    """Hand a background server's output over line by line ("" at its end), reading it all,
    so that a full pipe never blocks the server."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            lines.put(line)
    lines.put("")


@contextlib.contextmanager
def page_runner(page: Path) -> Iterator[PageRunner]:
    with tempfile.TemporaryDirectory(prefix="lookup-docs-") as tmp:
        runner = PageRunner(page, Path(tmp))
        try:
            yield runner
        finally:
            runner.close()
