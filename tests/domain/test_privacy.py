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


# -- every spelling of one number -------------------------------------------------------------

NUMBER = "13857152046"
_SPACES = {
    "space": " ", "two spaces": "  ", "tab": "\t", "NBSP": "\u00a0", "thin space": "\u2009",
    "narrow NBSP": "\u202f", "ideographic space": "\u3000", "em space": "\u2003",
    "figure space": "\u2007", "newline": "\n",
}  # fmt: skip
_DASH_CHARS = {
    "hyphen-minus": "-", "hyphen": "\u2010", "non-breaking hyphen": "\u2011",
    "figure dash": "\u2012", "en dash": "\u2013", "em dash": "\u2014", "bar": "\u2015",
    "minus": "\u2212", "fullwidth hyphen": "\uff0d", "small hyphen": "\ufe63",
    "soft hyphen": "\u00ad", "katakana bar": "\u30fc", "spaced dash": " - ",
    "spaced en dash": " \u2013 ",
}  # fmt: skip
_OTHER = {
    "dot": ".", "middle dot": "\u00b7", "ideographic stop": "\u3002", "fullwidth dot": "\uff0e",
    "slash": "/", "fullwidth slash": "\uff0f", "backslash": "\\", "underscore": "_",
    "comma": ",", "fullwidth comma": "\uff0c", "ideographic comma": "\u3001",
    "apostrophe": "'", "ZWSP": "\u200b", "ZWNJ": "\u200c", "ZWJ": "\u200d",
    "word joiner": "\u2060", "BOM": "\ufeff", "LRM": "\u200e", "two ZWSP": "\u200b\u200b",
    "ZWSP then space": "\u200b \u200b",
}  # fmt: skip
_SEPARATED = {**_SPACES, **_DASH_CHARS, **_OTHER}


def _digits_in(text: str) -> str:
    """The text's decimal digits, whatever their script, as ASCII."""
    import unicodedata

    return "".join(str(unicodedata.decimal(c)) for c in text if unicodedata.decimal(c, -1) >= 0)


def _spellings() -> dict[str, str]:
    out: dict[str, str] = {"glued": NUMBER}
    for name, sep in _SEPARATED.items():
        out[f"3-4-4 {name}"] = sep.join((NUMBER[:3], NUMBER[3:7], NUMBER[7:]))
    for name, sep in (("space", " "), ("dash", "-"), ("ZWSP", "\u200b"), ("dot", ".")):
        out[f"every digit {name}"] = sep.join(NUMBER)
    out |= {
        "trunk 0": "0" + NUMBER,
        "trunk 0 spaced": "0 138 5715 2046",
        "86 glued": "86" + NUMBER,
        "+86 glued": "+86" + NUMBER,
        "0086 glued": "0086" + NUMBER,
        "+86 spaced": "+86 138 5715 2046",
        "+86 (0)": "+86 (0)138 5715 2046",
        "(+86)": "(+86) 138-5715-2046",
        "fullwidth +86": "\uff0b\uff18\uff16 138 5715 2046",
        "brackets": "(138)57152046",
        "brackets spaced": "(138) 5715 2046",
        "fullwidth brackets": "\uff08138\uff0957152046",
        "square brackets": "[138]5715-2046",
        "commas 2-3-3-3": "13,857,152,046",
        "dots 2-3-3-3": "13.857.152.046",
        "fullwidth digits": "\uff11\uff13\uff18\uff15\uff17\uff11\uff15\uff12\uff10\uff14\uff16",
        "fullwidth digits dashed": "\uff11\uff13\uff18\uff0d\uff15\uff17\uff11\uff15\uff0d\uff12\uff10\uff14\uff16",
        "Arabic-Indic": "".join(chr(0x0660 + int(d)) for d in NUMBER),
        "Eastern Arabic-Indic": "".join(chr(0x06F0 + int(d)) for d in NUMBER),
        "Devanagari": "".join(chr(0x0966 + int(d)) for d in NUMBER),
        "Bengali": "".join(chr(0x09E6 + int(d)) for d in NUMBER),
        "Thai": "".join(chr(0x0E50 + int(d)) for d in NUMBER),
        "mathematical bold": "".join(chr(0x1D7CE + int(d)) for d in NUMBER),
        "mixed digit forms": "1\uff13\u0668" + "5715" + "".join(chr(0x0660 + int(d)) for d in "2046"),
        "tel: URI": "tel:+86-138-5715-2046",
        "in Chinese text": "手机号138 5715 2046，谢谢",
        "after a colon": "phone:13857152046",
        "in JSON": '{"phone": "138-5715-2046"}',
        "in a query": "?phone=13857152046&x=1",
        "RLO inside": "138\u202e57152046",
        "bidi isolate": "\u2066138 5715 2046\u2069",
    }
    return out


