"""Pseudonyms, generalization and masks, checked against the standard library and pandas."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pyarrow as pa
import pytest

from control_plane.sample_data import read_adult
from privacy import MissingKeyError, Pseudonymizer, generalize_band, mask, truncate

KEY = bytes(range(32))


def test_pseudonyms_are_the_keyed_hmac_of_each_value() -> None:
    values = pa.chunked_array([["ann@example.org", None, "bob@example.org", "ann@example.org"]])
    tokens = Pseudonymizer(KEY).pseudonymize(values).to_pylist()
    expected = [
        "pn_" + hmac.new(KEY, v.encode(), hashlib.sha256).hexdigest()[:32] if v else None
        for v in values.to_pylist()
    ]
    assert tokens == expected
    assert tokens[0] == tokens[3]


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    values = read_adult().column("native-country")
    first = Pseudonymizer(KEY).pseudonymize(values)
    again = Pseudonymizer(KEY).pseudonymize(values)
    other = Pseudonymizer(bytes(32)).pseudonymize(values)
    assert first.equals(again)
    assert first[0].as_py() != other[0].as_py()
    # Distinct values stay distinct, so counts and joins still work
    assert len(first.unique()) == len(values.unique())


def test_a_missing_or_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError, match="does not exist"):
        Pseudonymizer.from_key_file(tmp_path / "absent.key")
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(MissingKeyError, match="16"):
        Pseudonymizer.from_key_file(tmp_path / "short.key")


def test_age_bands_match_pandas_floor_division() -> None:
    ages = read_adult().column("age")
    banded = generalize_band(ages, 10).to_pylist()
    assert banded == ((ages.to_pandas() // 10) * 10).tolist()
    assert generalize_band(ages, 10).type == ages.type


def test_postcodes_are_truncated() -> None:
    codes = pa.chunked_array([["SW1A 1AA", "75008", None]])
    assert truncate(codes, 3).to_pylist() == ["SW1", "750", None]


def test_a_mask_keeps_the_column_and_removes_every_value() -> None:
    names = pa.chunked_array([["Ann", "Bob"]])
    masked = mask(names)
    assert masked.type == names.type
    assert masked.null_count == 2


def test_bands_need_numbers() -> None:
    with pytest.raises(ValueError, match="numbers"):
        generalize_band(pa.chunked_array([["a"]]), 5)
