"""Mitigation on Adult: the plain model fails the high-risk fairness gate, the candidate passes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference

from policies import DEFAULT_BUNDLE_DIR, load_bundle
from policies.gates import EvaluationError, FairnessGate, GateStatus, ModelEvaluation
from policies.mitigation import mitigate, refit_fair


@pytest.fixture(scope="module")
def fairness_gate() -> FairnessGate:
    entry = next(
        e for e in load_bundle(DEFAULT_BUNDLE_DIR).gates.evaluate["high"] if e.gate == "fairness"
    )
    return FairnessGate.from_params(entry.params)


def test_threshold_optimizer_candidate_passes_where_the_plain_model_fails(
    plain_evaluation: ModelEvaluation, fairness_gate: FairnessGate
) -> None:
    # Given the plain model, which the high tier fails on demographic parity by sex
    assert fairness_gate.judge(plain_evaluation).status == GateStatus.FAIL
    # When it is mitigated for demographic parity over sex and race
    mitigation = mitigate(plain_evaluation, ["sex", "race"], min_group_size=100)
    # Then the candidate passes the same gate on the same evaluation data
    after = fairness_gate.judge(mitigation.candidate)
    assert after.status == GateStatus.PASS, after.reasons
    # And the before/after evidence carries fairlearn's figures for both models
    evidence = mitigation.evidence()
    json.dumps(evidence, allow_nan=False)
    by_sex = {key: evidence[key]["sex"] for key in ("before", "after")}
    sex = plain_evaluation.current["sex"]
    for model, key in ((plain_evaluation, "before"), (mitigation.candidate, "after")):
        expected = demographic_parity_difference(
            model.outcomes, model.decisions, sensitive_features=sex
        )
        assert by_sex[key]["demographic_parity_difference"] == pytest.approx(expected, abs=1e-9)
    assert (
        by_sex["after"]["demographic_parity_difference"]
        < 0.1
        < by_sex["before"]["demographic_parity_difference"]
    )


def test_the_candidate_decides_the_same_on_every_call(plain_evaluation: ModelEvaluation) -> None:
    candidate = mitigate(plain_evaluation, ["sex"]).candidate
    rows = plain_evaluation.current.iloc[:500]
    first = candidate.model.predict(rows)
    assert set(np.unique(first)) <= {"<=50K", ">50K"}
    np.testing.assert_array_equal(first, candidate.model.predict(rows))


def test_a_refit_without_any_feature_left_is_refused(plain_evaluation: ModelEvaluation) -> None:
    only_sex = dataclasses.replace(plain_evaluation, features=("sex",))
    with pytest.raises(EvaluationError, match="no feature is left"):
        refit_fair(only_sex, ["sex"])


def test_a_refit_needs_the_training_snapshot(plain_evaluation: ModelEvaluation) -> None:
    without = dataclasses.replace(plain_evaluation, reference=None)
    with pytest.raises(EvaluationError, match="training snapshot"):
        refit_fair(without, ["sex"])
