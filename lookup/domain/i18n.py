"""Messages in the reader's language: Simplified Chinese or English, from gettext catalogs.

The English text is the message id (and the machine form: logs, JSON fields, journals keep
it); ``lookup/locale/zh_CN/LC_MESSAGES/lookup.mo`` holds the Chinese, compiled from
``lookup.po`` by ``scripts/i18n.py`` and shipped in the wheel. The language is a context
variable: the CLI sets it once from ``--lang`` or the locale, the service per request from
``Accept-Language``.

- :func:`_` translates a literal written at the point of use (``_("not found: ...")``).
- :func:`N_` only marks a literal for the catalog, to be translated later.
- :func:`translate` turns an English text made elsewhere (an error message, a result's
  ``reason``) into the current language: an exact message id, or a template of the
  catalog whose ``{name}`` fields match the text (each field's value is kept as it was).
  A text the catalog does not know is returned as it is.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "DOMAIN",
    "LOCALE_DIR",
    "N_",
    "Language",
    "_",
    "catalog",
    "current_language",
    "language",
    "language_from_accept",
    "language_from_env",
    "parse_language",
    "pgettext",
    "set_language",
    "translate",
]

Language = Literal["en", "zh"]
DOMAIN: Final = "lookup"
LOCALE_DIR: Final = Path(__file__).resolve().parent.parent / "locale"
_FOLDER: Final[dict[Language, str]] = {"zh": "zh_CN"}
_current: ContextVar[Language] = ContextVar("lookup_language", default="en")
_FIELD: Final = re.compile(r"\{(\w+)\}")


@functools.cache
def catalog(lang: Language) -> gettext.NullTranslations:
    """The translations of ``lang`` (English: the message ids themselves)."""
    folder = _FOLDER.get(lang)
    if folder is None:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[folder], fallback=True)


def parse_language(text: str | None) -> Language | None:
    """``zh``, ``zh-CN``, ``zh_CN.UTF-8`` -> ``"zh"``; ``en``, ``C``, ``POSIX`` -> ``"en"``;
    anything else (or nothing) -> ``None``."""
    if not text:
        return None
    tag = text.strip().split(".")[0].split("@")[0].replace("_", "-").lower()
    if tag.startswith("zh"):
        return "zh"
    if tag.startswith("en") or tag in ("c", "posix"):
        return "en"
    return None


def language_from_env(environ: Mapping[str, str]) -> Language:
    """POSIX order: the first set of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` decides."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            return parse_language(value) or "en"
    return "en"


def language_from_accept(header: str | None) -> Language:
    """The first language of an ``Accept-Language`` header this tool speaks (by q)."""
    best: tuple[float, int, Language] | None = None
    for i, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        lang = parse_language(tag)
        if lang is not None and q > 0 and (best is None or (q, -i) > (best[0], best[1])):
            best = (q, -i, lang)
    return best[2] if best else "en"


def current_language() -> Language:
    return _current.get()


def set_language(lang: Language) -> None:
    """Use ``lang`` from now on in this context (the CLI: the whole process)."""
    _current.set(lang)


@contextmanager
def language(lang: Language) -> Iterator[None]:
    """Use ``lang`` inside the ``with`` block (the service: one request)."""
    token = _current.set(lang)
    try:
        yield
    finally:
        _current.reset(token)


def _(message: str) -> str:
    """``message`` in the current language."""
    return catalog(_current.get()).gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for the catalog; translated later by :func:`translate`."""
    return message


def pgettext(context: str, message: str) -> str:
    """``message`` in the current language, in ``context`` (a tier name, a status)."""
    return catalog(_current.get()).pgettext(context, message)


@functools.cache
def _templates(lang: Language) -> list[tuple[re.Pattern[str], str]]:
    """The catalog's messages with ``{name}`` fields as patterns, longest first."""
    messages: dict[str, str] = getattr(catalog(lang), "_catalog", {})
    out = []
    for msgid, msgstr in messages.items():
        if not isinstance(msgid, str) or "\x04" in msgid or not _FIELD.search(msgid):
            continue
        parts = _FIELD.split(msgid)
        pattern = "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*?)" for i, p in enumerate(parts)
        )
        out.append((re.compile(pattern, re.DOTALL), msgstr))
    out.sort(key=lambda t: -len(t[0].pattern))
    return out


def translate(text: str, lang: Language | None = None) -> str:
    """``text`` (English, made elsewhere) in ``lang`` (default: the current language)."""
    lang = lang or _current.get()
    if lang == "en" or not text:
        return text
    found = catalog(lang).gettext(text)
    if found != text:
        return found
    for pattern, msgstr in _templates(lang):
        m = pattern.fullmatch(text)
        if m:
            return _fill(msgstr, m.groupdict(), lang)
    return text


def _fill(msgstr: str, values: dict[str, str], lang: Language) -> str:
    return _FIELD.sub(lambda f: _field(f.group(1), values[f.group(1)], lang), msgstr)


def _field(name: str, value: str, lang: Language) -> str:
    if name == "tier":  # a tier's name reads as a word: 本市, 本省 ...
        return catalog(lang).pgettext("tier", value)
    if name in ("detail", "error", "reason"):  # a nested message of its own
        return translate(value, lang)
    return value
