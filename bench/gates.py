"""Model-risk gates on 1 million rows, each next to the plain library call on the same data.

Adult rows are drawn with replacement up to ``--rows`` (1,000,000 by default) and scored by a
logistic regression trained on Adult. In one run it times:

- the fairness gate (sex, race and their intersection) against plain fairlearn: ``MetricFrame``
  with selection rate, TPR, FPR, accuracy and count plus ``demographic_parity_difference`` and
  ``equalized_odds_difference`` for each of the same three feature sets; every group metric and
  disparity must equal fairlearn's to 1e-9 (exit status 1 otherwise); goal: 10x faster;
- the explainability gate (it explains a seeded sample of 1,000 rows and runs the
  counterfactual test on them) against ``shap.LinearExplainer`` on that same sample;
- the drift gate (evidently report: drifted columns, each column's and the decisions' drift,
  quality) against the same evidently report run directly on the same frames.

Run: ``.venv/bin/python bench/gates.py [--rows 1000000] [--json]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas

# The repository root first: bench/lineage.py and bench/audit.py would shadow those packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _rows import emit, row
from evidently import Dataset
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from control_plane.sample_data import read_adult
from policies.gates import (
    DriftGate,
    ExplainabilityGate,
    FairnessGate,
    ModelEvaluation,
    disparities,
)
from policies.gates.drift import drift_frames, drift_report

NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
]
SENSITIVE = ["sex", "race"]


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def plain_fairlearn(
    outcomes: np.ndarray, decisions: np.ndarray, frame: pandas.DataFrame
) -> list[Any]:
    found = []
    for features in (["sex"], ["race"], ["sex", "race"]):
        groups = frame[features]
        metrics = MetricFrame(
            metrics={
                "count": count,
                "selection_rate": selection_rate,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
                "accuracy": accuracy_score,
            },
            y_true=outcomes,
            y_pred=decisions,
            sensitive_features=groups,
        )
        found.append(
            (
                metrics.by_group,
                demographic_parity_difference(outcomes, decisions, sensitive_features=groups),
                equalized_odds_difference(outcomes, decisions, sensitive_features=groups),
            )
        )
    return found


def same_as_fairlearn(evaluation: ModelEvaluation, expected: list[Any]) -> bool:
    found = disparities(
        evaluation.outcomes, evaluation.decisions, {f: evaluation.current[f] for f in SENSITIVE}
    )
    for disparity, (by_group, parity, odds) in zip(found, expected, strict=True):
        by_group = by_group[by_group["count"] > 0]
        for group in disparity.groups:
            key = group.group if len(group.group) > 1 else group.group[0]
            want = by_group.loc[key]
            got = [
                group.count,
                group.selection_rate,
                group.true_positive_rate,
                group.false_positive_rate,
                group.accuracy,
            ]
            if not np.allclose(got, want.to_numpy(float), rtol=0, atol=1e-9):
                return False
        if abs(disparity.demographic_parity_difference - parity) > 1e-9:
            return False
        if abs(disparity.equalized_odds_difference - odds) > 1e-9:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    adult = read_adult().to_pandas()
    adult[CATEGORICAL] = adult[CATEGORICAL].fillna("unknown")
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), NUMERIC),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    ).fit(adult[NUMERIC + CATEGORICAL], adult["income"])
    current = adult.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
    features = tuple(NUMERIC + CATEGORICAL)
    predictions = model.predict(current[list(features)])
    evaluation = ModelEvaluation(model, features, "income", ">50K", current, adult, predictions)
    rows = []

    fairness = FairnessGate.from_params(
        {"sensitive_features": SENSITIVE, "max_demographic_parity_difference": 0.1}
    )
    gate_seconds, _ = timed(
        lambda: fairness.judge(
            ModelEvaluation(model, features, "income", ">50K", current, adult, predictions)
        )
    )
    plain_seconds, expected = timed(
        lambda: plain_fairlearn(evaluation.outcomes, evaluation.decisions, current)
    )
    correct = same_as_fairlearn(evaluation, expected)
    print(f"fairness: gate {gate_seconds:.2f} s, fairlearn {plain_seconds:.2f} s, equal {correct}")
    rows.append(
        row(
            f"fairness gate, {args.rows:,} rows, sex/race/intersection",
            gate_seconds * 1000,
            "ms",
            plain_seconds * 1000,
            "plain fairlearn MetricFrame + DPD + EOD",
            "10x faster than fairlearn",
            plain_seconds >= 10 * gate_seconds,
        )
    )

    explainability = ExplainabilityGate.from_params(
        {
            "sensitive_features": SENSITIVE,
            "forbidden_features": SENSITIVE,
            "max_forbidden_share": 0.05,
            "counterfactual_features": ["sex"],
            "max_counterfactual_flip_rate": 0.05,
            "sample_size": 1000,
        }
    )
    gate_seconds, _ = timed(lambda: explainability.judge(evaluation))
    sample = current.sample(1000, random_state=0)[list(features)]
    background = adult.sample(100, random_state=0)[list(features)]

    def plain_shap() -> Any:
        import shap

        prepare, classify = model.steps[0][1], model.steps[1][1]
        explainer = shap.LinearExplainer(classify, prepare.transform(background).toarray())
        return explainer.shap_values(prepare.transform(sample).toarray())

    plain_seconds, _ = timed(plain_shap)
    print(f"explainability: gate {gate_seconds:.2f} s, shap {plain_seconds:.2f} s")
    rows.append(
        row(
            f"explainability gate, {args.rows:,} rows (1,000 explained)",
            gate_seconds * 1000,
            "ms",
            plain_seconds * 1000,
            "plain shap.LinearExplainer on the same 1,000 rows",
        )
    )

    columns = list(features)
    drift = DriftGate.from_params({"max_drift_share": 0.3, "min_accuracy": 0.8})
    gate_seconds, _ = timed(lambda: drift.judge(evaluation))
    reference, compared, definition = drift_frames(evaluation, columns)
    plain_seconds, _ = timed(
        lambda: (
            drift_report(columns, 0.3)
            .run(
                current_data=Dataset.from_pandas(compared, data_definition=definition),
                reference_data=Dataset.from_pandas(reference, data_definition=definition),
            )
            .dict()
        )
    )
    print(f"drift: gate {gate_seconds:.2f} s, evidently {plain_seconds:.2f} s")
    rows.append(
        row(
            f"drift gate, {args.rows:,} rows against Adult",
            gate_seconds * 1000,
            "ms",
            plain_seconds * 1000,
            "plain evidently Report, same metrics",
        )
    )
    if args.json:
        emit(rows)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
