"""Model cards from the high tier's evidence on Adult, in JSON, escaped HTML and Markdown."""

from __future__ import annotations

import dataclasses
import json

from control_plane.inventory.model_card import Approval, ModelCard
from policies import DEFAULT_BUNDLE_DIR, load_bundle
from policies.gates import GateStatus, ModelEvaluation, evaluate_model

HOSTILE = "<script>alert('x')</script> | [link](http://evil) **bold**"


def test_high_tier_evidence_renders_in_three_formats_with_every_value_escaped(
    plain_evaluation: ModelEvaluation,
) -> None:
    # Given the high tier's gates judged on 3,000 Adult rows
    small = dataclasses.replace(
        plain_evaluation, current=plain_evaluation.current.sample(3000, random_state=0)
    )
    results = evaluate_model(load_bundle(DEFAULT_BUNDLE_DIR), "high", small)
    assert [r.gate for r in results] == ["fairness", "explainability", "drift"]
    assert results[0].status == GateStatus.FAIL
    # When a card is built with a hostile intended use and approval comment
    card = ModelCard(
        model="income",
        version="1",
        risk_tier="high",
        owner="dana",
        intended_use=HOSTILE,
        training_data="dataset:adult (70%)",
        evaluation_data="dataset:adult (30%)",
        privacy_mode="dp",
        epsilon=3.0,
        delta=1e-5,
        approvals=(Approval("rita", "approved", "2026-01-01T00:00:00Z", "production", HOSTILE),),
        gates=results,
    )
    # Then the JSON carries the evidence, including derived limitations
    data = json.loads(card.to_json())
    assert data["privacy"] == {"mode": "dp", "epsilon": 3.0, "delta": 1e-5}
    assert data["metrics_by_group"][0]["features"] == ["sex"]
    assert any(text.startswith("gate fairness failed") for text in data["limitations"])
    assert data["explanations"]["global_importance"]
    # And neither HTML nor Markdown lets a value through unescaped
    page = card.to_html()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    markdown = card.to_markdown()
    assert "[link](http://evil)" not in markdown
    assert "<script>" not in markdown
    assert "\\| \\[link\\]" in markdown


def test_a_tier_without_evaluate_gates_fails_closed(plain_evaluation: ModelEvaluation) -> None:
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    results = evaluate_model(bundle, "critical", plain_evaluation)
    assert [r.status for r in results] == [GateStatus.FAIL]
    assert "no evaluate gates for risk tier 'critical'" in results[0].reasons[0]
