"""PII detectors: what they find, and that real census data raises no false alarm."""

from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

from control_plane.sample_data import read_adult
from privacy import PiiKind, detect_pii


def _kinds(table: pa.Table) -> dict[str, str]:
    return {d.column: d.kind for d in detect_pii(table)}


def test_each_kind_is_found_in_a_column_of_it() -> None:
    table = pa.table(
        {
            "contact": ["ann@example.org", "bob.smith@mail.example.co.uk", None],
            "mobile": ["+44 20 7946 0958", "(555) 123-4567", "020 7946 0958"],
            "ssn": ["123-45-6789", "987-65-4321", "111-22-3333"],
            "full_name": ["Ann Lee", "Bob Smith", "Chloé Martin"],
            "dob": ["1980-01-31", "1975-12-02", "2001-07-14"],
            "birth_date": pa.array([datetime.date(1990, 1, 1)] * 3),
            "city": ["Paris", "London", "Rome"],
        }
    )
    assert _kinds(table) == {
        "contact": PiiKind.EMAIL,
        "mobile": PiiKind.PHONE,
        "ssn": PiiKind.NATIONAL_ID,
        "full_name": PiiKind.NAME,
        "dob": PiiKind.DATE_OF_BIRTH,
        "birth_date": PiiKind.DATE_OF_BIRTH,
    }


def test_a_column_is_reported_only_when_most_values_match() -> None:
    mostly_text = ["ann@example.org"] + ["no address"] * 9
    assert _kinds(pa.table({"notes": mostly_text})) == {}


def test_uk_national_insurance_numbers_are_national_ids() -> None:
    assert _kinds(pa.table({"nino": ["AB123456C", "CE654321D"]})) == {"nino": PiiKind.NATIONAL_ID}


@pytest.mark.parametrize("column", ["age", "fnlwgt", "workclass", "native-country", "sex"])
def test_census_columns_hold_no_detected_pii(column: str) -> None:
    # Capitalized categories (Private, Male, United-States) are not names without a name column
    assert _kinds(read_adult().select([column])) == {}
