"""The ``explainability`` gate: what the model relies on, and whether sensitive attributes decide.

The gate explains a bounded, seeded sample of the evaluation rows with shap and reports the
global importance of every model feature (mean absolute attribution and its share of the total),
the importance within each group of the sensitive features, a few local explanations, and the
share of total attribution that falls on forbidden features (``sex``, ``race``). A counterfactual
test sets each counterfactual feature of a sample to every other value it takes and counts the
decisions that change.

The explainer follows the model: ``TreeExplainer`` (path dependent, exact) for tree ensembles,
``LinearExplainer`` (interventional, against a background sample of the training snapshot) for
linear models, and a permutation explainer on the positive-class probability for any other
model, whose cost is bounded by ``sample_size``, ``background_size`` and ``2 * features + 1``
evaluations per row. A model behind a ``ColumnTransformer`` is explained on the transformed
columns and each column's attribution is summed back onto the input feature it came from (shap
values are additive, so the sum is the attribution of the feature).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas
from pydantic import Field, model_validator

from policies.documents import Document
from policies.gates.base import GateResult, GateStatus
from policies.gates.evaluation import EvaluationError, ModelEvaluation, failed, json_ready

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

FloatArray = npt.NDArray[np.float64]


class ExplainabilityConfig(Document):
    """The gate's thresholds and sample sizes for one risk tier in ``gates.yaml``."""

    sensitive_features: tuple[str, ...] = ()
    """Columns whose groups get their own importance ranking."""
    forbidden_features: tuple[str, ...] = ()
    max_forbidden_share: float | None = Field(default=None, ge=0.0, le=1.0)
    """The largest share of total attribution the forbidden features may carry together."""
    counterfactual_features: tuple[str, ...] = ()
    max_counterfactual_flip_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    """The largest share of decisions that may change when one of these features is changed."""
    sample_size: int = Field(default=1000, ge=10, le=100_000)
    """Rows explained (and rows of the counterfactual test)."""
    background_size: int = Field(default=100, ge=1, le=1000)
    """Training rows the linear and model-agnostic explainers integrate over."""
    agnostic_rows: int = Field(default=50, ge=1, le=10_000)
    """Rows a model-agnostic explainer explains (each costs ``2 * features + 1`` model calls
    over the background)."""
    local_explanations: int = Field(default=5, ge=0, le=100)
    seed: int = 0

    @model_validator(mode="after")
    def _thresholds_have_features(self) -> ExplainabilityConfig:
        if self.max_forbidden_share is not None and not self.forbidden_features:
            raise ValueError("max_forbidden_share needs forbidden_features")
        if self.max_counterfactual_flip_rate is not None and not self.counterfactual_features:
            raise ValueError("max_counterfactual_flip_rate needs counterfactual_features")
        return self


