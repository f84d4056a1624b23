"""``also``: other sightings of the number, through the library's find and a batch run."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookup import find
from lookup.domain.errors import ConfigError, SightingsDisagreeError
from lookup.domain.models import Limits
from lookup.domain.tiers import plan
from lookup.engine.batch import BatchRow, RowResult, run_batch
from lookup.engine.checker import Checker
from lookup.files.read import read_rows
from lookup.orders import FakeOrderApi

HIT = "13857152046"


def api() -> FakeOrderApi:
    return FakeOrderApi.from_orders({HIT: 3})


async def test_find_with_also_checks_the_one_number_both_sightings_allow() -> None:
    fake = api()
    result = await find("138****2046", api=fake, city="杭州", also=["1385715****"],
                        limits=Limits(max_per_second=None))  # fmt: skip
    assert result.status == "matched" and result.phone == HIT
    assert fake.calls == [HIT]
    assert sum(t.candidates for t in result.tiers) == 1


async def test_find_refuses_contradicting_sightings_before_any_request() -> None:
    fake = api()
    with pytest.raises(SightingsDisagreeError, match="digit 3: 138\\*\\*\\*\\*2046 shows 8"):
        await find("138****2046", api=fake, also=["1395715****"])
    assert fake.calls == []


async def test_also_with_a_ready_plan_is_refused() -> None:
    with pytest.raises(ConfigError, match="also="):
        await find(plan("138****2046"), api=api(), also=["1385715****"])


def test_batch_row_reads_also_as_masks_separated_by_semicolons() -> None:
    assert BatchRow(row=1, also=" 1385715**** ; ;13857*5****").also == ("1385715****",
                                                                         "13857*5****")  # fmt: skip
    assert BatchRow(row=1, also=["1385715****"]).also == ("1385715****",)
    assert BatchRow(row=1, also=None).also == ()


def test_csv_and_jsonl_also_columns(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("mask,also,city\n138****2046,1385715****;13857*5****,杭州\n138****2046,,\n",
                   encoding="utf-8")  # fmt: skip
    assert [r.also for r in read_rows(src)] == [("1385715****", "13857*5****"), ()]
    src = tmp_path / "in.jsonl"
    src.write_text('{"mask": "138****2046", "also": ["1385715****"]}\n'
                   '{"mask": "138****2046", "also": "1385715****;1395715****"}\n',
                   encoding="utf-8")  # fmt: skip
    assert [r.also for r in read_rows(src)] == [("1385715****",),
                                                ("1385715****", "1395715****")]  # fmt: skip


async def test_batch_rows_with_also_intersect_and_contradictions_are_invalid() -> None:
    fake = api()
    rows = [
        BatchRow(row=1, mask="138****2046", also="1385715****"),
        BatchRow(row=2, mask="138****2046", also="1385715****;1395715****"),
    ]
    seen: list[RowResult] = []
    await run_batch(rows, checker=Checker(fake, Limits(max_per_second=None)),
                    on_result=seen.append)  # fmt: skip
    by_row = {r.row: r for r in seen}
    assert by_row[1].status == "matched" and by_row[1].checks_sent == 1
    assert by_row[1].mask == "138****2046"  # the row's own mask is echoed
    assert by_row[2].status == "invalid"
    assert "disagree at digit 3" in (by_row[2].reason or "")
    assert fake.calls == [HIT]
