"""Detection of personal data in columns: email, phone, national id, names, dates of birth.

Detectors look at a sample of each column's values with vectorized regular expressions
(``pyarrow.compute``); names and dates of birth also need a telling column name, since a
capitalized word or a date alone says little. A column is reported when at least
``min_share`` of its sampled non-null values match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc


class PiiKind(StrEnum):
    """The kinds of personal data the detectors find."""

    EMAIL = "email"
    PHONE = "phone"
    NATIONAL_ID = "national_id"
    NAME = "name"
    DATE_OF_BIRTH = "date_of_birth"


@dataclass(frozen=True)
class Detection:
    """Personal data found in a column: its kind and the share of sampled values matching."""

    column: str
    kind: PiiKind
    share: float


# Tried in this order, the most specific first: a national id or a date also looks like a phone.
_VALUE_PATTERNS: Final = {
    # US social security numbers and UK national insurance numbers.
    PiiKind.NATIONAL_ID: r"^([0-9]{3}-[0-9]{2}-[0-9]{4}|[A-CEGHJ-PR-TW-Z]{2}[0-9]{6}[A-D])$",
    PiiKind.DATE_OF_BIRTH: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$|^[0-9]{2}/[0-9]{2}/[0-9]{4}$",
    PiiKind.EMAIL: r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
    PiiKind.NAME: r"^\p{Lu}[\p{Ll}'-]+( \p{Lu}[\p{Ll}'.-]+){0,3}$",
    # International or national numbers: 7 to 15 digits with the usual separators.
    PiiKind.PHONE: r"^\+?\(?[0-9]{1,4}\)?([ .-]?\(?[0-9]{2,4}\)?){2,5}$",
}
_NAME_HINTS: Final = {
    PiiKind.NAME: re.compile(r"^(full_?|first_?|last_?|given_?|family_?|sur|middle_?)?name$"),
    PiiKind.DATE_OF_BIRTH: re.compile(r"^(dob|date_?of_?birth|birth_?date|birthday)$"),
}
_DIGITS: Final = r"[0-9]"


def _hint(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")


def detect_pii(
    table: pa.Table, sample_rows: int = 10_000, min_share: float = 0.8
) -> list[Detection]:
    """The personal data in ``table``'s columns, one detection per column at most.

    Args:
        table: the data.
        sample_rows: how many leading rows are examined.
        min_share: the share of non-null sampled values that must match.
    """
    sample = table.slice(0, sample_rows)
    found = []
    for name in sample.column_names:
        column = sample.column(name)
        detection = _detect(name, column, min_share)
        if detection is not None:
            found.append(detection)
    return found


def _detect(name: str, column: pa.ChunkedArray, min_share: float) -> Detection | None:
    hint = _hint(name)
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        if _NAME_HINTS[PiiKind.DATE_OF_BIRTH].match(hint):
            return Detection(name, PiiKind.DATE_OF_BIRTH, 1.0)
        return None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    values = column.drop_null()
    if len(values) == 0:
        return None
    for kind, pattern in _VALUE_PATTERNS.items():
        required = _NAME_HINTS.get(kind)
        if required is not None and not required.match(hint):
            continue
        matches = pc.match_substring_regex(values, pattern)
        if kind == PiiKind.PHONE:
            digits = pc.count_substring_regex(values, _DIGITS)
            matches = pc.and_(matches, pc.greater_equal(digits, 7))
        share = pc.sum(matches).as_py() / len(values)
        if share >= min_share:
            return Detection(name, kind, share)
    return None
