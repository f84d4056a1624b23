"""The journal's header line: what binds a journal to its input (path, size, sha256) and
to the settings that change answers, with a random nonce; and, on resume, what changed
between a journal's header and this run's, in words (:mod:`lookup.files.journal` refuses
the resume naming it).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from lookup.domain.privacy import SECRET_QUERY_KEYS

if TYPE_CHECKING:
    from lookup.engine.matcher import Mode

__all__ = ["JOURNAL_KIND", "JOURNAL_VERSION", "AnswerSettings", "header_changes", "journal_header"]

JOURNAL_KIND: Final = "lookup batch journal"
JOURNAL_VERSION: Final = 2


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class AnswerSettings(Protocol):
    """The settings that change a row's answer (``lookup.runtime.settings.Settings`` has them)."""

    @property
    def api_url(self) -> str | None: ...
    @property
    def api_plugin(self) -> str | None: ...
    @property
    def hit_field(self) -> str: ...
    @property
    def api_method(self) -> str: ...
    @property
    def max_candidates(self) -> int: ...


def _api_identity(settings: AnswerSettings) -> str:
    """Which order API answers, with no credential in it.

    The URL loses its user info and credential-like query values: a rotated key is the
    same API, while another host, path or (other) query parameter is not.
    """
    if settings.api_plugin:
        return f"plug-in {settings.api_plugin}"
    url = settings.api_url or ""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    fields = []
    for item in parts.query.split("&") if parts.query else ():
        name, eq, _ = item.partition("=")
        secret = eq and any(k in name.lower() for k in SECRET_QUERY_KEYS)
        fields.append(f"{name}=***" if secret else item)
    return parts._replace(netloc=netloc, query="&".join(fields)).geturl()


def journal_header(input_path: Path, settings: AnswerSettings, mode: Mode,
                   *, shown_path: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The header line: the input and the settings that change answers, and a nonce."""
    size, digest = _sha256(input_path)
    return {
        "journal": JOURNAL_KIND,
        "version": JOURNAL_VERSION,
        "nonce": secrets.token_hex(16),
        "input": {"path": shown_path or str(input_path.resolve()), "size": size, "sha256": digest},
        "settings": {
            "api": _api_identity(settings),
            "hit_field": settings.hit_field,
            "method": settings.api_method,
            "mode": mode,
            "max_candidates": settings.max_candidates,
        },
    }


_SETTING_NAMES: Final = {
    "hit_field": "the hit field (--hit-field)",
    "method": "the HTTP method (--method)",
    "mode": "the mode (--mode)",
    "max_candidates": "max candidates (--max-candidates)",
}


def header_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a journal's header and this run's, in words."""
    changes: list[str] = []
    was, now = old.get("input", {}), new["input"]
    if not isinstance(was, dict):
        was = {}
    if was.get("path") != now["path"]:
        changes.append(f"the input file is another one (journal: {was.get('path')}, "
                       f"now: {now['path']})")  # fmt: skip
    if (was.get("size"), was.get("sha256")) != (now["size"], now["sha256"]):
        changes.append(
            f"the input file's content changed (journal: {was.get('size')} bytes, sha256 "
            f"{str(was.get('sha256'))[:12]}…; now: {now['size']} bytes, sha256 "
            f"{now['sha256'][:12]}…)"
        )
    was, now = old.get("settings", {}), new["settings"]
    if not isinstance(was, dict):
        was = {}
    if was.get("api") != now["api"]:
        changes.append(f"the order API changed (journal: {was.get('api')}, now: {now['api']})")
    for key, label in _SETTING_NAMES.items():
        if was.get(key) != now[key]:
            changes.append(f"{label} changed (journal: {was.get(key)!r}, now: {now[key]!r})")
    return changes