SPELLINGS = _spellings()


def test_the_spelling_table_is_large() -> None:
    assert len(SPELLINGS) >= 60


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_every_spelling_is_masked(spelling: str) -> None:
    out = mask_phone(spelling)
    assert NUMBER not in _digits_in(out)
    assert out.count("*") == 4  # the middle four digits, nothing more
    assert "2046" in _digits_in(out)  # the last four digits stay readable


def test_no_spelling_is_left_whole() -> None:
    whole = [name for name, text in SPELLINGS.items() if NUMBER in _digits_in(mask_phone(text))]
    assert whole == []


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-15 13:45:12",
        "2024/01/15",
        "15.01.2024 10:30",
        "2024-01-15T13:45:12.138Z",
        "¥1,380.50",
        "$1,234,567.89",
        "1,299.00 元",
        "order 1385715204",  # ten digits
        "order 138571520461",  # twelve digits
        "order 2138571520461",
        "id 1718000000000",  # a millisecond timestamp
        "ORD-20240115-000123",
        "0571-8888 6666",  # a landline
        "010-12345678",
        "version 1.38.5715",
        "peer 172.16.100.200",
        "138****2046",
        "138 **** 2046",
        "1 of 3 checks, 8 left",
        "tiers: city 1,024, province 9,216",
        "",
    ],
)
def test_ordinary_text_is_not_masked(text: str) -> None:
    assert mask_phone(text) == text


def test_masking_a_huge_text_is_linear_enough() -> None:
    text = ("1 - " * 250_000) + NUMBER
    assert mask_phone(text).endswith("138****2046")


# -- secrets in a third party's free text ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("upstream said: token=9f8e7d6c5b4a3f2e", "9f8e7d6c5b4a3f2e"),
        ("bad api_key: AbCdEf123456 for user", "AbCdEf123456"),
        ("bad api_key:AbCdEf123456", "AbCdEf123456"),
        ('{"api_key": "AbCdEf123456", "x": 1}', "AbCdEf123456"),
        ("{'password': 'hunter'}", "hunter"),
        ("password=hunter2 rejected", "hunter2"),
        ("login failed, password: hunter", "hunter"),
        ("secret = s3cr3tv4lue", "s3cr3tv4lue"),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("the key 0123456789abcdef0123456789abcdef was revoked", "0123456789abcdef0123"),
        ("token ZXhhbXBsZS1iYXNlNjQtdG9rZW4= expired", "ZXhhbXBsZS1iYXNlNjQtdG9rZW4"),
        ("X-Api-Key: k-8c6a1f0e9b2d", "k-8c6a1f0e9b2d"),
        ("session_id: a1b2c3d4e5f6", "a1b2c3d4e5f6"),
        ("cookie: sid=zzz9988776655", "zzz9988776655"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc_def-ghi", "eyJzdWIiOiIxMjM0NTY3"),
        ("using sk-live0123456789abcdefABCDEF", "sk-live0123456789"),
        ("gh token ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_0123456789"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
        ("https://bob:pw0rd@db.example/x failed", "pw0rd"),
        ("credential: 7777abcd8888", "7777abcd8888"),
    ],
)
def test_redact_text_hides_token_like_values(text: str, secret: str) -> None:
    from lookup.domain.privacy import redact_text

    out = redact_text(text)
    assert secret not in out
    assert "***" in out
    assert Redactor()(text).count(secret) == 0


