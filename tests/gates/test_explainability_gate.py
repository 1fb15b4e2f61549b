"""The explainability gate's attributions equal shap called directly; bad models fail."""

from __future__ import annotations

import json

import numpy as np
import pandas
import shap
from sklearn.ensemble import HistGradientBoostingClassifier

from policies.gates import ExplainabilityGate, GateStatus, ModelEvaluation
from policies.gates.explainability import explain
from policies.mitigation import mitigate

SHAP_TOLERANCE = 1e-9


def high_tier(**overrides: object) -> ExplainabilityGate:
    params: dict[str, object] = {
        "sensitive_features": ["sex"],
        "forbidden_features": ["sex", "race"],
        "max_forbidden_share": 0.05,
        "counterfactual_features": ["sex"],
        "max_counterfactual_flip_rate": 0.05,
        "sample_size": 300,
    }
    return ExplainabilityGate.from_params({**params, **overrides})


def test_linear_attributions_equal_linear_explainer_summed_per_feature(
    plain_evaluation: ModelEvaluation,
) -> None:
    # Given the plain logistic regression behind a one-hot ColumnTransformer
    sample = plain_evaluation.current.sample(200, random_state=1)
    background = plain_evaluation.reference.sample(50, random_state=1)  # type: ignore[union-attr]
    # When the gate's explainer attributes the sample
    found = explain(plain_evaluation, sample, background, agnostic_rows=10)
    # Then it is LinearExplainer's output, each one-hot block summed onto its input column
    prepare, classify = plain_evaluation.model.steps[0][1], plain_evaluation.model.steps[1][1]  # type: ignore[attr-defined]
    features = list(plain_evaluation.features)
    direct = shap.LinearExplainer(
        classify, prepare.transform(background[features]).toarray()
    ).shap_values(prepare.transform(sample[features]).toarray())
    names = prepare.get_feature_names_out()
    for index, feature in enumerate(features):
        columns = [
            i
            for i, name in enumerate(names)
            if name == f"numeric__{feature}" or name.startswith(f"categorical__{feature}_")
        ]
        np.testing.assert_allclose(
            found.values[:, index], direct[:, columns].sum(axis=1), atol=SHAP_TOLERANCE
        )
    assert found.explainer == "linear"


def test_tree_attributions_equal_tree_explainer(
    adult_split: tuple[pandas.DataFrame, pandas.DataFrame],
) -> None:
    train, test = adult_split
    numeric = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(
        train[list(numeric)], train["income"]
    )
    evaluation = ModelEvaluation(model, numeric, "income", ">50K", test, train)
    sample = test.iloc[:200]
    found = explain(evaluation, sample, train.iloc[:50], agnostic_rows=10)
    direct = shap.TreeExplainer(model).shap_values(sample[list(numeric)].to_numpy(float))
    assert found.explainer == "tree"
    np.testing.assert_allclose(found.values, direct, atol=SHAP_TOLERANCE)


def test_plain_model_relies_on_sex_and_fails_the_high_tier(
    plain_evaluation: ModelEvaluation,
) -> None:
    # When the plain Adult model is judged
    result = high_tier().judge(plain_evaluation)
    # Then its reliance on forbidden features and its counterfactual flips are reported
    assert result.status == GateStatus.FAIL
    assert result.metrics["forbidden_share"] > 0.05
    flips = result.evidence["counterfactual"][0]
    sample = plain_evaluation.current.sample(300, random_state=0)
    flipped = sample.assign(sex=np.where(sample["sex"] == "Male", "Female", "Male"))
    expected = int((plain_evaluation.predict(sample) != plain_evaluation.predict(flipped)).sum())
    assert flips["changed"] == expected
    assert flips["trials"] == 300
    # And the evidence is JSON, the same on every run, with local explanations
    assert json.dumps(result.evidence, allow_nan=False) == json.dumps(
        high_tier().judge(plain_evaluation).evidence, allow_nan=False
    )
    assert len(result.evidence["local"]) == 5


def test_model_agnostic_attributions_are_bounded_and_add_up(
    plain_evaluation: ModelEvaluation,
) -> None:
    # Given a mitigated candidate, neither a tree nor a linear model
    candidate = mitigate(plain_evaluation, ["sex"]).candidate
    sample = candidate.current.iloc[:200]
    # When explained with a bound of 2 rows
    found = explain(candidate, sample, candidate.reference.iloc[:10], agnostic_rows=2)  # type: ignore[union-attr]
    # Then only 2 rows are explained, and each row's attributions sum to its probability
    assert found.explainer == "permutation"
    assert found.values.shape == (2, len(candidate.features))
    probability = candidate.model.predict_proba(sample.iloc[:2])[:, 1]  # type: ignore[attr-defined]
    np.testing.assert_allclose(found.values.sum(axis=1) + found.base_value, probability, atol=1e-6)


class _Opaque:
    """A model that decides but exposes nothing an explainer can use."""

    def predict(self, frame: pandas.DataFrame) -> np.ndarray:
        return np.where(frame["age"] > 40, ">50K", "<=50K")


def test_a_model_no_explainer_handles_fails_with_a_reason(
    plain_evaluation: ModelEvaluation,
) -> None:
    opaque = ModelEvaluation(
        _Opaque(), ("age",), "income", ">50K", plain_evaluation.current, plain_evaluation.reference
    )
    result = high_tier().judge(opaque)
    assert result.status == GateStatus.FAIL
    assert "no explainer handles a _Opaque" in result.reasons[0]


def test_missing_counterfactual_column_fails(plain_evaluation: ModelEvaluation) -> None:
    result = high_tier(counterfactual_features=["religion"]).judge(plain_evaluation)
    assert result.status == GateStatus.FAIL
    assert "no column religion" in result.reasons[0]


def test_missing_feature_values_fail(plain_evaluation: ModelEvaluation) -> None:
    current = plain_evaluation.current.assign(age=float("nan"))
    result = high_tier().judge(
        ModelEvaluation(
            plain_evaluation.model,
            plain_evaluation.features,
            "income",
            ">50K",
            current,
            plain_evaluation.reference,
        )
    )
    assert result.status == GateStatus.FAIL
    assert "missing values" in result.reasons[0]
