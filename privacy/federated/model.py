"""The federated model: a logistic regression on standardized numbers and one-hot categories.

Sites never share rows. They share, once, :class:`SiteStatistics` (row count, per-number sums
and sums of squares, the categories held by at least ``min_category_count`` rows), which the
server merges into one :class:`FeatureSpec`; then, each round, model weights. The trained
weights are packaged as a scikit-learn ``Pipeline`` that predicts from the raw feature frame,
like every other registered model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

Weights = list[npt.NDArray[np.float64]]


@dataclass(frozen=True)
class SiteStatistics:
    """What one site discloses about its data before training (no row leaves the site)."""

    rows: int
    sums: dict[str, float]
    squares: dict[str, float]
    categories: dict[str, list[str]]

    @classmethod
    def of(
        cls,
        frame: pandas.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        min_category_count: int,
    ) -> SiteStatistics:
        """The statistics of ``frame``; rare categories are withheld (they could name a row)."""
        values = frame[list(numeric)].astype("float64")
        categories = {}
        for column in categorical:
            counts = frame[column].dropna().astype(str).value_counts()
            categories[column] = sorted(counts[counts >= min_category_count].index)
        return cls(
            rows=len(frame),
            sums={c: float(values[c].sum()) for c in numeric},
            squares={c: float((values[c] ** 2).sum()) for c in numeric},
            categories=categories,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "rows": self.rows,
                "sums": self.sums,
                "squares": self.squares,
                "categories": self.categories,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SiteStatistics:
        data = json.loads(text)
        return cls(int(data["rows"]), data["sums"], data["squares"], data["categories"])


@dataclass(frozen=True)
class FeatureSpec:
    """How raw columns become model inputs, agreed by all sites."""

    label: str
    positive_label: str
    means: dict[str, float]
    scales: dict[str, float]
    categories: dict[str, list[str]]

    @classmethod
    def merge(
        cls, label: str, positive_label: str, statistics: Sequence[SiteStatistics]
    ) -> FeatureSpec:
        """The pooled means and standard deviations and the union of categories."""
        if not statistics:
            raise ValueError("no site statistics to merge")
        rows = sum(s.rows for s in statistics)
        numeric = list(statistics[0].sums)
        means, scales = {}, {}
        for column in numeric:
            mean = sum(s.sums[column] for s in statistics) / rows
            variance = sum(s.squares[column] for s in statistics) / rows - mean**2
            means[column] = mean
            scales[column] = math.sqrt(variance) if variance > 1e-12 else 1.0
        categories = {
            column: sorted({c for s in statistics for c in s.categories[column]})
            for column in statistics[0].categories
        }
        return cls(label, positive_label, means, scales, categories)

    @property
    def numeric(self) -> list[str]:
        return list(self.means)

    @property
    def categorical(self) -> list[str]:
        return list(self.categories)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def width(self) -> int:
        """The number of model inputs (weights without the intercept)."""
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    def encode(self, frame: pandas.DataFrame) -> npt.NDArray[np.float64]:
        """Model inputs of ``frame``: an unknown or missing category is all zeros."""
        columns = [
            (frame[c].astype("float64").fillna(self.means[c]).to_numpy() - self.means[c])
            / self.scales[c]
            for c in self.numeric
        ]
        for column, values in self.categories.items():
            raw = frame[column].astype(str).to_numpy()
            columns.extend((raw == value).astype("float64") for value in values)
        return np.column_stack(columns) if columns else np.zeros((len(frame), 0))

    def labels(self, frame: pandas.DataFrame) -> npt.NDArray[np.float64]:
        positive = frame[self.label].astype(str) == self.positive_label
        return np.asarray(positive, dtype=np.float64)

    def to_json(self) -> str:
        return json.dumps(
            {
                "label": self.label,
                "positive_label": self.positive_label,
                "means": self.means,
                "scales": self.scales,
                "categories": self.categories,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        return cls(
            data["label"], data["positive_label"], data["means"], data["scales"], data["categories"]
        )


def initial_weights(spec: FeatureSpec) -> Weights:
    """Zero coefficients and intercept: every site starts from the same model."""
    return [np.zeros(spec.width), np.zeros(1)]


def train_locally(
    weights: Weights,
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.float64],
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> Weights:
    """``epochs`` of mini-batch gradient descent on the logistic loss from ``weights``."""
    coef, intercept = weights[0].copy(), weights[1].copy()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            error = _sigmoid(features[batch] @ coef + intercept[0]) - labels[batch]
            coef -= learning_rate * (features[batch].T @ error) / len(batch)
            intercept -= learning_rate * error.mean()
    return [coef, intercept]


def evaluate(
    weights: Weights, features: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """The mean logistic loss and the accuracy of ``weights`` on ``features``."""
    probability = np.clip(_sigmoid(features @ weights[0] + weights[1][0]), 1e-12, 1 - 1e-12)
    loss = -np.mean(labels * np.log(probability) + (1 - labels) * np.log(1 - probability))
    accuracy = np.mean((probability >= 0.5) == (labels == 1))
    return float(loss), float(accuracy)


def to_pipeline(spec: FeatureSpec, weights: Weights) -> Pipeline:
    """A fitted scikit-learn pipeline that predicts from the raw feature frame with ``weights``.

    Its predictions are the labels ``1`` (``spec.positive_label``) and ``0``.
    """
    # Imported here: sites train without scikit-learn, and every site process starts faster.
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encoder = OneHotEncoder(
        categories=[np.array(spec.categories[c], dtype=object) for c in spec.categorical],
        handle_unknown="ignore",
        sparse_output=False,
    )
    preprocess = ColumnTransformer(
        [("numeric", StandardScaler(), spec.numeric), ("categories", encoder, spec.categorical)],
        sparse_threshold=0.0,
    )
    # Fitting on one example row sets the fitted structure; the scaler then takes the pooled
    # statistics of all sites.
    preprocess.fit(_example_frame(spec))
    scaler = preprocess.named_transformers_["numeric"]
    scaler.mean_ = np.array([spec.means[c] for c in spec.numeric])
    scaler.scale_ = np.array([spec.scales[c] for c in spec.numeric])
    scaler.var_ = scaler.scale_**2
    classifier = LogisticRegression()
    classifier.classes_ = np.array([0, 1])
    classifier.coef_ = weights[0].reshape(1, -1).copy()
    classifier.intercept_ = weights[1].copy()
    classifier.n_features_in_ = spec.width
    classifier.n_iter_ = np.array([0])
    return Pipeline([("features", preprocess), ("classifier", classifier)])


def _example_frame(spec: FeatureSpec) -> pandas.DataFrame:
    row: dict[str, object] = {c: [spec.means[c]] for c in spec.numeric}
    row.update({c: [v[0] if v else "?"] for c, v in spec.categories.items()})
    return pandas.DataFrame(row)


def _sigmoid(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(values, -30, 30))), dtype=np.float64)
