"""govplane's Flower ClientApp: a site trains on its own lake snapshot; only updates leave.

Each SuperNode is started with its site's node config (``site``, ``lake-dir``,
``lake-namespace``). The ClientApp reads the run's :class:`FederatedPlan`, finds its own site
in it and reads that snapshot from the site's lake. A site that is not in the plan answers
discovery with its name only and is never sampled. SecAgg+ masking and DP clipping are Flower's
own mods, applied when the plan asks for them; both are the legacy (``flwr.client.mod``) mods,
which read the fit instructions among SecAgg+'s own records.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas
from flwr.app import Context, Message, MessageType
from flwr.client import Client, NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import NDArrays, Scalar

from connectors.lake import IcebergLake
from privacy.federated.model import (
    FeatureSpec,
    SiteStatistics,
    evaluate,
    train_locally,
)
from privacy.federated.plan import LAKE_DIR, LAKE_NAMESPACE, RUN_CONFIG_KEY, SITE, FederatedPlan

SPEC = "feature-spec"


class SiteClient(NumPyClient):
    """One site's side of a round: discovery statistics, local training, local evaluation."""

    def __init__(self, site: str, plan: FederatedPlan, frame: pandas.DataFrame | None) -> None:
        self._site = site
        self._plan = plan
        self._frame = frame

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        if self._frame is None:
            return {SITE: self._site}
        statistics = SiteStatistics.of(
            self._frame, self._plan.numeric, self._plan.categorical, self._plan.min_category_count
        )
        return {SITE: self._site, "statistics": statistics.to_json()}

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        _, features, labels = self._data(config)
        weights = train_locally(
            [np.asarray(p, dtype=np.float64) for p in parameters],
            features,
            labels,
            self._plan.local_epochs,
            self._plan.learning_rate,
            self._plan.batch_size,
            self._plan.seed + int(config.get("server_round", 0)),
        )
        loss, accuracy = evaluate(weights, features, labels)
        metrics: dict[str, Scalar] = {
            SITE: self._site,
            "examples": len(labels),
            "loss": loss,
            "accuracy": accuracy,
        }
        return list(weights), self._plan.aggregation_weight(len(labels)), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        _, features, labels = self._data(config)
        weights = [np.asarray(p, dtype=np.float64) for p in parameters]
        loss, accuracy = evaluate(weights, features, labels)
        return loss, len(labels), {SITE: self._site, "accuracy": accuracy}

    def _data(
        self, config: dict[str, Scalar]
    ) -> tuple[FeatureSpec, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        if self._frame is None:
            raise RuntimeError(f"site {self._site} holds no data for this run")
        spec = FeatureSpec.from_json(str(config[SPEC]))
        return spec, spec.encode(self._frame), spec.labels(self._frame)


@cache
def _read_snapshot(lake_dir: str, namespace: str, table: str, snapshot_id: int) -> pandas.DataFrame:
    lake = IcebergLake.embedded(Path(lake_dir), namespace)
    return lake.read(table, snapshot_id).to_pandas()


def _client(context: Context) -> Client:
    site = str(context.node_config[SITE])
    plan = FederatedPlan.model_validate_json(str(context.run_config[RUN_CONFIG_KEY]))
    data = plan.sites.get(site)
    frame = None
    if data is not None:
        frame = _read_snapshot(
            str(context.node_config[LAKE_DIR]),
            str(context.node_config[LAKE_NAMESPACE]),
            data.table,
            data.snapshot_id,
        )
    return SiteClient(site, plan, frame).to_client()


def _privacy_mods(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """SecAgg+ masking around DP clipping around training, as far as the plan asks."""
    if message.metadata.message_type != MessageType.TRAIN:
        return call_next(message, context)
    plan = FederatedPlan.model_validate_json(str(context.run_config[RUN_CONFIG_KEY]))
    inner = call_next
    if plan.dp is not None:
        inner = _around(fixedclipping_mod, inner)
    if plan.secagg:
        inner = _around(secaggplus_mod, inner)
    return inner(message, context)


def _around(
    mod: Callable[[Message, Context, ClientAppCallable], Message], call_next: ClientAppCallable
) -> ClientAppCallable:
    def wrapped(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)

    return wrapped


app = ClientApp(client_fn=_client, mods=[_privacy_mods])
