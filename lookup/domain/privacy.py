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
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "SECRET_QUERY_KEYS",
    "Redactor",
    "mask_phone",
    "redact_url",
    "url_secrets",
]

SECRET_QUERY_KEYS: Final = ("token", "key", "secret", "sig", "auth", "pass", "credential")
"""Query parameters whose values are credentials (matched as parts of the name)."""
MIN_SECRET_LENGTH: Final = 4
"""Configured secrets shorter than this are not searched for (they would garble every line)."""

_D: Final = "[0-9\uff10-\uff19]"  # ASCII and full-width digits
_SEP: Final = "[ .\\-\u00a0\u3000\uff0d\uff0e]"  # space, dot, dash (and full-width ones)
# A mobile number: 1, then 10 digits, at most one separator between two digits; an
# optional country code before it. Not part of a longer run of digits.
_MOBILE: Final = re.compile(
    rf"(?<![0-9\uff10-\uff19])"
    rf"(?P<prefix>(?:(?:\+|\uff0b|00|\uff10\uff10)?(?:86|\uff18\uff16){_SEP}?)?)"
    rf"(?P<number>[1\uff11](?:{_SEP}?{_D}){{10}})"
    rf"(?![0-9\uff10-\uff19])"
)
_IPV4: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_HIDE: Final = frozenset((3, 4, 5, 6))  # which digits of the eleven are hidden
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@")
# name=value where the name looks like a credential: in a query string or in free text
_QUERY_SECRET: Final = re.compile(
    r"(?P<name>(?<![\w.\-])[\w.\-]*(?:" + "|".join(SECRET_QUERY_KEYS) + r")[\w.\-]*=)"
    r"[^&\s#\"'<>,;)]+",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(r"(?P<scheme>\bBearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)


def _mask_match(m: re.Match[str]) -> str:
    number = m["number"]
    plain = number.translate(_FULL_TO_ASCII)
    if not m["prefix"] and _IPV4.fullmatch(plain):
        return m[0]  # 172.16.100.200 is an address, not a phone number
    out: list[str] = []
    i = 0
    for c in number:
        if c.isdigit():
            out.append("*" if i in _HIDE else c)
            i += 1
        else:
            out.append(c)
    return m["prefix"] + "".join(out)


_FULL_TO_ASCII: Final = {0xFF10 + i: ord("0") + i for i in range(10)}


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
    return _MOBILE.sub(_mask_match, text)


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


def _redact_credentials(text: str) -> str:
    """URL user info and token-ish query values anywhere in free text."""
    if "://" in text:
        text = _USERINFO.sub(r"\g<scheme>***@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\g<name>***", text)
    if "earer" in text:
        text = _BEARER.sub(r"\g<scheme>***", text)
    return text


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
