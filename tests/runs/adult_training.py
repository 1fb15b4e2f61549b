"""A ``train`` executor for tests: fits a scikit-learn Pipeline on an ingested Adult snapshot.

It records its version the way the governed ``train`` run does: the fitted Pipeline is logged
to the real MLflow store through ``connectors.registry``, linked in the inventory with
``record_model_version``, and its training facts are written as ``evidence["training"]``.

Run parameters: ``{"features": [...]}`` (default: every Adult feature, sex and race included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sqlalchemy import select

from connectors.registry import ModelFlavor, Provenance
from control_plane.api.deps import Services
from control_plane.connectors import model_registry
from control_plane.inventory.versions import record_model_version
from control_plane.runs import ExecutionContext, RunKind
from control_plane.settings import Settings
from control_plane.store.models import Dataset
from tests.gates.conftest import CATEGORICAL, FEATURES, NUMERIC, POSITIVE

LABEL = "income"


def adult_pipeline(features: tuple[str, ...]) -> Pipeline:
    """Logistic regression over ``features``: scaled numbers, one-hot categories."""
    categorical = [f for f in features if f in CATEGORICAL]
    return Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), [f for f in features if f in NUMERIC]),
                        (
                            "categorical",
                            make_pipeline(
                                SimpleImputer(strategy="constant", fill_value="unknown"),
                                OneHotEncoder(handle_unknown="ignore"),
                            ),
                            categorical,
                        ),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )


class AdultTrainer:
    """Carries out ``train`` runs on ``model:NAME`` from one ingested ``dataset:NAME`` input."""

    kind = RunKind.TRAIN

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.services: Services | None = None

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        services = self.services
        assert services is not None
        features = tuple(context.params.get("features", FEATURES))
        name = context.target.removeprefix("model:")
        with services.db.session() as session:
            dataset = session.scalars(
                select(Dataset).where(Dataset.name == context.inputs[0].removeprefix("dataset:"))
            ).one()
        assert dataset.snapshot_id is not None
        frame = services.lake.read(dataset.name, dataset.snapshot_id).to_pandas()
        inputs, labels = frame[list(features)], frame[LABEL]
        model = adult_pipeline(features).fit(inputs, labels)
        privacy = {"mode": "plain", "epsilon": None, "delta": None}
        registered = model_registry(self._settings).register(
            name,
            model,
            ModelFlavor.SKLEARN,
            Provenance(context.run_id, dataset.id, str(dataset.snapshot_id), "plain"),
        )
        with services.db.session(write=True) as session:
            version = record_model_version(
                session,
                services.audit,
                name,
                str(registered.uri),
                registered.artifact_digest,
                context.run_id,
                context.submitted_by,
            )
            version.evidence = {
                **version.evidence,
                "training": {
                    "run_id": context.run_id,
                    "dataset_ids": [dataset.id],
                    "snapshot_ids": {dataset.id: dataset.snapshot_id},
                    "label": LABEL,
                    "positive_label": POSITIVE,
                    "features": list(features),
                    "privacy": {**privacy, "accountant": None, "grad_sample_mode": None},
                    "metrics": {"train_accuracy": float(model.score(inputs, labels))},
                },
            }
            return {"model_version": version.version}
