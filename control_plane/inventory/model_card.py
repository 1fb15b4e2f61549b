"""Model cards: what a model version is for and the evidence it was judged on, in three formats.

A card is built from the gate results of an ``evaluate`` run (fairness per group, explanations,
drift and quality), the model's inventory facts, its privacy mode and epsilon, and its approvals.
It renders as JSON (the record), HTML (every value escaped) and Markdown (every value escaped,
so no value can open a link, a tag or a table cell).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.gates import GateResult

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>&~])")
CARD_FILES = {"json": "model_card.json", "html": "model_card.html", "markdown": "model_card.md"}
"""The evidence file a card is kept under, by format."""


@dataclass(frozen=True)
class Approval:
    """One approver's decision on promoting the model version to ``stage``."""

    approver: str
    decision: str
    decided_at: str
    stage: str
    comment: str = ""


@dataclass(frozen=True)
class ModelCard:
    """The facts of a model card; :meth:`to_json`, :meth:`to_html` and :meth:`to_markdown`."""

    model: str
    version: str
    risk_tier: str
    owner: str
    intended_use: str
    training_data: str
    evaluation_data: str
    privacy_mode: str
    epsilon: float | None = None
    delta: float | None = None
    limitations: tuple[str, ...] = ()
    approvals: tuple[Approval, ...] = ()
    gates: tuple[GateResult, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data, with limitations the evidence itself shows added."""
        return {
            "model": self.model,
            "version": self.version,
            "risk_tier": self.risk_tier,
            "owner": self.owner,
            "intended_use": self.intended_use,
            "data": {"training": self.training_data, "evaluation": self.evaluation_data},
            "privacy": {"mode": self.privacy_mode, "epsilon": self.epsilon, "delta": self.delta},
            "gates": [
                {"gate": r.gate, "status": str(r.status), "reasons": list(r.reasons)}
                for r in self.gates
            ],
            "metrics_by_group": self._evidence("fairness").get("features", []),
            "explanations": {
                key: self._evidence("explainability").get(key)
                for key in ("explainer", "global_importance", "forbidden", "counterfactual")
            },
            "performance": self._metrics("drift"),
            "limitations": [*self.limitations, *self._found_limitations()],
            "approvals": [vars(a) for a in self.approvals],
        }

    def to_json(self) -> str:
        """The card as canonical JSON (sorted keys, no NaN)."""
        return card_json(self.to_dict())

    def to_html(self) -> str:
        """The card as one HTML page; every value is escaped."""
        return card_html(self.to_dict())

    def to_markdown(self) -> str:
        """The card as Markdown; every value is escaped."""
        return card_markdown(self.to_dict())

    def _result(self, gate: str) -> GateResult | None:
        return next((r for r in self.gates if r.gate == gate), None)

    def _metrics(self, gate: str) -> dict[str, float]:
        result = self._result(gate)
        return dict(result.metrics) if result is not None else {}

    def _evidence(self, gate: str) -> Mapping[str, Any]:
        result = self._result(gate)
        return result.evidence if result is not None else {}

    def _found_limitations(self) -> list[str]:
        found = [
            f"gate {r.gate} failed: {'; '.join(r.reasons)}"
            for r in self.gates
            if r.status == "fail"
        ]
        for feature in self._evidence("fairness").get("features", []):
            small = [g for g in feature["groups"] if g["below_min_size"]]
            if small:
                found.append(
                    f"{len(small)} group(s) of {' & '.join(feature['features'])} are too small "
                    "to be judged; their metrics are uncertain"
                )
        return found


def with_approvals(card: Mapping[str, Any], approvals: Iterable[Approval]) -> dict[str, Any]:
    """``card`` (as :meth:`ModelCard.to_dict` made it) with these approvals added to its own."""
    return {**card, "approvals": [*card["approvals"], *(vars(a) for a in approvals)]}


def render_card(card: Mapping[str, Any]) -> dict[str, str]:
    """The card in every format, by the evidence file name it is kept under."""
    return {
        CARD_FILES["json"]: card_json(card),
        CARD_FILES["html"]: card_html(card),
        CARD_FILES["markdown"]: card_markdown(card),
    }


def card_json(card: Mapping[str, Any]) -> str:
    """The card as canonical JSON (sorted keys, no NaN)."""
    return json.dumps(card, sort_keys=True, allow_nan=False, indent=2)


def card_html(card: Mapping[str, Any]) -> str:
    """The card as one HTML page; every value is escaped."""
    title = f"{_h(card['model'])} version {_h(card['version'])}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Model card: {title}</title></head><body>",
        f"<h1>{title}</h1>",
    ]
    for heading, rows in _sections(card):
        parts.append(f"<h2>{_h(heading)}</h2><table>")
        parts.extend(f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in rows)
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown; every value is escaped."""
    lines = [f"# {_md(card['model'])} version {_md(card['version'])}", ""]
    for heading, rows in _sections(card):
        lines += [f"## {_md(heading)}", "", "| item | value |", "| --- | --- |"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in rows]
        lines.append("")
    return "\n".join(lines)


def _sections(card: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    groups = [
        (
            f"{feature['features']} = {group['group']}",
            f"n={group['count']}, selection rate {group['selection_rate']}, "
            f"TPR {group['true_positive_rate']}, FPR {group['false_positive_rate']}, "
            f"accuracy {group['accuracy']}",
        )
        for feature in card["metrics_by_group"]
        for group in feature["groups"]
    ]
    importance = card["explanations"]["global_importance"] or []
    privacy = card["privacy"]
    return [
        (
            "Overview",
            [
                ("risk tier", card["risk_tier"]),
                ("owner", card["owner"]),
                ("intended use", card["intended_use"]),
            ],
        ),
        (
            "Data",
            [("training", card["data"]["training"]), ("evaluation", card["data"]["evaluation"])],
        ),
        (
            "Gates",
            [(g["gate"], f"{g['status']}: {'; '.join(g['reasons'])}") for g in card["gates"]],
        ),
        ("Metrics per group", groups),
        ("Performance", list(card["performance"].items())),
        ("Explanations", [(i["feature"], f"share {i['share']}") for i in importance]),
        (
            "Privacy",
            [
                ("mode", privacy["mode"]),
                ("epsilon", privacy["epsilon"]),
                ("delta", privacy["delta"]),
            ],
        ),
        ("Limitations", [(str(n + 1), text) for n, text in enumerate(card["limitations"])]),
        (
            "Approvals",
            [
                (
                    a["approver"],
                    f"{a['decision']} for {a['stage']} at {a['decided_at']} {a['comment']}",
                )
                for a in card["approvals"]
            ],
        ),
    ]


def _h(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _md(value: Any) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