@dataclass(frozen=True, eq=False)
class Attributions:
    """shap values of a sample, one column per model feature."""

    explainer: str
    features: tuple[str, ...]
    values: FloatArray
    base_value: float
    rows: pandas.DataFrame

    def importance(self, mask: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        """Mean absolute attribution of each feature (over the rows ``mask`` selects)."""
        values = self.values if mask is None else self.values[mask]
        return np.asarray(np.abs(values).mean(axis=0), dtype=np.float64)


def explain(
    evaluation: ModelEvaluation,
    sample: pandas.DataFrame,
    background: pandas.DataFrame,
    agnostic_rows: int,
) -> Attributions:
    """shap values of ``sample`` from the explainer that suits the model.

    A model-agnostic explainer explains only the first ``agnostic_rows`` rows of ``sample``.

    Raises:
        EvaluationError: no explainer can handle the model.
    """
    from sklearn.compose import ColumnTransformer  # shap and scikit-learn load lazily
    from sklearn.pipeline import Pipeline

    features = list(evaluation.features)
    model = evaluation.model
    if isinstance(model, Pipeline) and len(model.steps) == 2:
        preprocess, estimator = model.steps[0][1], model.steps[1][1]
        if isinstance(preprocess, ColumnTransformer):
            sources = _output_sources(preprocess)
            if sources is not None:
                found = _fast(
                    estimator,
                    _dense(preprocess.transform(sample[features])),
                    _dense(preprocess.transform(background[features])),
                    evaluation.positive_label,
                )
                if found is not None:
                    kind, values, base = found
                    grouped = values @ _membership(sources, len(features))
                    return Attributions(kind, tuple(features), grouped, base, sample)
    elif all(pandas.api.types.is_numeric_dtype(sample[f]) for f in features):
        found = _fast(
            model,
            sample[features].to_numpy(np.float64),
            background[features].to_numpy(np.float64),
            evaluation.positive_label,
        )
        if found is not None:
            kind, values, base = found
            return Attributions(kind, tuple(features), values, base, sample)
    return _permutation(evaluation, sample, background, agnostic_rows)


class ExplainabilityGate:
    """Judges reliance on forbidden features and counterfactual stability of decisions."""

    name = "explainability"

    def __init__(self, config: ExplainabilityConfig) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExplainabilityGate:
        """The gate configured by its ``gates.yaml`` parameters (validated)."""
        return cls(ExplainabilityConfig.model_validate(dict(params)))

    def judge(self, evaluation: ModelEvaluation) -> GateResult:
        config = self.config
        try:
            sample, background = self._samples(evaluation)
            attributions = explain(evaluation, sample, background, config.agnostic_rows)
            counterfactuals = [
                _counterfactual(evaluation, sample, feature)
                for feature in config.counterfactual_features
            ]
        except EvaluationError as exc:
            return failed(self.name, str(exc))
        importance = attributions.importance()
        total = float(importance.sum())
        shares = importance / total if total > 0 else np.zeros_like(importance)
        forbidden = [f for f in config.forbidden_features if f in attributions.features]
        forbidden_share = float(sum(shares[attributions.features.index(f)] for f in forbidden))
        metrics = {"forbidden_share": forbidden_share}
        reasons: list[str] = []
        if config.max_forbidden_share is not None and forbidden_share > config.max_forbidden_share:
            reasons.append(
                f"{forbidden_share:.4f} of total attribution falls on forbidden features "
                f"{', '.join(config.forbidden_features)}; at most {config.max_forbidden_share}"
            )
        for found in counterfactuals:
            metrics[f"counterfactual_flip_rate[{found['feature']}]"] = found["flip_rate"]
            limit = config.max_counterfactual_flip_rate
            if limit is not None and found["flip_rate"] > limit:
                reasons.append(
                    f"changing {found['feature']} changes {found['flip_rate']:.4f} of decisions "
                    f"({found['changed']} of {found['trials']}); at most {limit}"
                )
        passed = not reasons
        if passed:
            reasons.append("reliance on forbidden features and counterfactual flips are in bounds")
        evidence = {
            "explainer": attributions.explainer,
            "rows_explained": len(attributions.rows),
            "counterfactual_rows": len(sample),
            "background_rows": len(background),
            "base_value": attributions.base_value,
            "global_importance": [
                {"feature": f, "mean_abs_attribution": float(v), "share": float(s)}
                for f, v, s in sorted(
                    zip(attributions.features, importance, shares, strict=True),
                    key=lambda item: (-item[1], item[0]),
                )
            ],
            "importance_by_group": self._by_group(evaluation, attributions),
            "forbidden": {"features": list(config.forbidden_features), "share": forbidden_share},
            "local": self._local(attributions),
            "counterfactual": counterfactuals,
            "config": config.model_dump(mode="json"),
        }
        return GateResult(
            self.name,
            GateStatus.PASS if passed else GateStatus.FAIL,
            metrics,
            json_ready(evidence),
            tuple(reasons),
        )

    def _samples(self, evaluation: ModelEvaluation) -> tuple[pandas.DataFrame, pandas.DataFrame]:
        config = self.config
        current = evaluation.current
        needed = [*evaluation.features, *config.sensitive_features, *config.counterfactual_features]
        evaluation.require_columns(current, list(dict.fromkeys(needed)), "evaluation")
        if len(current) == 0:
            raise EvaluationError("the evaluation data has no rows")
        reference = evaluation.reference if evaluation.reference is not None else current
        evaluation.require_columns(reference, evaluation.features, "reference")
        features = list(evaluation.features)
        sample = current.sample(min(config.sample_size, len(current)), random_state=config.seed)
        background = reference.sample(
            min(config.background_size, len(reference)), random_state=config.seed
        )
        if sample[features].isna().any().any() or background[features].isna().any().any():
            raise EvaluationError("the model features have missing values; explanations need all")
        return sample, background

    def _by_group(
        self, evaluation: ModelEvaluation, attributions: Attributions
    ) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for feature in self.config.sensitive_features:
            column = attributions.rows[feature]
            entries = []
            for value in sorted(column.unique(), key=str):
                mask = (column == value).to_numpy()
                importance = attributions.importance(mask)
                entries.append(
                    {
                        "group": value,
                        "rows": int(mask.sum()),
                        "importance": dict(zip(attributions.features, importance, strict=True)),
                    }
                )
            result[feature] = entries
        return result

    def _local(self, attributions: Attributions) -> list[dict[str, Any]]:
        rows = attributions.rows
        return [
            {
                "row": rows.index[i],
                "base_value": attributions.base_value,
                "values": {f: rows.iloc[i][f] for f in attributions.features},
                "attributions": dict(
                    zip(attributions.features, attributions.values[i], strict=True)
                ),
            }
            for i in range(min(self.config.local_explanations, len(rows)))
        ]


def _fast(
    estimator: Any, sample: FloatArray, background: FloatArray, positive_label: Any
) -> tuple[str, FloatArray, float] | None:
    """Attributions from TreeExplainer or LinearExplainer, or None if neither suits."""
    import shap

    classes = list(getattr(estimator, "classes_", [0, 1]))
    if positive_label not in classes or len(classes) != 2:
        return None
    positive = classes.index(positive_label)
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        explainer: Any = shap.LinearExplainer(estimator, background)
        kind = "linear"
    else:
        try:
            explainer = shap.TreeExplainer(estimator)
        except Exception:  # shap's way of saying it knows no such tree model
            return None
        kind = "tree"
    values = np.asarray(explainer.shap_values(sample), dtype=np.float64)
    base = np.ravel(np.asarray(explainer.expected_value, dtype=np.float64))
    if values.ndim == 3:  # one slice of attributions per class
        return kind, values[:, :, positive], float(base[positive])
    # A single margin explains the second class; the first class is its negation.
    sign = 1.0 if positive == 1 else -1.0
    return kind, sign * values, sign * float(base[0])


def _permutation(
    evaluation: ModelEvaluation,
    sample: pandas.DataFrame,
    background: pandas.DataFrame,
    rows: int,
) -> Attributions:
    """Model-agnostic attributions of the positive-class probability, with bounded cost."""
    import shap

    features = list(evaluation.features)
    model = evaluation.model
    predict_proba = getattr(model, "predict_proba", None)
    classes = list(getattr(model, "classes_", []))
    if not callable(predict_proba) or evaluation.positive_label not in classes:
        raise EvaluationError(
            f"no explainer handles a {type(model).__name__}: it is neither a tree nor a linear "
            "model and has no predict_proba over classes that include the positive label"
        )
    positive = classes.index(evaluation.positive_label)
    # shap's tabular masker is numeric: categorical features are explained as category codes.
    both = pandas.concat([background[features], sample[features]])
    categories = {
        f: pandas.Categorical(both[f]).categories
        for f in features
        if not pandas.api.types.is_numeric_dtype(both[f])
    }

    def encode(frame: pandas.DataFrame) -> FloatArray:
        coded = frame[features].copy()
        for feature, levels in categories.items():
            coded[feature] = pandas.Categorical(coded[feature], categories=levels).codes
        return np.asarray(coded.to_numpy(np.float64), np.float64)

    def probability(rows: FloatArray) -> FloatArray:
        frame = pandas.DataFrame(rows, columns=features)
        for feature, levels in categories.items():
            frame[feature] = levels[frame[feature].to_numpy(np.intp)]
        frame = frame.astype(sample[features].dtypes.to_dict())
        return np.asarray(predict_proba(frame), dtype=np.float64)[:, positive]

    try:
        masker = shap.maskers.Independent(encode(background), len(background))
        explainer = shap.explainers.Permutation(probability, masker, seed=0)
        explained = explainer(
            encode(sample.iloc[:rows]), max_evals=2 * len(features) + 1, silent=True
        )
    except Exception as exc:
        raise EvaluationError(
            f"the model-agnostic explainer failed on a {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    values = np.asarray(explained.values, dtype=np.float64)
    base = float(np.ravel(explained.base_values)[0])
    return Attributions("permutation", tuple(features), values, base, sample.iloc[:rows])


def _counterfactual(
    evaluation: ModelEvaluation, sample: pandas.DataFrame, feature: str
) -> dict[str, Any]:
    """How many decisions change when ``feature`` is set to each other value it takes."""
    original = np.asarray(evaluation.predict(sample))
    values = sorted(evaluation.current[feature].dropna().unique(), key=str)
    changed = trials = 0
    by_value = []
    for value in values:
        others = (sample[feature] != value).to_numpy()
        if not others.any():
            continue
        flipped = sample[others].assign(**{feature: value})
        moved = int((np.asarray(evaluation.predict(flipped)) != original[others]).sum())
        by_value.append({"set_to": value, "rows": int(others.sum()), "changed": moved})
        changed += moved
        trials += int(others.sum())
    return {
        "feature": feature,
        "trials": trials,
        "changed": changed,
        "flip_rate": changed / trials if trials else 0.0,
        "by_value": by_value,
    }


def _dense(matrix: Any) -> FloatArray:
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    return np.asarray(dense, dtype=np.float64)


def _membership(sources: Sequence[int], features: int) -> FloatArray:
    """A (transformed columns x input features) 0/1 matrix: which feature each column is from."""
    matrix = np.zeros((len(sources), features))
    matrix[np.arange(len(sources)), sources] = 1.0
    return matrix


def _output_sources(transformer: ColumnTransformer) -> list[int] | None:
    """The input feature index of each transformed column, or None if it cannot be told."""
    from sklearn.preprocessing import OneHotEncoder

    names = list(transformer.feature_names_in_)
    sources: list[int] = []
    for name, step, columns in transformer.transformers_:
        if step == "drop":
            continue
        chosen = [
            names[c] if isinstance(c, int | np.integer) else c for c in np.atleast_1d(columns)
        ]
        span = transformer.output_indices_[name]
        width = span.stop - span.start
        if width == len(chosen):
            widths = [1] * len(chosen)
        elif isinstance(step, OneHotEncoder) and not _has_infrequent(step):
            drops = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(chosen)
            widths = [
                len(categories) - (drop is not None)
                for categories, drop in zip(step.categories_, drops, strict=True)
            ]
        else:
            return None
        if sum(widths) != width:
            return None
        for column, count in zip(chosen, widths, strict=True):
            sources.extend([names.index(column)] * count)
    return sources


def _has_infrequent(encoder: OneHotEncoder) -> bool:
    infrequent = getattr(encoder, "infrequent_categories_", None)
    return infrequent is not None and any(c is not None for c in infrequent)