@pytest.mark.parametrize(
    "text",
    [
        "the order API answered 503: Service Unavailable",
        "no field 'total' in the answer: expected a count",
        "key: missing",
        "timeout after 5.0 s: the API kept failing",
        "authentication failed: check the token",
    ],
)
def test_redact_text_leaves_plain_errors_readable(text: str) -> None:
    from lookup.domain.privacy import redact_text

    assert redact_text(text) == text


# -- control characters ------------------------------------------------------------------------

CONTROL_INPUTS = [
    *(chr(c) for c in range(0x20)),
    "\x7f",
    *(chr(c) for c in range(0x80, 0xA0)),
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\u2028", "\u2029", "\u200e", "\u200f", "\u061c",
]  # fmt: skip


@pytest.mark.parametrize("control", CONTROL_INPUTS, ids=[f"U+{ord(c):04X}" for c in CONTROL_INPUTS])
def test_every_control_character_is_escaped(control: str) -> None:
    from lookup.domain.privacy import escape_controls

    text = f"x{control}y"
    out = escape_controls(text)
    assert control not in out
    assert out.startswith("x\\") and out.endswith("y")
    assert out.isprintable()
    as_json = escape_controls(text, json=True)
    import json as _json

    assert _json.loads(f'"{as_json}"') == text  # a valid JSON string escape


def test_escape_controls_names_the_common_ones_and_keeps_what_is_asked() -> None:
    from lookup.domain.privacy import escape_controls

    assert escape_controls("a\nb\rc\td\x00e\x1b[2Jf") == "a\\nb\\rc\\td\\x00e\\x1b[2Jf"
    assert escape_controls("bidi \u202eevil") == "bidi \\u202eevil"
    assert escape_controls("one\ntwo\x1b", keep="\n") == "one\ntwo\\x1b"
    assert escape_controls("plain 中文 text") == "plain 中文 text"


def _redact_unfiltered(text: str) -> str:
    """Every credential pattern run on every text: what the word tests must never change."""
    from lookup.domain import privacy as p

    if "://" in text:
        text = p._USERINFO.sub(r"\g<scheme>***@", text)
    text = p._QUERY_SECRET.sub(r"\g<name>***", text)
    text = p._PAIR_SECRET.sub(p._hide_pair, text)
    text = p._WORD_THEN_TOKEN.sub(r"\g<name>***", text)
    text = p._BEARER.sub(r"\g<scheme>***", text)
    return p._KNOWN_TOKEN.sub("***", text)


_CASE_TRICKS = ["\u212a", "\u017f", "\u0130", "\u0131", "K", "S", "I"]  # Kelvin, long s, İ, ı
_PIECES = [
    "token", "key", "secret", "sig", "auth", "pass", "credential", "pwd", "cookie", "session",
    "Bearer ", "basic ", "Digest ", "eyJ", "sk-", "ghp_", "github_pat_", "AKIA", "ASIA",
    "xoxb-", "=", ": ", " = ", "'", '"', "://u:p@", "0123456789abcdefABCDEF", "A1b2C3d4E5f6",
    " ", "_", "-", ".", "hello", "order", "13812345678",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES + _CASE_TRICKS), max_size=14))
def test_the_word_tests_change_nothing_the_patterns_would_find(parts: list[str]) -> None:
    from lookup.domain.privacy import _redact_credentials

    text = "".join(parts)
    assert _redact_credentials(text) == _redact_unfiltered(text)


def test_the_word_tests_see_every_case_the_patterns_ignore() -> None:
    from lookup.domain.privacy import _redact_credentials

    for text in ("\u212aEY=abcdef123456", "pa\u017fs: hunter22", "S\u0130G=abcdef123456",
                 "SESS\u0131ON: a1b2c3d4e5f6", "B\u0130ARER x", "Bearer abc.def"):  # fmt: skip
        assert _redact_credentials(text) == _redact_unfiltered(text)
        assert _redact_credentials(text) != text or _redact_unfiltered(text) == text
