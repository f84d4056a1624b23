"""Reading an HTTP answer that may be hostile: size caps before and after decompression,
a JSON content type, strict JSON (no duplicate keys, no ``NaN``, no deep nesting).

Every refusal is an :class:`AnswerRefused` with the reason in words; the adapter turns it
into a ``FatalApiError`` ("unexpected answer") naming the request.

The session reads bodies undecoded (``auto_decompress=False``): aiohttp would inflate a
whole received chunk at once, so 1 MB of gzip could become a gigabyte before any cap saw
it. Here the compressed bytes are capped as they arrive, and inflating stops one byte
past the cap.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import aiohttp

from lookup.domain.jsonfast import ORJSON, orjson

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_ANSWER_BYTES",
    "MAX_DEPTH",
    "AnswerRefused",
    "decode",
    "drain",
    "is_json_type",
    "parse_json",
    "parse_json_orjson",
    "parse_json_stdlib",
    "read_capped",
]

DEFAULT_MAX_ANSWER_BYTES: Final = 1 << 20
"""1 MiB: an order count is a few bytes; a batch of 10,000 numbers is about 200 KB."""
ACCEPT_ENCODING: Final = "gzip, deflate"
"""The encodings this module can inflate within a cap (sent unless the operator set one)."""
MAX_DEPTH: Final = 64
"""Nesting deeper than this is not an order API's answer."""

_GZIP: Final = frozenset({"gzip", "x-gzip"})


class AnswerRefused(ValueError):
    """The body is not an answer (too big, wrong type, not strict JSON)."""


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n:,} bytes"


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The raw (still encoded) body, at most ``cap`` bytes, else :class:`AnswerRefused`.

    A ``Content-Length`` over the cap is refused before reading; a body without one is
    read chunk by chunk and refused as soon as it passes the cap.
    """
    length = resp.content_length
    if length is not None:
        if length > cap:
            raise AnswerRefused(f"its Content-Length is {length:,} bytes, over the cap of {_size(cap)}")
        return await resp.read()
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        if len(buf) > cap:
            raise AnswerRefused(f"it is over the cap of {_size(cap)} (still coming)")
    return bytes(buf)


async def drain(resp: aiohttp.ClientResponse, cap: int) -> None:
    """Read an error answer we do not use, so the connection goes back to the pool; one
    over ``cap`` is not read: its connection is closed instead."""
    try:
        await read_capped(resp, cap)
    except AnswerRefused:
        resp.close()


def decode(raw: bytes, encoding: str | None, cap: int) -> bytes:
    """``raw`` inflated per ``Content-Encoding``, at most ``cap`` bytes."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding in _GZIP:
        inflater = zlib.decompressobj(wbits=31)
    elif coding == "deflate":  # zlib-wrapped, as the RFC says; raw deflate as servers send
        inflater = zlib.decompressobj(wbits=15 if raw[:1] == b"\x78" else -15)
    else:
        raise AnswerRefused(
            f"its Content-Encoding {coding[:32]!r} is not one this tool asked for ({ACCEPT_ENCODING})"
        )
    try:
        out = inflater.decompress(raw, cap + 1)
    except zlib.error as exc:
        raise AnswerRefused(f"its {coding} body is corrupt ({exc})") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise AnswerRefused(
            f"it inflates past the cap of {_size(cap)} ({_size(len(raw))} of {coding})"
        )
    if not inflater.eof:
        raise AnswerRefused(f"its {coding} body is cut short")
    return out


def is_json_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type (``application/problem+json``)."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise AnswerRefused(f"its JSON repeats the key {dup[:32]!r}")
    return obj


def _constant(name: str) -> Any:
    raise AnswerRefused(f"its JSON has {name}, which is not JSON")


def _depth(body: bytes) -> int:
    """How deep ``[`` / ``{`` nest, outside strings (a cheap scan of the bytes)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


@functools.cache
def _strict() -> json.JSONDecoder:
    """One decoder for every answer (``json.loads`` with hooks builds one per call)."""
    return json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_constant)


def _check_depth(body: bytes) -> None:
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise AnswerRefused(f"its JSON nests deeper than {MAX_DEPTH} levels")


def parse_json_stdlib(body: bytes) -> Any:
    """:func:`parse_json` through the standard library (the reference of the orjson path)."""
    _check_depth(body)
    return _decode_stdlib(body)


def _decode_stdlib(body: bytes) -> Any:
    try:
        return _strict().decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:  # defence in depth: the depth scan should have refused it
        raise AnswerRefused(f"its JSON nests deeper than {MAX_DEPTH} levels") from None


# A key's closing quote, then its colon: '":' or with JSON whitespace between them. Every key
# of a text is one of the two; a string that opens with a colon ('":x"', '" :x"') or holds
# an escaped quote and a colon ('\\":') adds one more. So the sum is never below the keys
# written, and it is equal for the answers APIs send.
_SPACED_KEY: Final = re.compile(rb'"[ \t\n\r]+:')
# orjson reads an integer beyond 64 bits as a float (the standard library keeps the int):
# a float this large may have been one, so the answer goes to the standard library.
_INT_LOW: Final = -9.2e18
_INT_HIGH: Final = 1.8e19


class _Unsure(Exception):
    """The orjson tree may differ from the standard library's: parse there instead."""


def _keys(obj: dict[str, Any]) -> int:
    """How many keys the objects of a parsed tree hold, all levels."""
    return len(obj) + _keys_in(obj.values())


def _keys_in(items: Iterable[Any]) -> int:
    """How many keys the objects among ``items`` (and below them) hold."""
    n = 0
    for value in items:
        kind = type(value)
        if kind is dict:
            n += _keys(value)
        elif kind is list:
            n += _keys_in(value)
        elif kind is float and not _INT_LOW < value < _INT_HIGH:
            raise _Unsure
    return n


def parse_json_orjson(body: bytes) -> Any:
    """:func:`parse_json` through orjson, with the same refusals and the same values.

    orjson parses; a repeated key is found by counting: the keys of the parsed objects
    against the keys written in the text (a repeated key leaves fewer in the tree; the
    text's count may run over, never under). Whatever orjson refuses or may read
    differently (NaN and Infinity, bad UTF-8, a UTF-16 body or a BOM, lone surrogates,
    integers beyond 64 bits) and every count that disagrees go to
    :func:`parse_json_stdlib`, which refuses them in the same words or reads them as it
    always did.
    """
    assert orjson is not None
    _check_depth(body)
    try:
        data = orjson.loads(body)
        keys = _keys_in((data,))
    except (orjson.JSONDecodeError, _Unsure):
        return _decode_stdlib(body)
    if keys and body.count(b'":') + len(_SPACED_KEY.findall(body)) != keys:
        return _decode_stdlib(body)  # a repeated key: refused there, naming it
    return data


parse_json: Callable[[bytes], Any] = parse_json_orjson if ORJSON else parse_json_stdlib
"""Strict JSON: duplicate keys, ``NaN``/``Infinity`` and nesting deeper than
:data:`MAX_DEPTH` are refused (:class:`AnswerRefused`); bad JSON is ``ValueError``.
orjson parses when it is installed (the ``[fast]`` extra), the standard library otherwise:
both give the same values and the same refusals."""
