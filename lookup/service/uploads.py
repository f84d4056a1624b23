"""An uploaded batch file, on its way to a job's folder: its text (UTF-8 or GB18030), its
format, a display name that is never a path, and a private (0600) atomic write."""

from __future__ import annotations

import re
from pathlib import Path

from lookup.domain.errors import InputError
from lookup.files.private import write_private
from lookup.files.read import InputFormat

__all__ = ["BadUploadError", "decode_upload", "format_of", "safe_name", "write_private"]


class BadUploadError(InputError):
    """The uploaded file cannot become a job (encoding, header, no rows, too many rows)."""


def decode_upload(data: bytes, name: str) -> str:
    """The text of an upload: UTF-8 (with or without BOM), else GB18030 (Excel on a Chinese
    Windows saves CSV in GB18030/GBK)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise BadUploadError(
            f"{name} is neither UTF-8 nor GB18030 text (byte {exc.start}): save it as "
            "CSV UTF-8 (Excel: Save As → CSV UTF-8) or as JSONL"
        ) from None


def format_of(name: str, text: str) -> InputFormat:
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if text.lstrip().startswith("{") else "csv"




def safe_name(name: str | None) -> str:
    """The upload's base name, for display and download names only (never a path)."""
    base = Path((name or "").replace("\\", "/")).name.strip()
    # control characters, bidi overrides and isolates, zero-width characters: a name must
    # show what it is (no "gpj.csv" shown as "vsc.jpg")
    base = re.sub(r"[\x00-\x1f\x7f-\x9f\"\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]", "", base)
    base = base.strip()[:120]
    return base or "upload"
