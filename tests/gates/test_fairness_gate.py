"""The fairness gate equals fairlearn on the same inputs, judges thresholds and fails closed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score

from policies import DEFAULT_BUNDLE_DIR, BundleError, PolicyBundle, load_bundle
from policies.gates import FairnessGate, GateStatus, ModelEvaluation, disparities

TOLERANCE = 1e-9
METRICS = {
    "count": count,
    "selection_rate": selection_rate,
    "true_positive_rate": true_positive_rate,
    "false_positive_rate": false_positive_rate,
    "accuracy": accuracy_score,
}


def assert_matches_fairlearn(
    y_true: np.ndarray, y_pred: np.ndarray, sensitive: dict[str, pandas.Series]
) -> None:
    for disparity in disparities(y_true.astype(np.int8), y_pred.astype(np.int8), sensitive):
        features = pandas.DataFrame({f: sensitive[f] for f in disparity.features})
        frame = MetricFrame(
            metrics=METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=features
        )
        expected = frame.by_group.dropna(subset=["count"])
        expected = expected[expected["count"] > 0]
        assert len(expected) == len(disparity.groups)
        for group in disparity.groups:
            key = group.group if len(group.group) > 1 else group.group[0]
            row = expected.loc[key]
            assert group.count == row["count"]
            for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
                assert getattr(group, metric) == pytest.approx(row[metric], abs=TOLERANCE)
            assert group.accuracy == pytest.approx(row["accuracy"], abs=TOLERANCE)
        kwargs = {"sensitive_features": features}
        assert disparity.demographic_parity_difference == pytest.approx(
            demographic_parity_difference(y_true, y_pred, **kwargs), abs=TOLERANCE
        )
        assert disparity.equalized_odds_difference == pytest.approx(
            equalized_odds_difference(y_true, y_pred, **kwargs), abs=TOLERANCE
        )
        ratio = demographic_parity_ratio(y_true, y_pred, **kwargs)
        if np.isnan(ratio):
            assert np.isnan(disparity.demographic_parity_ratio)
        else:
            assert disparity.demographic_parity_ratio == pytest.approx(ratio, abs=TOLERANCE)


@settings(max_examples=15, deadline=None)
@given(
    rows=st.integers(min_value=2, max_value=300),
    groups=st.tuples(st.integers(1, 4), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    positive_share=st.floats(0.0, 1.0),
)
def test_group_metrics_and_disparities_equal_fairlearn_on_random_inputs(
    rows: int, groups: tuple[int, int], seed: int, positive_share: float
) -> None:
    # Given random labels, decisions and two sensitive features (groups may lack positives)
    rng = np.random.default_rng(seed)
    y_true = (rng.random(rows) < positive_share).astype(int)
    y_pred = rng.integers(0, 2, rows)
    sensitive = {
        "a": pandas.Series(rng.choice([f"a{i}" for i in range(groups[0])], rows)),
        "b": pandas.Series(rng.integers(0, groups[1], rows)),
    }
    # Then every feature and the intersection equal fairlearn's MetricFrame and disparities
    assert_matches_fairlearn(y_true, y_pred, sensitive)


def test_plain_adult_model_fails_the_high_tier_on_sex_with_fairlearns_numbers(
    plain_evaluation: ModelEvaluation,
) -> None:
    # Given the high tier of the default bundle and a plain model trained on Adult
    gate = FairnessGate.from_params(_high_tier_fairness())
    # When it is judged
    result = gate.judge(plain_evaluation)
    # Then demographic parity by sex fails, with fairlearn's figure
    assert result.status == GateStatus.FAIL
    outcomes = plain_evaluation.outcomes
    decisions = plain_evaluation.decisions
    sex = plain_evaluation.current["sex"]
    expected = demographic_parity_difference(outcomes, decisions, sensitive_features=sex)
    assert expected > 0.1
    assert result.metrics["demographic_parity_difference[sex]"] == pytest.approx(
        expected, abs=TOLERANCE
    )
    assert any(r.startswith("sex: demographic_parity_difference") for r in result.reasons)
    # And the whole Adult evaluation agrees with fairlearn group by group
    assert_matches_fairlearn(
        outcomes, decisions, {f: plain_evaluation.current[f] for f in ("sex", "race")}
    )


def test_small_groups_are_reported_and_kept_out_of_the_judged_disparities(
    plain_evaluation: ModelEvaluation,
) -> None:
    # Given a minimum group size larger than two race groups of the evaluation data
    gate = FairnessGate.from_params(
        {
            "sensitive_features": ["race"],
            "max_demographic_parity_difference": 1.0,
            "min_group_size": 100,
        }
    )
    # When judged
    result = gate.judge(plain_evaluation)
    # Then those groups are in the evidence, flagged, and named in the reasons
    groups = result.evidence["features"][0]["groups"]
    small = {g["group"]["race"] for g in groups if g["below_min_size"]}
    assert small == {"Amer-Indian-Eskimo", "Other"}
    assert any("Amer-Indian-Eskimo (n=" in r for r in result.reasons)
    # And the disparity equals fairlearn's on the rows of the large groups only
    race = plain_evaluation.current["race"]
    large = ~race.isin(small).to_numpy()
    expected = demographic_parity_difference(
        plain_evaluation.outcomes[large],
        plain_evaluation.decisions[large],
        sensitive_features=race[large],
    )
    assert result.metrics["demographic_parity_difference[race]"] == pytest.approx(
        expected, abs=TOLERANCE
    )
    assert result.status == GateStatus.PASS


def test_evidence_is_json_and_the_same_for_the_same_inputs(
    plain_evaluation: ModelEvaluation,
) -> None:
    gate = FairnessGate.from_params(_high_tier_fairness())
    first = gate.judge(plain_evaluation)
    again = gate.judge(dataclasses.replace(plain_evaluation))
    assert json.dumps(first.evidence, allow_nan=False) == json.dumps(
        again.evidence, allow_nan=False
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: dataclasses.replace(e, current=e.current.drop(columns="sex")), "no column sex"),
        (lambda e: dataclasses.replace(e, predictions=["<=50K"] * 3), "same length"),
        (
            lambda e: dataclasses.replace(e, current=e.current.assign(income="<=50K")),
            "single class",
        ),
        (
            lambda e: dataclasses.replace(
                e,
                current=e.current.assign(
                    income=e.current["income"].where(e.current.index != e.current.index[0])
                ),
            ),
            "missing value",
        ),
        (
            lambda e: dataclasses.replace(
                e,
                current=e.current.assign(
                    sex=e.current["sex"].where(e.current.index != e.current.index[0])
                ),
            ),
            "sensitive column 'sex' has 1 missing",
        ),
        (
            lambda e: dataclasses.replace(e, predictions=[None] * len(e.current)),
            "prediction(s) are missing",
        ),
    ],
    ids=[
        "missing column",
        "length mismatch",
        "single class",
        "nan label",
        "nan group",
        "nan predictions",
    ],
)
def test_bad_input_fails_with_a_reason(
    plain_evaluation: ModelEvaluation, change: object, reason: str
) -> None:
    broken = change(plain_evaluation)  # type: ignore[operator]
    result = FairnessGate.from_params(_high_tier_fairness()).judge(broken)
    assert result.status == GateStatus.FAIL
    assert reason in result.reasons[0]


def test_a_bundle_with_a_fairness_gate_without_threshold_is_refused() -> None:
    # Given the default bundle whose medium tier loses its only fairness threshold
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    files["gates.yaml"] = files["gates.yaml"].replace(
        "        max_demographic_parity_difference: 0.2\n", "", 1
    )
    # Then the bundle is refused, naming the gate
    with pytest.raises(BundleError, match=r"fairness: .*at least one threshold"):
        PolicyBundle.from_files(files)


def _high_tier_fairness() -> dict[str, object]:
    entry = next(
        e for e in load_bundle(DEFAULT_BUNDLE_DIR).gates.evaluate["high"] if e.gate == "fairness"
    )
    return dict(entry.params)
