"""Logging, configured in one place: text or JSON lines, phone numbers masked, secrets redacted.

Every line that leaves a handler set up here goes through :class:`lookup.domain.privacy.Redactor`:
each mobile number, however spelled, turned into ``138****1234``, each registered secret
(API token, header values, service tokens) and URL credential into ``***``, whatever
logged it and whether it sits in the message, its arguments or a traceback. The audit logger ``lookup.audit`` writes one line per lookup; the full
matched number is added to it only when the operator turns ``audit_full_numbers`` on.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from lookup.domain.errors import ConfigError
from lookup.domain.privacy import Redactor, escape_controls, mask_phone

if TYPE_CHECKING:
    from lookup.runtime.settings import Settings

__all__ = ["mask_numbers", "setup_logging"]

mask_numbers = mask_phone
"""``13812345678`` -> ``138****5678`` everywhere in ``text`` (:func:`lookup.domain.privacy.mask_phone`)."""


def _block(text: str) -> str:
    """A traceback or stack under its record: control characters escaped but its own
    line breaks, and every line indented, so that no line of it looks like a record."""
    return "\n".join("  " + line for line in escape_controls(text, keep="\n").split("\n"))


class TextFormatter(logging.Formatter):
    """``time level logger: message`` with numbers masked and secrets redacted; with
    ``worker``, ``time level [worker W] logger: message`` (``serve --workers N``).

    One record is one line: control characters in the message (a path from a request, a
    plug-in's error) are escaped, so a value from outside cannot forge a record or steer
    a terminal. A traceback follows on lines that start with a space."""

    def __init__(self, redact: Redactor, full_numbers: bool, worker: str | None = None) -> None:
        tag = f" [worker {worker.replace('%', '%%')}]" if worker else ""
        super().__init__(f"%(asctime)s %(levelname)s{tag} %(name)s: %(message)s")
        self.redact = redact
        self.full_numbers = full_numbers

    def formatMessage(self, record: logging.LogRecord) -> str:
        # masked before escaping: "138\n5715\n2046" is a number, its escape is not
        record.message = escape_controls(self.redact(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _block(self.redact(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:
        return _block(self.redact(super().formatStack(stack_info)))

    def format(self, record: logging.LogRecord) -> str:
        # logging's own format, without its cache of the traceback text (a handler
        # that formatted the record first may have left it unescaped)
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + _block(self.redact(record.exc_text))
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        full = getattr(record, "full_phone", None)
        if self.full_numbers and full:
            line += f" full_phone={escape_controls(str(full))}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "full_phone",
    }

    def __init__(self, redact: Redactor, full_numbers: bool, worker: str | None = None) -> None:
        super().__init__()
        self.redact = redact
        self.full_numbers = full_numbers
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker:
            data["worker"] = self.worker
        for key, value in vars(record).items():
            if key not in self._SKIP:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        clean = {key: self.redact.value(value) for key, value in data.items()}
        full = getattr(record, "full_phone", None)
        if self.full_numbers and full:
            clean["full_phone"] = full
        # json escapes C0; DEL, C1, bidi overrides and line separators are escaped too,
        # as \uXXXX (still valid JSON), so the raw line cannot steer a terminal
        return escape_controls(json.dumps(clean, ensure_ascii=False, default=str), json=True)


class TextSink(Protocol):
    """Where log lines go: a text stream, or a terminal that keeps a live line below them."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def _audit_stream(path: str) -> TextIO:
    """``path`` opened for appending, created 0600, never through a symlink; a FIFO or a
    device is refused without waiting for a reader (``O_NONBLOCK``)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        st = os.lstat(path)
    except OSError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"the audit file {path} is {kind} (--audit-file, LOOKUP_AUDIT_FILE: "
                              "a regular file, not a symlink, FIFO or device)")  # fmt: skip
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in since: fail, do not hang
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the audit file {path}: {exc.strerror or exc} (--audit-file, "
            "LOOKUP_AUDIT_FILE: a writable regular file, not a symlink)"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"the audit file {path} is not a regular file (--audit-file)")
    os.set_blocking(fd, True)
    return open(fd, "a", encoding="utf-8", buffering=1)


def setup_logging(
    level: str | int = "WARNING",
    fmt: str = "text",
    *,
    secrets: Iterable[str] = (),
    audit_full_numbers: bool = False,
    audit_file: str | None = None,
    stream: TextSink | None = None,
    worker: str | None = None,
) -> logging.Handler:
    """Send ``lookup`` (and aiohttp) logs to ``stream`` (stderr) as text or JSON lines.

    The audit logger always logs at INFO so that each lookup leaves its line, unless the
    level is above WARNING; with ``audit_file`` its lines go to that file (appended,
    created 0600) and not to ``stream``. ``worker`` (a worker process's id) tags every
    line. Returns the handler (tests remove it again).
    """
    redact = Redactor(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(redact, audit_full_numbers, worker)
        if fmt == "json"
        else TextFormatter(redact, audit_full_numbers, worker)
    )
    handler: logging.StreamHandler[TextSink] = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler._lookup_handler = True  # type: ignore[attr-defined]
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    audit = logging.getLogger("lookup.audit")
    for name in ("lookup", "aiohttp", "lookup.audit"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_lookup_handler", False)]:
            logger.removeHandler(old)
            if isinstance(old, _AuditHandler):
                old.close()
    for name in ("lookup", "aiohttp"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(numeric)
        logger.propagate = False
    audit.propagate = True
    if audit_file:
        file_handler = _AuditHandler(_audit_stream(audit_file))
        file_handler.setFormatter(formatter)
        file_handler._lookup_handler = True  # type: ignore[attr-defined]
        audit.addHandler(file_handler)
        audit.propagate = False
        audit.setLevel(logging.INFO)  # the operator asked for the file: --quiet or not
    else:
        audit.setLevel(min(numeric, logging.INFO) if numeric <= logging.WARNING else numeric)
    return handler


class _AuditHandler(logging.StreamHandler[TextIO]):
    """A stream handler that closes its file when replaced."""

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()

def configure_logging(
    settings: Settings, *, stream: TextSink | None = None, worker: str | None = None
) -> None:
    """Log lines to ``stream`` (stderr, or a :class:`Terminal`), secrets of ``settings``
    redacted; audit lines to ``settings.audit_file`` when set; ``worker`` tags each line."""
    setup_logging(
        settings.log_level,
        settings.log_format,
        secrets=settings.secret_values(),
        audit_full_numbers=settings.audit_full_numbers,
        audit_file=settings.audit_file,
        stream=stream,
        worker=worker,
    )
