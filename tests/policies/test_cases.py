"""The policy case files, decided by the engine and by plain pycasbin."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from policies import DEFAULT_BUNDLE_DIR, load_bundle, load_cases, run_cases

CASES_DIR = Path(__file__).resolve().parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("case_path", CASE_FILES, ids=[path.stem for path in CASE_FILES])
def test_every_case_gets_its_decision_from_engine_and_casbin(case_path: Path) -> None:
    # Given the default bundle and one case file
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    # When every case is decided by the engine and by plain pycasbin
    failures = run_cases(bundle, load_cases(case_path))
    # Then each gets its wanted decision and rule, and the two agree
    assert [str(failure) for failure in failures] == []


def test_a_wrong_expectation_is_reported() -> None:
    # Given a case file whose first case wants the opposite decision
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    (case_file,) = load_cases(CASES_DIR / "abac.yaml")
    first, *rest = case_file.cases
    flipped = dataclasses.replace(first, want_allowed=not first.want_allowed, rule=None)
    # When it is run
    failures = run_cases(bundle, [dataclasses.replace(case_file, cases=(flipped, *rest))])
    # Then exactly that case fails, saying what it got
    assert [failure.case for failure in failures] == [first.name]
    assert "want" in failures[0].problem


def test_a_case_file_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "cases:\n  - {name: x, subject: a, domain: d, object: o, action: read,"
        " want: allow, wnat: deny}\n"
    )
    with pytest.raises(ValueError, match="wnat"):
        load_cases(path)
