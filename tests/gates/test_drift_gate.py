"""The drift gate reports evidently's own figures, judges them, and keeps the report."""

from __future__ import annotations

import dataclasses
import json

import pytest
from evidently import Dataset
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from policies.gates import DriftGate, GateStatus, ModelEvaluation
from policies.gates.drift import HTML_ARTIFACT, drift_frames, drift_report

COLUMNS = ["age", "education-num", "hours-per-week", "sex", "race", "relationship"]


@pytest.fixture(scope="module")
def small(plain_evaluation: ModelEvaluation) -> ModelEvaluation:
    """3,000 evaluation rows against 3,000 training rows: evidently stays fast."""
    return dataclasses.replace(
        plain_evaluation,
        current=plain_evaluation.current.sample(3000, random_state=0),
        reference=plain_evaluation.reference.sample(3000, random_state=0),  # type: ignore[union-attr]
    )


def test_undrifted_data_passes_with_evidentlys_figures(small: ModelEvaluation) -> None:
    gate = DriftGate.from_params({"columns": COLUMNS, "max_drift_share": 0.3, "min_accuracy": 0.8})
    result = gate.judge(small)
    assert result.status == GateStatus.PASS, result.reasons
    # evidently called directly on the same frames gives the same report
    reference, current, definition = drift_frames(small, COLUMNS)
    direct = drift_report(COLUMNS, 0.3).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    assert json.dumps(result.evidence["report"], sort_keys=True) == json.dumps(
        json.loads(direct.json()), sort_keys=True
    )
    assert result.metrics["accuracy"] == pytest.approx(
        accuracy_score(small.outcomes, small.decisions), abs=1e-12
    )
    # and the HTML report is kept as an artifact the evidence names
    assert result.artifacts[HTML_ARTIFACT].lstrip().lower().startswith("<!doctype html")
    assert result.evidence["artifacts"] == [HTML_ARTIFACT]
    # and the evidence is JSON and the same on every run
    assert json.dumps(result.evidence, allow_nan=False) == json.dumps(
        gate.judge(small).evidence, allow_nan=False
    )


def test_drifted_data_and_poor_quality_fail(small: ModelEvaluation) -> None:
    # Given evaluation data of older men only, and an accuracy bar the model cannot meet
    shifted = small.current.assign(age=small.current["age"] + 25, sex="Male")
    drifted = dataclasses.replace(small, current=shifted)
    gate = DriftGate.from_params({"columns": COLUMNS, "max_drift_share": 0.1, "min_accuracy": 0.99})
    result = gate.judge(drifted)
    assert result.status == GateStatus.FAIL
    assert {"age", "sex"} <= set(result.evidence["drifted_columns"])
    assert any("of the columns drifted" in r for r in result.reasons)
    assert any(r.startswith("accuracy") for r in result.reasons)


def test_no_training_snapshot_fails(small: ModelEvaluation) -> None:
    result = DriftGate.from_params({}).judge(dataclasses.replace(small, reference=None))
    assert result.status == GateStatus.FAIL
    assert "training snapshot" in result.reasons[0]


REGRESSION_FEATURES = ["age", "education-num", "capital-gain", "sex", "relationship"]


@pytest.fixture(scope="module")
def hours(small: ModelEvaluation) -> ModelEvaluation:
    """A regressor of hours-per-week on Adult, judged on the same 3,000 rows."""
    reference = small.reference
    assert reference is not None
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numeric", "passthrough", REGRESSION_FEATURES[:3]),
                        (
                            "categorical",
                            OneHotEncoder(handle_unknown="ignore"),
                            ["sex", "relationship"],
                        ),
                    ]
                ),
            ),
            ("regress", LinearRegression()),
        ]
    ).fit(reference[REGRESSION_FEATURES], reference["hours-per-week"])
    return ModelEvaluation(
        model, tuple(REGRESSION_FEATURES), "hours-per-week", None, small.current, reference
    )


def test_regression_quality_is_scikit_learns_and_judged(hours: ModelEvaluation) -> None:
    # Given a hours-per-week regressor and its predictions on the evaluation rows
    predicted = hours.model.predict(hours.current[list(hours.features)])
    truth = hours.current["hours-per-week"]
    mae = mean_absolute_error(truth, predicted)
    # When the regression drift gate judges it with an MAE bound above and one below the truth
    loose = DriftGate.from_params(
        {"task": "regression", "max_mae": mae + 0.5, "min_r2": 0.0, "max_drift_share": 0.5}
    ).judge(hours)
    strict = DriftGate.from_params({"task": "regression", "max_mae": mae - 0.5}).judge(hours)
    # Then evidently's MAE, RMSE and R2 equal scikit-learn's on the same predictions
    assert loose.metrics["mae"] == pytest.approx(mae, abs=1e-9)
    assert loose.metrics["rmse"] == pytest.approx(
        mean_squared_error(truth, predicted) ** 0.5, abs=1e-9
    )
    assert loose.metrics["r2"] == pytest.approx(r2_score(truth, predicted), abs=1e-9)
    # And the bound decides the verdict, with the reason
    assert loose.status == GateStatus.PASS, loose.reasons
    assert strict.status == GateStatus.FAIL
    assert any(reason.startswith("mae ") and "is above" in reason for reason in strict.reasons)
    json.dumps(loose.evidence, allow_nan=False)


def test_a_classification_bound_on_a_regression_fails_with_the_reason(
    hours: ModelEvaluation,
) -> None:
    result = DriftGate.from_params({"task": "regression", "min_accuracy": 0.8}).judge(hours)
    assert result.status == GateStatus.FAIL
    assert "accuracy is not measured for this task" in result.reasons[0]
