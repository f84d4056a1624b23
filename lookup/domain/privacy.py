"""What may leave the process: mobile numbers masked, secrets and URL credentials redacted.

Stdlib only, no I/O (layer L0). Every text the tool emits goes through here: log lines
(:mod:`lookup.runtime.logs`), error messages, results, batch output and journal, ``lookup config``
and the start-up lines.

* :func:`mask_phone` hides the middle four digits of every spelling of an 11-digit
  mobile number: ``13812345678``, ``138 1234 5678``, ``138-1234-5678``, ``138.1234.5678``,
  full-width ``１３８１２３４５６７８``, with a ``86`` / ``+86`` / ``0086`` prefix, glued
  (``8613812345678``) or not. Separators are kept: ``138 **** 5678``.
* :func:`redact_url` hides the user info (``user:pass@``) and credential-like query values
  (``?token=``, ``api_key=``, ``sig=`` ...) of a URL; :func:`url_secrets` lists them. In
  free text, :class:`Redactor` also hides ``name=value`` pairs whose name looks like a
  credential and ``Bearer <token>``.
* :class:`Redactor` does all of it, plus the secrets it was configured with (API token,
  header values, service tokens), on any text or JSON-like value.

>>> mask_phone("call +86 138-1234-5678")
'call +86 138-****-5678'
>>> Redactor(["s3cr3t-key"])("GET https://bob:pw@api.example/o?token=abc key s3cr3t-key")
'GET https://***@api.example/o?token=*** key ***'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "QUOTE_LIMIT",
    "SECRET_QUERY_KEYS",
    "Redactor",
    "escape_controls",
    "mask_phone",
    "quote",
    "redact_text",
    "redact_url",
    "url_secrets",
]

SECRET_QUERY_KEYS: Final = ("token", "key", "secret", "sig", "auth", "pass", "credential")
"""Query parameters whose values are credentials (matched as parts of the name)."""
MIN_SECRET_LENGTH: Final = 4
QUOTE_LIMIT: Final = 64
"""An input quoted in an error message is cut to this many characters."""
"""Configured secrets shorter than this are not searched for (they would garble every line)."""

# A mobile number is matched on an ASCII copy of the text (every Unicode decimal digit,
# full-width and Arabic-Indic included, turned into its ASCII digit: one code point each,
# so positions line up), then masked in the original.
_DASHES: Final = (
    "\\-\u00ad\u058a\u05be\u2010-\u2015\u2043\u2212\u2e3a\u2e3b\u30fc\ufe58\ufe63\uff0d\uff70"
)
_DOTS: Final = ".\u00b7\u0387\u2022\u2024\u2027\u3002\u30fb\uff0e\uff61\uff65"
_OTHER_SEPS: Final = (
    "/\\\\\u2044\u2215\uff0f\uff3c"  # slashes
    "_\uff3f"  # underscores
    ",\u060c\u066b\u066c\u3001\uff0c'\u2019\u02bc"  # commas and digit-group marks
    "()\\[\\]{}\uff08\uff09\uff3b\uff3d\uff5b\uff5d\u3010\u3011\u3014\u3015"  # brackets
)
# between two digits: a run of any whitespace and up to three visible separators
_VISIBLE: Final = f"[\\s{_DASHES}{_DOTS}{_OTHER_SEPS}]"
# zero-width characters, bidi marks and format characters: any number of them
_INVISIBLE: Final = "[\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
_SEP: Final = f"{_INVISIBLE}*(?:{_VISIBLE}{_INVISIBLE}*){{0,3}}"
# A mobile number: 1, then 10 digits, separators between them; before it an optional
# country code (86, +86, 0086) and an optional trunk 0. Not part of a longer run of digits.
_MOBILE: Final = re.compile(
    rf"(?<![0-9])"
    rf"(?P<prefix>(?:(?:[+\uff0b\ufe62]|00)?86{_SEP})?(?:0{_SEP})?)"
    rf"(?P<number>1(?:{_SEP}[0-9]){{10}})"
    rf"(?![0-9])"
)
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_HIDE: Final = frozenset((3, 4, 5, 6))  # which digits of the eleven are hidden
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@")
# name=value where the name looks like a credential: in a query string or in free text
_QUERY_SECRET: Final = re.compile(
    r"(?P<name>(?<![\w.\-])[\w.\-]*(?:" + "|".join(SECRET_QUERY_KEYS) + r")[\w.\-]*=)"
    r"[^&\s#\"'<>,;)]+",
    re.IGNORECASE,
)
_SECRET_WORDS: Final = (*SECRET_QUERY_KEYS, "pwd", "cookie", "session")
# "name: value", "name = value", '"name": "value"' (JSON, YAML, headers, SDK messages)
_PAIR_SECRET: Final = re.compile(
    r"(?P<name>(?<![\w.\-])[\w.\-]*(?:" + "|".join(_SECRET_WORDS) + r")[\w.\-]*[\"']?"
    r"(?:\s*:\s*|\s+=\s*|=\s+)[\"']?)"
    r"(?P<value>[^&\s#\"'<>,;)}\]]+)",
    re.IGNORECASE,
)
# names whose value is always a secret; other credential-like names only hide a value
# that looks like a token (so that "key: missing" stays readable)
_STRONG_NAME: Final = re.compile(
    r"pass|pwd|secret|token|api[_\-]?key|private|cookie|session|credential", re.IGNORECASE
)
_TOKENISH: Final = re.compile(r"(?=[^\s]*\d)[^\s]{8,}|[^\s]{20,}")
# "token 3f9a...": a long hex or base64 run right after a credential-like word
_WORD_THEN_TOKEN: Final = re.compile(
    r"(?P<name>\b(?:" + "|".join(_SECRET_WORDS) + r")\w*\s+)"
    r"[A-Za-z0-9+/_\-]{16,}={0,2}(?![\w+/=\-])",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic|Digest)\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE
)
# well-known token shapes that need no name: JWTs, sk-..., ghp_..., AKIA..., xoxb-...
_KNOWN_TOKEN: Final = re.compile(
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
)
# Characters that move the cursor, end a line, or reorder what a terminal shows: C0
# (tab and newline too), DEL, C1, the bidi embeddings, overrides and isolates, the bidi
# marks, and the line and paragraph separators.
_CONTROLS: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _AsciiDigits(dict[int, int]):
    """A ``str.translate`` table: every Unicode decimal digit to its ASCII digit."""

    def __missing__(self, code: int) -> int:
        value = unicodedata.decimal(chr(code), None)
        out = code if value is None else 0x30 + value
        if len(self) < 4096:  # bounded: a text of every code point must not grow it forever
            self[code] = out
        return out


_ASCII_DIGITS: Final = _AsciiDigits()


def _mask_in(text: str, plain: str, m: re.Match[str]) -> str:
    start, end = m.span("number")
    if not m["prefix"] and _IPV4.fullmatch(plain[start:end]):
        return m[0]  # 172.16.100.200 is an address, not a phone number
    out: list[str] = []
    i = 0
    for pos in range(start, end):
        if "0" <= plain[pos] <= "9":
            out.append("*" if i in _HIDE else text[pos])
            i += 1
        else:
            out.append(text[pos])
    return text[m.start() : start] + "".join(out)


def mask_phone(text: str) -> str:
    """Hide the middle four digits of every mobile number in ``text``, however spelled.

    >>> mask_phone("13812341234")
    '138****1234'
    >>> mask_phone("8613812345678 and １３８１２３４５６７８")
    '86138****5678 and １３８****５６７８'

    A run of more than 11 digits (an order id) is left alone; text without a mobile
    number comes back unchanged.
    """
    if not text:
        return text
    plain = text if text.isascii() else text.translate(_ASCII_DIGITS)
    pieces: list[str] = []
    last = 0
    for m in _MOBILE.finditer(plain):
        pieces.append(text[last : m.start()])
        pieces.append(_mask_in(text, plain, m))
        last = m.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


_LONG_RUN: Final = re.compile(r"[0-9]{12,}")


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
    """``value`` quoted for an error message: cut to ``limit`` characters (saying how long
    it was), numbers masked, even inside a longer run of digits, control characters
    escaped (``repr``).

    >>> quote("138571520469")
    "'138*****0469'"
    >>> quote("x" * 100, limit=8)
    "'xxxxxxxx'... (100 characters)"
    """
    head = value[: limit + 24]  # masked before the cut: a number across it is masked whole
    head = mask_phone(head)
    plain = head if head.isascii() else head.translate(_ASCII_DIGITS)
    if _LONG_RUN.search(plain):  # 138571520469: a number with a digit more, still hidden
        chars = list(head)
        for m in _LONG_RUN.finditer(plain):
            for pos in range(m.start() + 3, m.end() - 4):
                chars[pos] = "*"
        head = "".join(chars)
    shown = repr(head[:limit])
    return shown if len(value) <= limit else f"{shown}... ({len(value):,} characters)"


def redact_url(url: str) -> str:
    """``url`` with user info and credential-like query values replaced by ``***``.

    >>> redact_url("https://bob:pw@api.example/orders?phone={phone}&api_key=k1")
    'https://***@api.example/orders?phone={phone}&api_key=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed netloc (unbalanced brackets): no structure to keep
        return _redact_credentials(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        fields = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            if eq and any(k in name.lower() for k in SECRET_QUERY_KEYS):
                item = f"{name}=***"
            fields.append(item)
        query = "&".join(fields)
    return parts._replace(netloc=netloc, query=query).geturl()


def url_secrets(url: str) -> list[str]:
    """The credential-like values inside ``url`` (user name, password, token-ish query values)."""
    try:
        parts = urlsplit(url)
        found = [v for v in (parts.username, parts.password) if v]
    except ValueError:  # a malformed netloc (bad port, unbalanced brackets)
        return []
    found += [
        v
        for k, v in parse_qsl(parts.query)
        if v and any(s in k.lower() for s in SECRET_QUERY_KEYS)
    ]
    return found


def _hide_pair(m: re.Match[str]) -> str:
    if _STRONG_NAME.search(m["name"]) or _TOKENISH.fullmatch(m["value"]):
        return m["name"] + "***"
    return m[0]


_SCHEMES: Final = ("bearer", "basic", "digest")
# Substrings without which _KNOWN_TOKEN cannot match (it is case-sensitive).
_KNOWN_MARKS: Final = ("eyJ", "k-", "gh", "github_pat_", "AKIA", "ASIA", "xox")


def _folded(text: str) -> str:
    """``text`` case-folded so that every character ``re.IGNORECASE`` matches to an ASCII
    letter becomes that letter (``K`` Kelvin, long ``ſ``, dotted ``İ`` and dotless ``ı``
    included): a word the patterns can find is then a plain substring."""
    return text.casefold().replace("\u0131", "i").replace("\u0307", "")


def _redact_credentials(text: str) -> str:
    """URL user info, token-ish ``name=value`` / ``name: value`` pairs, ``Bearer`` and
    ``Basic`` credentials and well-known token shapes anywhere in free text.

    Each pattern runs only when a word it needs is in the text (a log line usually has
    none): the name patterns cost tens of microseconds a line, the test a few."""
    if "://" in text:
        text = _USERINFO.sub(r"\g<scheme>***@", text)
    folded = _folded(text)
    if any(word in folded for word in _SECRET_WORDS):
        if "=" in text:
            text = _QUERY_SECRET.sub(r"\g<name>***", text)
        if ":" in text or "=" in text:
            text = _PAIR_SECRET.sub(_hide_pair, text)
        text = _WORD_THEN_TOKEN.sub(r"\g<name>***", text)
    if any(word in folded for word in _SCHEMES):
        text = _BEARER.sub(r"\g<scheme>***", text)
    if any(mark in text for mark in _KNOWN_MARKS):
        text = _KNOWN_TOKEN.sub("***", text)
    return text


def redact_text(text: str) -> str:
    """A third party's free text (a plug-in's or a driver's error) made safe to show:
    credentials it may quote redacted, numbers masked, control characters escaped.

    >>> redact_text("auth failed: api_key: 9f8e7d6c5b4a for 13812345678\\x1b[2J")
    'auth failed: api_key: *** for 138****5678\\\\x1b[2J'
    """
    return escape_controls(mask_phone(_redact_credentials(text)))


def _escape(m: re.Match[str]) -> str:
    c = m[0]
    named = _NAMED_ESCAPES.get(c)
    if named:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _escape_json(m: re.Match[str]) -> str:
    return f"\\u{ord(m[0]):04x}"


def escape_controls(text: str, *, keep: str = "", json: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``,
    ``\\u202e``), so that a value from outside can neither forge a line, move a
    terminal's cursor nor reorder what is shown.

    ``keep`` names characters left alone (``"\\n"`` for a multi-line block the tool
    itself wrote). ``json=True`` writes ``\\uXXXX`` for all of them, which stays valid
    inside a JSON string.

    >>> escape_controls("x\\nforged \\x1b[31mred\\u202e")
    'x\\\\nforged \\\\x1b[31mred\\\\u202e'
    """
    if not _CONTROLS.search(text):
        return text
    replace = _escape_json if json else _escape
    if not keep:
        return _CONTROLS.sub(replace, text)
    return _CONTROLS.sub(lambda m: m[0] if m[0] in keep else replace(m), text)


class Redactor:
    """Makes a text safe to show: secrets and URL credentials redacted, numbers masked.

    ``secrets`` are literal values (API token, header values, service tokens); those
    shorter than :data:`MIN_SECRET_LENGTH` are ignored. ``full_numbers=True`` keeps
    mobile numbers (for the operator's opt-in audit line only).
    """

    __slots__ = ("_full_numbers", "secrets")

    def __init__(self, secrets: Iterable[str] = (), *, full_numbers: bool = False) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        self.secrets: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))
        self._full_numbers = full_numbers

    def __call__(self, text: str) -> str:
        for secret in self.secrets:  # longest first: one that contains another goes whole
            if secret in text:
                text = text.replace(secret, "***")
        text = _redact_credentials(text)
        return text if self._full_numbers else mask_phone(text)

    def value(self, value: object) -> object:
        """Redact a JSON-like value before it is serialised (escaping would hide secrets)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            text = str(value)
            masked = self(text)
            return value if masked == text else masked
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return self(str(value))
