"""Chinese and English: the catalog is complete, the language is chosen as documented, and
English texts made elsewhere (input errors, reasons) are rendered in Chinese by template."""

from __future__ import annotations

import argparse
import importlib.util
import typing
from pathlib import Path
from types import ModuleType

import pytest

from lookup.domain import i18n
from lookup.domain.errors import InputError
from lookup.domain.i18n import (
    language,
    language_from_accept,
    language_from_env,
    parse_language,
    pgettext,
    translate,
)
from lookup.domain.models import Status, TierReport
from lookup.domain.phrases import PHRASES

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_script", ROOT / "scripts" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_message_has_both_languages_and_the_mo_is_current() -> None:
    script = _script()
    assert script.problems() == []
    marked = script.extract()
    assert len(marked) > 60  # not vacuous: the CLI's, the phrases' and the service's messages
    for _ctx, msgid in marked:
        assert i18n.catalog("zh").gettext(msgid) != msgid or not msgid, msgid


def test_the_compiler_reads_back_what_gettext_reads(tmp_path: Path) -> None:
    script = _script()
    entries = script.parse_po(script.PO.read_text(encoding="utf-8"))
    import gettext

    mo = tmp_path / "x.mo"
    mo.write_bytes(script.mo_bytes(entries))
    with mo.open("rb") as f:
        cat = gettext.GNUTranslations(f)
    for (ctx, msgid), msgstr in entries.items():
        if msgid:
            got = cat.pgettext(ctx, msgid) if ctx else cat.gettext(msgid)
            assert got == msgstr


@pytest.mark.parametrize(
    ("context", "values"),
    [
        ("tier", ("city", "province", "national", "unlocated", "nonstandard")),
        ("tier status", typing.get_args(TierReport.model_fields["status"].annotation)),
    ],
)
def test_tier_names_and_states_have_chinese(context: str, values: tuple[str, ...]) -> None:
    with language("zh"):
        for value in values:
            assert pgettext(context, value) != value, value
    assert pgettext(context, values[0]) == values[0]  # English outside


def test_result_statuses_stay_english_machine_words() -> None:
    # shown as they are: they are machine fields (status), in every language
    assert set(typing.get_args(Status)) == {"matched", "not_found", "inconclusive", "api_error"}


@pytest.mark.parametrize(
    ("environ", "lang"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "zh_CN.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "en"),
        ({"LC_ALL": "zh_TW", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LC_ALL": "C"}, "en"),
        ({"LANG": "fr_FR.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_language_from_env_in_posix_order(environ: dict[str, str], lang: str) -> None:
    assert language_from_env(environ) == lang


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr, zh;q=0.5", "zh"),
        ("zh;q=0, en", "en"),
        ("", "en"),
        (None, "en"),
        ("zh;q=abc", "en"),
    ],
)
def test_language_from_accept_language(header: str | None, lang: str) -> None:
    assert language_from_accept(header) == lang


def test_parse_language() -> None:
    assert [parse_language(t) for t in ("zh", "zh-Hans-CN", "EN", "POSIX", "de", "")] == [
        "zh", "zh", "en", "en", None, None,
    ]


def _errors() -> list[str]:
    """Real input errors of the domain, as their English text."""
    from lookup.domain.masks import parse_mask
    from lookup.domain.segments import SegmentDB
    from lookup.domain.tiers import plan

    texts = []
    for mask in ("238****2046", "138****20", "13a****2046", "*38****2046", "128****2046",
                 "1*******046", "①38****2046", ""):  # fmt: skip
        with pytest.raises(InputError) as exc:
            parse_mask(mask)
        texts.append(str(exc.value))
    for hints in ({"city": "火星"}, {"city": "浙江省"}, {"province": "火星"}):
        with pytest.raises(InputError) as exc:
            plan("138****2046", SegmentDB.default(), **hints)
        texts.append(str(exc.value))
    with pytest.raises(InputError) as exc:
        plan("13*****2046", SegmentDB.default(), max_candidates=10)
    texts.append(str(exc.value))
    return texts


def test_real_input_errors_are_rendered_in_chinese() -> None:
    for text in _errors():
        zh = translate(text, "zh")
        assert zh != text, text
        assert not any(word in zh for word in (" digits ", " not a ", "unknown ")), zh


def test_a_reason_keeps_its_values_and_translates_the_tier() -> None:
    reason = "city tier: unauthorised (401): check the API token"
    assert translate(reason, "zh") == "本市层：unauthorised (401): check the API token"
    inconclusive = ("12 candidates (city 2, province 10) could not be checked before the "
                    "deadline (the API kept failing): the answer is unknown, not 'no'")  # fmt: skip
    zh = translate(inconclusive, "zh")
    assert zh.startswith("有 12 个候选号码（city 2, province 10）") and "结果未知" in zh
    assert translate("no such template here", "zh") == "no such template here"
    assert translate(inconclusive, "en") == inconclusive


def test_every_phrase_is_in_the_catalog() -> None:
    for phrase in PHRASES:
        assert i18n.catalog("zh").gettext(phrase) != phrase, phrase


def test_cli_help_texts_have_chinese() -> None:
    """The commands' help and every option of `find` (the command operators use most)."""
    from lookup.cli import main as cli
    from lookup.cli.conventions import subparsers

    parser = cli._build_parser()  # English: the message ids
    helps: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps += [c.help or "" for c in action._choices_actions]
    find = subparsers(parser)["find"]
    helps += [a.help for a in find._actions if a.help and a.help != argparse.SUPPRESS]
    helps += [g.title for g in find._action_groups if g.title]
    assert len(helps) > 40
    missing = [h for h in helps if translate(h, "zh") == h]
    assert missing == []
