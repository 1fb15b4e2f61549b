"""Evaluation data a gate cannot judge makes that gate fail with the reason, recorded by the run.

The store is exercised on both backends by ``test_evaluate_runs``; these cases are about the
gates' inputs, so they run on SQLite only (each trains, registers and evaluates a model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas
import pyarrow as pa
import pytest

from tests.runs.adult_training import FEATURES, LABEL
from tests.runs.test_evaluate_runs import Plane, adult_rows, plane  # noqa: F401

WITHOUT_SENSITIVE = tuple(f for f in FEATURES if f not in ("sex", "race"))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'govplane.db'}"


def _without_race(frame: pandas.DataFrame) -> pandas.DataFrame:
    return frame.drop(columns=["race"])


def _unknown_sex(frame: pandas.DataFrame) -> pandas.DataFrame:
    frame.loc[frame.index[:40], "sex"] = None
    return frame


def _one_class(frame: pandas.DataFrame) -> pandas.DataFrame:
    return frame[frame[LABEL] == "<=50K"]


def _unknown_occupation(frame: pandas.DataFrame) -> pandas.DataFrame:
    frame.loc[frame.index[:40], "occupation"] = None
    return frame


@pytest.mark.parametrize(
    ("tier", "spoil", "gate", "reason"),
    [
        ("medium", _without_race, "fairness", "the evaluation data has no column race"),
        ("medium", _unknown_sex, "fairness", "the sensitive column 'sex' has 40 missing"),
        ("medium", _one_class, "fairness", "has a single class"),
        ("high", _unknown_occupation, "explainability", "missing values"),
    ],
    ids=["missing-sensitive-column", "nan-in-sensitive-column", "single-class", "nan-feature"],
)
def test_a_gate_fails_with_the_reason_and_the_run_records_it(
    plane: Plane,  # noqa: F811
    tier: str,
    spoil: Callable[[pandas.DataFrame], pandas.DataFrame],
    gate: str,
    reason: str,
) -> None:
    # Given a model without sex and race among its features, and spoiled evaluation data
    version = plane.model("screening", tier, WITHOUT_SENSITIVE)
    spoiled = spoil(adult_rows(6000, 9000).to_pandas())
    plane.dataset("adult-spoiled", pa.Table.from_pandas(spoiled, preserve_index=False))
    # When the model is evaluated on it
    run = plane.evaluate("screening", version, "adult-spoiled")
    # Then the gate fails with the reason, and the run, the version and the card record it
    assert run["state"] == "failed"
    judged = {g["gate"]: g for g in run["gates"]}
    assert judged[gate]["status"] == "fail"
    assert any(reason in text for text in judged[gate]["reasons"]), judged[gate]["reasons"]
    shown = plane.client.get(f"/api/v1/models/screening/versions/{version}").json()
    assert shown["evidence"]["evaluation"]["gates"][gate] == "fail"
    card = plane.client.get(f"/api/v1/models/screening/versions/{version}/card").json()
    assert any(reason in text for text in card["limitations"])


@pytest.mark.parametrize(
    ("mitigate", "reason"),
    [
        ({"sensitive_features": ["religion"]}, "the reference data has no column religion"),
        ({"sensitive_features": ["sex"], "strength": 2}, "invalid evaluate params"),
        ({"sensitive_features": []}, "invalid evaluate params"),
    ],
    ids=["unknown-sensitive-column", "unknown-field", "no-sensitive-feature"],
)
def test_a_mitigation_it_cannot_carry_out_fails_the_run_and_adds_no_version(
    plane: Plane,  # noqa: F811
    mitigate: dict[str, object],
    reason: str,
) -> None:
    # Given a trained version
    version = plane.model("screening", "high")
    # When a mitigation is asked for with what cannot be fitted
    run = plane.run(
        "evaluate",
        "model:screening",
        ["dataset:adult-valid"],
        version=version,
        mitigate=mitigate,
    )
    # Then the run fails with the reason, and no candidate version is added
    assert run["state"] == "failed"
    assert reason in run["error"], run["error"]
    assert plane.client.get(f"/api/v1/models/screening/versions/{version + 1}").status_code == 404
