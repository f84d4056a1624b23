"""lookup.privacy: every spelling of a mobile number masked; secrets and URL credentials redacted."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookup.domain.privacy import Redactor, mask_phone, redact_url, url_secrets

FULL = "13812345678"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13812345678", "138****5678"),
        ("138 1234 5678", "138 **** 5678"),
        ("138-1234-5678", "138-****-5678"),
        ("138.1234.5678", "138.****.5678"),
        ("１３８１２３４５６７８", "１３８****５６７８"),
        ("１３８－１２３４－５６７８", "１３８－****－５６７８"),
        ("8613812345678", "86138****5678"),
        ("+8613812345678", "+86138****5678"),
        ("+86 138 1234 5678", "+86 138 **** 5678"),
        ("0086-13812345678", "0086-138****5678"),
        ("0086 13812345678", "0086 138****5678"),
        ("tel:+86-138-1234-5678;", "tel:+86-138-****-5678;"),
        ("电话13812345678谢谢", "电话138****5678谢谢"),
        ("a=13812345678&b=13900001111", "a=138****5678&b=139****1111"),
        ("138123456789", "138123456789"),  # 12 digits: an id, not a phone number
        ("order 1234567890123456", "order 1234567890123456"),
        ("1381234567", "1381234567"),  # 10 digits
        ("23812345678", "23812345678"),  # not a mobile number
        ("138****5678", "138****5678"),  # masked already
        ("peer 172.16.100.200", "peer 172.16.100.200"),  # an IPv4 address
        ("", ""),
    ],
)
def test_mask_phone_spellings(text: str, expected: str) -> None:
    assert mask_phone(text) == expected


_DIGITS = "0123456789"
_FULL_WIDTH = "０１２３４５６７８９"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    tail=st.text(alphabet=_DIGITS, min_size=10, max_size=10),
    seps=st.lists(st.sampled_from(["", " ", "-", "."]), min_size=10, max_size=10),
    full_width=st.booleans(),
    prefix=st.sampled_from(["", "86", "+86", "0086", "+86 ", "0086-"]),
    before=st.sampled_from(["", "x ", "电话", "(", "id="]),
    after=st.sampled_from(["", " ok", ".", ")", "谢谢"]),
)
def test_no_spelling_of_a_number_survives(
    tail: str, seps: list[str], full_width: bool, prefix: str, before: str, after: str
) -> None:
    digits = "1" + tail
    spelled = digits[0] + "".join(s + d for s, d in zip(seps, digits[1:], strict=True))
    if full_width:
        spelled = spelled.translate(str.maketrans(_DIGITS, _FULL_WIDTH))
    out = mask_phone(before + prefix + spelled + after)
    plain = re.sub(r"\D", "", out.translate(str.maketrans(_FULL_WIDTH, _DIGITS)))
    assert digits not in plain
    assert out.count("*") == 4


def test_redact_url() -> None:
    url = "https://bob:pw@api.example/orders?phone={phone}&api_key=k1&Token=t2&page=3"
    assert redact_url(url) == (
        "https://***@api.example/orders?phone={phone}&api_key=***&Token=***&page=3"
    )
    assert sorted(url_secrets(url)) == ["bob", "k1", "pw", "t2"]
    assert redact_url("http://api.example/x") == "http://api.example/x"
    assert url_secrets("http://[::1/bad") == []


def test_redactor_secrets_credentials_and_numbers() -> None:
    r = Redactor(["s3cr3t-value", "s3cr3t", "ab"])
    text = (
        f"GET https://u:p@h.example/o?phone={FULL}&sig=xyz&x=1 header s3cr3t-value "
        "and s3cr3t; ab stays (too short to search for)"
    )
    assert r(text) == (
        "GET https://***@h.example/o?phone=138****5678&sig=***&x=1 header *** "
        "and ***; ab stays (too short to search for)"
    )
    assert r.value({"k": [FULL, 5, True, None, {"s3cr3t": "s3cr3t"}]}) == {
        "k": ["138****5678", 5, True, None, {"***": "***"}]
    }
    assert Redactor(full_numbers=True)(FULL) == FULL


def test_old_homes_are_aliases() -> None:
    from lookup.domain import privacy
    from lookup.orders import mask_phone as orders_mask
    from lookup.orders.base import mask_phone as base_mask
    from lookup.runtime.logs import mask_numbers

    assert mask_numbers is base_mask is orders_mask is privacy.mask_phone


def test_privacy_is_stdlib_only() -> None:
    import ast
    import sys
    from pathlib import Path

    import lookup.domain.privacy

    tree = ast.parse(Path(lookup.domain.privacy.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = (name or "").split(".")[0]
                assert top == "__future__" or top in sys.stdlib_module_names, name
