"""open_engine: the checker every lookup of a process shares, or one for a single lookup."""

from __future__ import annotations

import pytest

from lookup.orders import FakeOrderApi
from lookup.runtime.engine import open_engine
from lookup.runtime.settings import Settings


@pytest.mark.parametrize(("one_lookup", "sent"), [(False, 1), (True, 2)])
async def test_a_one_lookup_engine_keeps_no_outcome_cache(one_lookup: bool, sent: int) -> None:
    api = FakeOrderApi.from_orders({"13800000008": 2})
    async with open_engine(Settings(), api=api, one_lookup=one_lookup) as engine:
        for _ in range(2):
            assert (await engine.checker.check("13800000008")).order_count == 2
    assert len(api.calls) == sent
