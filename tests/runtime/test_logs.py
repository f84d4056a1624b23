"""Logging: numbers masked and secrets redacted in text and JSON lines; the opt-in audit number."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from lookup.domain.models import LookupResult
from lookup.engine.matcher import audit
from lookup.runtime.logs import mask_numbers, setup_logging

FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")
SECRET = "tok-abcdef123456"
LOGGERS = ("lookup", "lookup.audit", "aiohttp")


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """setup_logging changes process-wide loggers: put handlers, levels, propagate back."""
    saved = [
        (lg, list(lg.handlers), lg.level, lg.propagate)
        for lg in (logging.getLogger(n) for n in LOGGERS)
    ]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers  # drops the handlers setup_logging added
        lg.setLevel(level)
        lg.propagate = propagate


Setup = Callable[..., io.StringIO]


@pytest.fixture
def logs() -> Setup:
    """``logs(fmt, level=..., secrets=..., audit_full_numbers=...)`` -> the stream written to."""

    def setup(fmt: str = "text", level: str = "DEBUG", **kwargs: object) -> io.StringIO:
        stream = io.StringIO()
        handler = setup_logging(level, fmt, stream=stream, **kwargs)  # type: ignore[arg-type]
        assert isinstance(handler, logging.Handler)
        return stream

    return setup


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(stream)]


log = logging.getLogger("lookup.tests")


# -- mask_numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13812345678", "138****5678"),
        ("phone=13812345678 ok", "phone=138****5678 ok"),
        ("checking 13812345678.", "checking 138****5678."),
        ("a13812345678b", "a138****5678b"),  # letters are not digits
        ("+86 13812345678", "+86 138****5678"),
        ("(13812345678)", "(138****5678)"),
        ("13812345678,13987654321 19900001111", "138****5678,139****4321 199****1111"),
        ("138123456789", "138123456789"),  # 12 digits: not a phone number
        ("913812345678", "913812345678"),  # a digit before
        ("1381234567", "1381234567"),  # 10 digits
        ("23812345678", "23812345678"),  # does not start with 1
        ("138-1234-5678", "138-****-5678"),  # grouped: still a number (lookup.domain.privacy)
        ("138****5678", "138****5678"),  # already masked
        ("", ""),
        ("电话13812345678谢谢", "电话138****5678谢谢"),
    ],
)
def test_mask_numbers(text: str, expected: str) -> None:
    assert mask_numbers(text) == expected


def test_mask_numbers_leaves_no_full_number() -> None:
    text = " ".join(f"1{i:010d}" for i in range(0, 10**10, 10**8 + 7))
    assert FULL_NUMBER.findall(mask_numbers(text)) == []


# -- text formatter -------------------------------------------------------------------------------


def test_text_masks_message_and_args(logs: Setup) -> None:
    stream = logs("text")
    log.info("checking 13812345678 and %s (%d)", "13987654321", 13700001111)
    (line,) = lines(stream)
    assert FULL_NUMBER.findall(line) == []
    assert "138****5678" in line
    assert "139****4321" in line
    assert "137****1111" in line
    assert " INFO lookup.tests: checking" in line


def test_text_masks_tracebacks(logs: Setup) -> None:
    stream = logs("text", secrets=[SECRET])
    try:
        raise ValueError(f"no orders for 13812345678 with {SECRET}")
    except ValueError:
        log.exception("lookup of %s failed", "13987654321")
    text = stream.getvalue()
    assert "Traceback" in text
    assert "ValueError: no orders for 138****5678 with ***" in text
    assert FULL_NUMBER.findall(text) == []
    assert SECRET not in text


def test_text_redacts_secrets(logs: Setup) -> None:
    stream = logs("text", secrets=[SECRET, "hunter2hunter2"])
    log.warning("headers %s", {"Authorization": f"Bearer {SECRET}", "X-Api-Key": "hunter2hunter2"})
    try:
        raise RuntimeError(f"token {SECRET} refused")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert "hunter2hunter2" not in text
    assert "Bearer ***" in text
    assert "RuntimeError: token *** refused" in text


def test_overlapping_secrets_are_redacted_whole(logs: Setup) -> None:
    stream = logs("text", secrets=["abcd", "abcdefgh"])
    log.warning("key=abcdefgh")
    assert lines(stream)[0].endswith("key=***")


def test_secret_that_looks_like_a_number(logs: Setup) -> None:
    stream = logs("text", secrets=["13812345678-key"])
    log.warning("key=13812345678-key phone=13912345678")
    assert lines(stream)[0].endswith("key=*** phone=139****5678")


def test_level_filters(logs: Setup) -> None:
    stream = logs("text", level="WARNING")
    log.info("not shown")
    log.debug("not shown")
    log.warning("shown")
    assert [line.rsplit(": ", 1)[1] for line in lines(stream)] == ["shown"]


def test_aiohttp_logs_are_masked_too(logs: Setup) -> None:
    stream = logs("text", secrets=[SECRET])
    logging.getLogger("aiohttp.client").warning("GET /orders?phone=13812345678 %s", SECRET)
    (line,) = lines(stream)
    assert "138****5678" in line
    assert FULL_NUMBER.findall(line) == []
    assert SECRET not in line


# -- JSON formatter -------------------------------------------------------------------------------


def test_json_lines_parse_and_mask(logs: Setup) -> None:
    stream = logs("json", secrets=[SECRET])
    log.info("checking %s", "13812345678", extra={"phone": "13987654321", "token": SECRET})
    log.warning("杭州 %s", "13700001111")
    first, second = json_lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "lookup.tests"
    assert first["message"] == "checking 138****5678"
    assert first["phone"] == "139****4321"  # extras are masked as well
    assert first["token"] == "***"
    assert isinstance(first["time"], str) and str(first["time"]).endswith("Z")
    assert second["message"] == "杭州 137****1111"
    assert FULL_NUMBER.findall(stream.getvalue()) == []
    assert SECRET not in stream.getvalue()


def test_json_masks_tracebacks(logs: Setup) -> None:
    stream = logs("json", secrets=[SECRET])
    try:
        raise ValueError(f"no orders for 13812345678 with {SECRET}")
    except ValueError:
        log.exception("lookup of %s failed", "13987654321")
    (data,) = json_lines(stream)
    assert data["level"] == "ERROR"
    assert data["message"] == "lookup of 139****4321 failed"
    exc = str(data["exc"])
    assert "Traceback" in exc
    assert "ValueError: no orders for 138****5678 with ***" in exc
    assert FULL_NUMBER.findall(stream.getvalue()) == []
    assert SECRET not in stream.getvalue()


def test_json_nested_extras(logs: Setup) -> None:
    stream = logs("json", secrets=[SECRET])
    log.info("request", extra={"headers": {"Authorization": f"Bearer {SECRET}"}, "n": 3})
    (data,) = json_lines(stream)
    assert data["headers"] == {"Authorization": "Bearer ***"}
    assert data["n"] == 3


def test_json_line_with_an_integer_phone_extra_parses(logs: Setup) -> None:
    stream = logs("json")
    log.info("checked", extra={"phone": 13812345678})
    (data,) = json_lines(stream)
    assert "13812345678" not in stream.getvalue()
    assert data["phone"] in ("138****5678", 138)


def test_json_redacts_secrets_with_json_escaped_characters(logs: Setup) -> None:
    secret = 'pa"ss\\word-1234'
    stream = logs("json", secrets=[secret])
    log.warning("header value %s", secret)
    (data,) = json_lines(stream)
    assert secret not in str(data["message"])
    assert data["message"] == "header value ***"


# -- audit ----------------------------------------------------------------------------------------


MATCHED = LookupResult(
    status="matched",
    mask="138****2046",
    hint="浙江 杭州",
    phone="13857152046",
    tier="city",
    checks_sent=64,
    elapsed_ms=12.5,
)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_audit_masks_the_number_by_default(logs: Setup, fmt: str) -> None:
    stream = logs(fmt, level="WARNING")  # the audit line is logged at INFO regardless
    audit(MATCHED, "tests")
    (line,) = lines(stream)
    assert "13857152046" not in line
    assert "full_phone" not in line
    assert "phone=138****2046" in line
    assert "caller=tests" in line
    if fmt == "json":
        data = json.loads(line)
        assert data["logger"] == "lookup.audit"
        assert data["status"] == "matched"
        assert "full_phone" not in data


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_audit_full_number_when_the_operator_opts_in(logs: Setup, fmt: str) -> None:
    stream = logs(fmt, level="WARNING", audit_full_numbers=True)
    audit(MATCHED, "tests")
    (line,) = lines(stream)
    assert "13857152046" in line
    assert "phone=138****2046" in line  # the message itself stays masked
    if fmt == "json":
        assert json.loads(line)["full_phone"] == "13857152046"
    else:
        assert line.endswith(" full_phone=13857152046")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_full_numbers_only_on_audit_records_with_full_phone(logs: Setup, fmt: str) -> None:
    """audit_full_numbers does not unmask other log lines."""
    stream = logs(fmt, audit_full_numbers=True)
    log.info("checking %s", "13812345678")
    audit(MATCHED.model_copy(update={"status": "not_found", "phone": None, "tier": None}), "t")
    assert FULL_NUMBER.findall(stream.getvalue()) == []
    if fmt == "json":
        assert len(json_lines(stream)) == 2


def test_audit_silenced_above_warning(logs: Setup) -> None:
    stream = logs("text", level="ERROR")
    audit(MATCHED, "tests")
    assert stream.getvalue() == ""


# -- setup_logging --------------------------------------------------------------------------------


def test_setup_logging_returns_its_handler_and_replaces_the_previous_one() -> None:
    first, second = io.StringIO(), io.StringIO()
    h1 = setup_logging("INFO", "text", stream=first)
    h2 = setup_logging("INFO", "json", stream=second)
    assert isinstance(h2, logging.StreamHandler)
    for name in ("lookup", "aiohttp"):
        logger = logging.getLogger(name)
        assert h2 in logger.handlers
        assert h1 not in logger.handlers
        assert logger.propagate is False
    log.info("once")
    assert first.getvalue() == ""
    assert [d["message"] for d in json_lines(second)] == ["once"]


def test_setup_logging_levels() -> None:
    setup_logging("debug", "text", stream=io.StringIO())
    assert logging.getLogger("lookup").level == logging.DEBUG
    assert logging.getLogger("aiohttp").level == logging.DEBUG
    setup_logging(logging.WARNING, "text", stream=io.StringIO())
    assert logging.getLogger("lookup").level == logging.WARNING
    assert logging.getLogger("lookup.audit").level == logging.INFO


def test_short_secrets_are_not_redacted(logs: Setup) -> None:
    """Secrets under 4 characters would blank out ordinary words: they are not registered."""
    stream = logs("text", secrets=["abc", "", SECRET])
    log.warning("abc %s", SECRET)
    assert lines(stream)[0].endswith("abc ***")


# -- control characters from outside never reach the log raw --------------------------------

_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
HOSTILE_VALUES = [
    "x\n2024-01-01 00:00:00,000 INFO lookup.audit: mask=138****2046 status=matched",
    "x\r\n2024-01-01 00:00:00,000 WARNING lookup: forged",
    "nul\x00here",
    "\x1b[2J\x1b[31mred\x1b[0m",
    "bell\x07 and backspace\x08",
    "del\x7f and csi\x9b31m",
    "bidi \u202eevil\u202c and isolate \u2066x\u2069",
    "line\u2028separator\u2029paragraph",
    "vertical\x0btab\x0cfeed\x1cfile-sep\x85nel",
    "138\n5715\n2046",  # a number split by line breaks is still a number
]


def _assert_clean_text(out: str, records: int) -> None:
    physical = out.splitlines()
    assert len([ln for ln in physical if _RECORD_START.match(ln)]) == records
    for line in physical:
        assert line.isprintable(), repr(line)
        assert _RECORD_START.match(line) or line.startswith(" "), repr(line)
    assert "57152046" not in re.sub(r"\\[nrx]", "", out.replace("\\n", ""))


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_text_lines_escape_control_characters(logs: Setup, value: str) -> None:
    stream = logs("text")
    log.warning("GET %s 404", value)
    logging.getLogger("aiohttp.access").info("%s", value)
    _assert_clean_text(stream.getvalue(), 2)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_text_tracebacks_escape_control_characters(logs: Setup, value: str) -> None:
    stream = logs("text")
    try:
        raise RuntimeError(value)
    except RuntimeError:
        log.exception("the plug-in failed: %s", value)
    out = stream.getvalue()
    _assert_clean_text(out, 1)
    assert "Traceback" in out


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_json_lines_escape_control_characters(logs: Setup, value: str) -> None:
    stream = logs("json")
    log.warning("GET %s 404", value, extra={"path": value})
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out[:-1].isprintable(), repr(out)
    data = json.loads(out)
    assert data["message"].startswith("GET ")
    if "2046" not in value:
        assert data["path"] == value  # escaped on the wire, the same value once parsed


def test_debug_row_lines_print_no_raw_control_characters(logs: Setup) -> None:
    stream = logs("text")
    logging.getLogger("lookup.engine.batch").debug(
        "row %d %s: %s, %d checks", 3, "138\x1b[2J****\n2046", "invalid", 0
    )
    out = stream.getvalue()
    assert out.count("\n") == 1 and out[:-1].isprintable()
    assert "\\x1b[2J" in out and "\\n2046" in out
