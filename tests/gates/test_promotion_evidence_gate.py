"""The promotion_evidence gate: a version is promoted only with a passed evaluation, a model
card and, when the bundle names them, a training privacy mode; it is planned before approval."""

from __future__ import annotations

from typing import Any

import pytest

from policies import (
    DEFAULT_BUNDLE_DIR,
    GateContext,
    GateSpec,
    GateStatus,
    build_gate,
    load_bundle,
    plan_gates,
)

BUNDLE = load_bundle(DEFAULT_BUNDLE_DIR)
EVIDENCED = {
    "version": 3,
    "version_evaluation": "passed",
    "version_model_card": True,
    "version_privacy_mode": "dp",
}


def _verdict(attributes: dict[str, Any], **params: Any) -> tuple[GateStatus, str]:
    gate = build_gate(GateSpec("promotion_evidence", params))
    result = gate.evaluate(GateContext("promote", attributes, {}, BUNDLE))
    return result.status, result.reasons[0]


def test_a_version_with_its_evidence_passes() -> None:
    assert _verdict(EVIDENCED) == (
        GateStatus.PASS,
        "version 3 has a passed evaluation and a model card",
    )


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({"version_evaluation": "failed"}, "a passed evaluation (latest: failed)"),
        ({"version_evaluation": None}, "a passed evaluation (latest: none)"),
        ({"version_model_card": False}, "a model card"),
    ],
)
def test_missing_evidence_is_named(change: dict[str, Any], missing: str) -> None:
    status, reason = _verdict({**EVIDENCED, **change})
    assert status == GateStatus.FAIL
    assert reason == f"version 3 lacks {missing}"


def test_a_bundle_may_require_a_training_privacy_mode() -> None:
    assert _verdict(EVIDENCED, privacy_modes=["dp", "federated"])[0] == GateStatus.PASS
    status, reason = _verdict({**EVIDENCED, "version_privacy_mode": "plain"}, privacy_modes=["dp"])
    assert status == GateStatus.FAIL
    assert reason == "version 3 lacks training in privacy mode dp (recorded: plain)"
    with pytest.raises(ValueError, match="invalid params"):
        build_gate(GateSpec("promotion_evidence", {"privacy_modes": ["telepathy"]}))


def test_the_default_bundle_checks_evidence_before_opening_an_approval() -> None:
    for tier in ("low", "medium", "high"):
        attributes = {"risk_tier": tier, "target_stage": "production"}
        planned = [spec.name for spec in plan_gates(BUNDLE, "promote", attributes)]
        assert planned == ["promotion_evidence", "approval"]
