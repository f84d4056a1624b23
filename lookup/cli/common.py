"""What every command shares: exit codes, the API, hint and logging options, settings.

The command modules of :mod:`lookup.cli` import these (the terminal is
:mod:`lookup.cli.terminal`). Only the standard library is imported at module level, so a
cold ``lookup segment`` stays fast.
"""

from __future__ import annotations

import argparse
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult
    from lookup.runtime.settings import Settings

__all__ = [
    "ExitStatus",
    "add_api_options",
    "add_hint_options",
    "add_logging_options",
    "exit_status",
    "settings_from_args",
]


class ExitStatus(IntEnum):
    """The exit codes of every ``lookup`` command."""

    OK = 0
    MATCHED = 0
    NOT_FOUND = 1
    BAD_INPUT = 2
    FAILED = 3


_STATUS_EXIT: Final = {
    "matched": ExitStatus.MATCHED,
    "not_found": ExitStatus.NOT_FOUND,
    "inconclusive": ExitStatus.FAILED,
    "api_error": ExitStatus.FAILED,
}


def exit_status(result: LookupResult) -> int:
    """0 matched, 1 not found, 3 inconclusive or API failure."""
    return _STATUS_EXIT[result.status]


# -- options -----------------------------------------------------------------------------------


def add_hint_options(p: argparse.ArgumentParser) -> None:
    """``--city --province --area-code --zip --carrier`` (the fields of ``models.Hints``)."""
    g = p.add_argument_group("where the customer is (all optional; several must agree)")
    g.add_argument("--city", help="city name: 杭州, 杭州市, 恩施土家族苗族自治州, 襄樊 ...")
    g.add_argument("--province", help="province name: 浙江, 浙江省, 广西壮族自治区, 粤 ...")
    g.add_argument("--area-code", dest="area_code", help="area code: 0571 (may mean several)")
    g.add_argument("--zip", help="zip code, 6 digits: 310000, 071000")
    g.add_argument("--carrier", help="移动 / 联通 / 电信 / 广电 (or mobile, unicom ...)")


def add_logging_options(p: argparse.ArgumentParser) -> None:
    """``--config --log-level --log-format --quiet --audit-file``."""
    g = p.add_argument_group("logging and output")
    g.add_argument("--config", metavar="FILE", help="TOML settings file (see `lookup config`)")
    g.add_argument(
        "--log-level",
        dest="log_level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    g.add_argument("--log-format", dest="log_format", choices=["text", "json"])
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress, no start-up lines, only errors on stderr: just the answer",
    )
    g.add_argument(
        "--audit-file",
        dest="audit_file",
        metavar="PATH",
        help="append the audit lines to PATH (created 0600) instead of stderr",
    )


def _rate(text: str) -> str:
    word = text.strip().lower()
    if word in ("none", "auto", "off", "unlimited"):
        return "none"
    try:
        value = float(word)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        hint = " (0 would stop every check; 'none' lifts the ceiling)" if value == 0 else ""
        raise argparse.ArgumentTypeError(
            f"--rate takes checks per second (a number > 0) or 'none'/'auto' for no ceiling, "
            f"got {text!r}{hint}"
        )
    return text.strip()


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("--header takes 'Name: value'")
    return name.strip(), value.strip()


