"""``jsonfast.dumps`` writes the same bytes on orjson and on the standard library for the
documents it is documented for (str keys; str, int, bool, None, list and dict values)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookup.domain import jsonfast

DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(DOCUMENTS)  # hypothesis text has no lone surrogates
def test_orjson_and_stdlib_write_the_same_bytes(doc: Any) -> None:
    if not jsonfast.ORJSON:
        pytest.skip("orjson is not installed (the [fast] extra)")
    text = jsonfast.dumps(doc)
    assert text == jsonfast.dumps_stdlib(doc)
    assert json.loads(text) == doc


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ({"phone": "13800000000"}, '{"phone":"13800000000"}'),
        ({"phones": ["13800000000", "13900001111"]}, '{"phones":["13800000000","13900001111"]}'),
        ({"城市": "杭州", "x": "a\n\"\\"}, '{"城市":"杭州","x":"a\\n\\"\\\\"}'),
    ],
)
def test_dumps_is_compact_and_keeps_characters(doc: Any, text: str) -> None:
    assert jsonfast.dumps(doc) == text
    assert jsonfast.dumps_stdlib(doc) == text


def test_dumps_is_orjson_when_installed() -> None:
    pytest.importorskip("orjson")
    assert jsonfast.ORJSON
    assert jsonfast.dumps is not jsonfast.dumps_stdlib
