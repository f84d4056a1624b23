"""The boundary models shared by the CLI, batch files and the service."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lookup.domain.models import HINT_FIELDS, Hints, LookupRequest


def test_hints_strip_blank_and_number_values() -> None:
    h = Hints(city="  杭州 ", province="", area_code=571, zip=310000.0, carrier=None)  # type: ignore[arg-type]
    assert h.city == "杭州"
    assert h.province is None
    assert h.area_code == "571"
    assert h.zip == "310000"
    assert h.given() == {"city": "杭州", "area_code": "571", "zip": "310000"}
    assert list(h.hints()) == list(HINT_FIELDS)


def test_hints_refuse_unknown_fields_and_long_values() -> None:
    with pytest.raises(ValidationError):
        Hints(town="杭州")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="city"):
        Hints(city="x" * 65)


def test_lookup_request_is_hints_with_a_mask() -> None:
    req = LookupRequest(mask=" 138****1234 ", city="杭州", mode="all")
    assert req.mask == "138****1234"
    assert req.hints()["city"] == "杭州"
    assert isinstance(req, Hints)
    with pytest.raises(ValidationError, match="mask"):
        LookupRequest(mask="")


def test_lookup_request_still_importable_from_the_service() -> None:
    from lookup.service.app import LookupRequest as FromService

    assert FromService is LookupRequest


def test_batch_row_reads_hints_like_hints() -> None:
    from lookup.engine.batch import BatchRow

    row = BatchRow(row=1, mask=" 138****1234", area_code=571, city=" ", extra="ignored")  # type: ignore[call-arg]
    assert (row.mask, row.area_code, row.city) == ("138****1234", "571", None)
    assert isinstance(row, Hints)