def add_api_options(p: argparse.ArgumentParser) -> None:
    """The order-API, limit and logging options shared by find, batch, serve and config."""
    g = p.add_argument_group("order API (or LOOKUP_API_URL / --config)")
    g.add_argument(
        "--api",
        dest="api_url",
        metavar="URL",
        help="URL template with {phone} (GET) or POST target; 'demo' = bundled mock; "
        "postgresql://USER@HOST:PORT/DB = a PostgreSQL orders table",
    )
    g.add_argument(
        "--api-plugin",
        dest="api_plugin",
        metavar="MODULE:ATTR",
        help="an OrderApi plug-in, e.g. mycompany.orders:make_api",
    )
    g.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header,
        metavar="'N: V'",
        help="extra request header (repeatable); values are never logged",
    )
    g.add_argument(
        "--hit-field",
        dest="hit_field",
        help="dotted JSON path to an order count (>= 0) or a boolean",
    )
    g.add_argument("--method", dest="api_method", type=str.upper, choices=["GET", "POST"])
    g.add_argument("--batch-url", dest="batch_url", help="batch endpoint (POST {phones: [...]})")
    g.add_argument(
        "--throttled-when", dest="throttled_when", action="append", metavar="PATH=VALUE",
        help="a 200 answer with this field value means 'quota exceeded' (repeatable), "
        "e.g. code=429",
    )  # fmt: skip
    g = p.add_argument_group(
        "PostgreSQL order source (--api postgresql://USER@HOST:PORT/DB; password from the URL, "
        "PGPASSWORD or ~/.pgpass; needs the [postgres] extra)"
    )
    g.add_argument(
        "--sql",
        dest="sql",
        metavar="QUERY",
        help="query taking $1 (text[]) returning (phone[, count]) rows, e.g. "
        "'SELECT phone, count(*) FROM orders WHERE phone = ANY($1::text[]) GROUP BY phone'",
    )
    g.add_argument("--sql-table", dest="sql_table", metavar="TABLE",
                   help="orders table of the default query (default orders)")  # fmt: skip
    g.add_argument("--sql-column", dest="sql_column", metavar="COLUMN",
                   help="its phone column (default phone)")  # fmt: skip
    g = p.add_argument_group("limits (polite defaults: 16 requests in flight, 50 requests/s)")
    g.add_argument("--max-in-flight", dest="max_in_flight", type=int, metavar="N")
    g.add_argument("--deadline", dest="deadline", type=float, metavar="SECONDS",
                   help="give a lookup this long: failing checks are retried until then (300)")
    g.add_argument("--batch-size", dest="batch_size", type=int, metavar="N",
                   help="numbers per batch request, with --batch-url (100)")
    g.add_argument(
        "--rate", type=_rate, metavar="PER_S", help="requests per second (> 0), or 'none'"
    )
    g.add_argument(
        "--timeout",
        dest="total_timeout",
        type=float,
        metavar="S",
        help="seconds for one check (connect and read are capped by it)",
    )
    g.add_argument(
        "--max-candidates",
        dest="max_candidates",
        type=int,
        metavar="N",
        help="refuse masks with more candidates (default 10,000)",
    )
    g.add_argument(
        "--audit-full-numbers",
        dest="audit_full_numbers",
        action="store_const",
        const=True,
        help="put the full matched number in the audit line",
    )
    g = p.add_argument_group(
        "one quota for many processes (needs the [redis] extra; see README, Deployment)"
    )
    g.add_argument("--shared", dest="shared_url", metavar="redis://HOST:PORT/DB",
                   help="share the rate, breaker, cache and in-flight checks through Redis "
                   "with every process of the same order API; --rate is then the ceiling "
                   "of all of them together (without one: start at 10/s, probe upward)")
    g.add_argument("--shared-fallback-rate", dest="shared_fallback_rate", type=float,
                   metavar="PER_S", help="this process's rate while Redis is away "
                   "(default: rate / --shared-processes)")
    g.add_argument("--shared-processes", dest="shared_processes", type=int, metavar="N",
                   help="processes sharing the quota, for the fallback rate (default 2)")
    add_logging_options(p)


_OPTION_FIELDS: Final = (
    "learn_regions",
    "shared_url",
    "shared_fallback_rate",
    "shared_processes",
    "throttled_when",
    "deadline",
    "batch_size",
    "api_url",
    "api_plugin",
    "hit_field",
    "api_method",
    "batch_url",
    "sql",
    "sql_table",
    "sql_column",
    "max_in_flight",
    "rate",
    "total_timeout",
    "max_candidates",
    "audit_full_numbers",
    "audit_file",
    "log_level",
    "log_format",
)


def settings_from_args(args: argparse.Namespace, **more: Any) -> Settings:
    """Settings: these options > LOOKUP_* env > --config file > defaults."""
    from lookup.runtime.settings import load_settings

    overrides = {name: getattr(args, name, None) for name in _OPTION_FIELDS}
    headers = getattr(args, "headers", None)
    if headers:
        overrides["api_headers"] = dict(headers)
    if overrides["total_timeout"] is not None:
        t = overrides["total_timeout"]
        overrides["connect_timeout"] = min(t, 5.0)
        overrides["read_timeout"] = t
    # An API named on the command line beats one of the other kind from env or file.
    if overrides["api_url"] is not None and overrides["api_plugin"] is None:
        overrides["api_plugin"] = ""
    elif overrides["api_plugin"] is not None and overrides["api_url"] is None:
        overrides["api_url"] = ""
    if getattr(args, "quiet", False) and overrides["log_level"] is None:
        overrides["log_level"] = "ERROR"  # no audit line on stderr either
    overrides.update(more)
    return load_settings(getattr(args, "config", None), **overrides)
