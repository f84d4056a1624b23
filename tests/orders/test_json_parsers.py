"""The strict answer parser on orjson against the standard library's, its reference.

Documents are written here by hand (so a key may repeat, spelled plainly or escaped, with
any JSON whitespace), and both parsers must give the same value (same types: 1 is not
1.0) or the same refusal, word for word.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookup.domain import jsonfast
from lookup.orders import httpbody
from lookup.orders.httpbody import AnswerRefused, parse_json_orjson, parse_json_stdlib

pytestmark = pytest.mark.skipif(not jsonfast.ORJSON, reason="orjson is not installed ([fast])")

SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])
KEYS = st.sampled_from(["total", "phone", "a", "b", 'q":', '":', " :", "\\", "中", "results"])


def _key(draw: st.DrawFn) -> str:
    key = draw(KEYS)
    if draw(st.booleans()):  # the same key, escaped: "total" and "\u0074otal" are one key
        return "".join(f"\\u{ord(c):04x}" if i == 0 else json.dumps(c)[1:-1]
                       for i, c in enumerate(key))  # fmt: skip
    return json.dumps(key, ensure_ascii=draw(st.booleans()))[1:-1]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([":", " :", '":', "a\\", "\\\""]),  # what a key's end looks like
).map(lambda v: json.dumps(v, ensure_ascii=False))


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text with free whitespace whose objects may repeat a key."""
    kind = draw(st.sampled_from(["scalar", "list", "object"] if depth < 4 else ["scalar"]))
    if kind == "scalar":
        return draw(SCALARS)
    items = draw(st.lists(documents(depth + 1), max_size=4))
    sp = draw(SPACE)
    if kind == "list":
        return "[" + sp + ("," + sp).join(items) + sp + "]"
    pairs = [f'"{_key(draw)}"{draw(SPACE)}:{sp}{value}' for value in items]
    return "{" + sp + ("," + sp).join(pairs) + sp + "}"


def _parsed(parse: Any, body: bytes) -> str:
    try:
        return "value " + repr(parse(body))
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(documents())
def test_both_parsers_agree_on_documents(text: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    assert _parsed(parse_json_orjson, body) == _parsed(parse_json_stdlib, body)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=40) | documents().map(lambda t: t.encode("utf-8", "surrogatepass")[:-1]))
def test_both_parsers_agree_on_broken_bodies(body: bytes) -> None:
    assert _parsed(parse_json_orjson, body) == _parsed(parse_json_stdlib, body)


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (b'{"total": 1, "total": 0}', "repeats the key 'total'"),
        (b'{"results": {"13800000000": 1, "13800000000": 0}}', "repeats the key '13800000000'"),
        (b'[{"a": 1}, {"b": 2, "b": 3}]', "repeats the key 'b'"),
        (b'{"total": NaN}', "has NaN"),
        (b'{"total": -Infinity}', "has -Infinity"),
        (b"[" * 65 + b"]" * 65, "nests deeper than 64"),
    ],
)
def test_orjson_path_refuses_like_the_stdlib(body: bytes, refusal: str) -> None:
    with pytest.raises(AnswerRefused, match=refusal):
        parse_json_orjson(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": "a\\":b", "total": 1}',  # a string holding '":' is no key
        b'{"x": "\\\\", "total": 1}',  # an escaped backslash closing a string
        b'{"x": ["\\"", {"y": "z"}], "total": 1}',
        b'{"total" \n\t: 1}',  # whitespace before the colon
    ],
)
def test_strings_that_look_like_keys_are_not_counted(body: bytes) -> None:
    assert parse_json_orjson(body) == json.loads(body)


def test_integers_beyond_64_bits_stay_integers() -> None:
    # orjson alone would read them as floats: 18446744073709551616.0
    assert parse_json_orjson(b'{"total": 18446744073709551616}') == {"total": 2**64}
    assert type(parse_json_orjson(b'{"total": -9223372036854775809}')["total"]) is int


def test_the_default_parser_is_orjson_when_installed() -> None:
    assert httpbody.parse_json is parse_json_orjson
