"""govplane's Flower ClientApp: a site trains on its own lake snapshot; only updates leave.

Each SuperNode is started with its site's node config (``site``, ``lake-dir``,
``lake-namespace``). The ClientApp reads the run's :class:`FederatedPlan`, finds its own site
in it and reads that snapshot from the site's lake. A site that is not in the plan answers
discovery with its name only and is never sampled. SecAgg+ masking and DP clipping are Flower's
own mods, applied when the plan asks for them; both are the legacy (``flwr.client.mod``) mods,
which read the fit instructions among SecAgg+'s own records.

Under homomorphic aggregation (the plan's ``he``), :func:`ckks_mod` is outermost: it decrypts
the encrypted global model the server sends, lets the site train (and clip) in the clear, and
encrypts the site's weighted update under the sites' CKKS key, whose secret the site reads from
its own key file. It also gives the server the public context at discovery and, asked at the
end, decrypts the final model.
"""

from __future__ import annotations

import json
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
from flwr.common import (
    Code,
    GetPropertiesRes,
    NDArrays,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.constant import MessageTypeLegacy
from flwr.compat.common import recorddict_compat as compat

from connectors.lake import IcebergLake
from privacy.federated.model import (
    FeatureSpec,
    SiteStatistics,
    evaluate,
    train_locally,
)
from privacy.federated.plan import (
    HE_KEY,
    HE_PUBLIC_CONTEXT,
    LAKE_DIR,
    LAKE_NAMESPACE,
    RUN_CONFIG_KEY,
    SITE,
    FederatedPlan,
)
from privacy.he import KeyHolder

SPEC = "feature-spec"
# Homomorphic aggregation: the tensor type of encrypted parameters (one CKKS vector holding the
# coefficients then the intercept), the discovery property carrying the public context, and
# the property names of the final decryption.
CKKS = "ckks"
PUBLIC_CONTEXT = "ckks-public-context"
DECRYPT = "ckks-decrypt"
WEIGHTS = "weights"
_PROPERTIES = MessageTypeLegacy.GET_PROPERTIES


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


@cache
def _key_holder(path: str) -> KeyHolder:
    return KeyHolder.load(Path(path).read_bytes())


@cache
def _public_context(path: str) -> bytes:
    return Path(path).read_bytes()


def ckks_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Homomorphic aggregation at the site, when the plan asks for it (see the module)."""
    plan = FederatedPlan.model_validate_json(str(context.run_config[RUN_CONFIG_KEY]))
    kind = message.metadata.message_type
    if not plan.he or kind not in (MessageType.TRAIN, MessageType.EVALUATE, _PROPERTIES):
        return call_next(message, context)
    keys = _key_holder(str(context.node_config[HE_KEY]))
    if kind == _PROPERTIES:
        asked = compat.recorddict_to_getpropertiesins(message.content).config
        if DECRYPT in asked:
            weights = _decrypted(keys, asked[DECRYPT], asked[SPEC])
            answer = GetPropertiesRes(
                Status(Code.OK, "decrypted"), {WEIGHTS: json.dumps([w.tolist() for w in weights])}
            )
            return Message(compat.getpropertiesres_to_recorddict(answer), reply_to=message)
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        found = compat.recorddict_to_getpropertiesres(reply.content)
        found.properties[PUBLIC_CONTEXT] = _public_context(
            str(context.node_config[HE_PUBLIC_CONTEXT])
        )
        reply.content = compat.getpropertiesres_to_recorddict(found)
        return reply
    if kind == MessageType.EVALUATE:
        evaluate_ins = compat.recorddict_to_evaluateins(message.content, keep_input=True)
        evaluate_ins.parameters = _in_clear(keys, evaluate_ins.parameters, evaluate_ins.config)
        message.content = compat.evaluateins_to_recorddict(evaluate_ins, keep_input=True)
        return call_next(message, context)
    fit_ins = compat.recorddict_to_fitins(message.content, keep_input=True)
    fit_ins.parameters = _in_clear(keys, fit_ins.parameters, fit_ins.config)
    message.content = compat.fitins_to_recorddict(fit_ins, keep_input=True)
    reply = call_next(message, context)
    if reply.has_error():
        return reply
    fit_res = compat.recorddict_to_fitres(reply.content, keep_input=True)
    flat = np.concatenate([w.ravel() for w in parameters_to_ndarrays(fit_res.parameters)])
    # Weighted here, so that the server's sum of ciphertexts is the weighted sum of updates.
    fit_res.parameters = Parameters([keys.encrypt_vector(flat * fit_res.num_examples)], CKKS)
    reply.content = compat.fitres_to_recorddict(fit_res, keep_input=True)
    return reply


def _in_clear(keys: KeyHolder, parameters: Parameters, config: dict[str, Scalar]) -> Parameters:
    """The parameters decrypted, if the server sent them encrypted (the initial ones are not)."""
    if parameters.tensor_type != CKKS:
        return parameters
    [ciphertext] = parameters.tensors
    return ndarrays_to_parameters(_decrypted(keys, ciphertext, config[SPEC]))


def _decrypted(keys: KeyHolder, ciphertext: Scalar, spec: Scalar) -> list[npt.NDArray[np.float64]]:
    """The model's coefficients and intercept from one encrypted vector."""
    width = FeatureSpec.from_json(str(spec)).width
    if not isinstance(ciphertext, bytes):
        raise TypeError("the encrypted model must be bytes")
    flat = keys.decrypt_vector(ciphertext, width + 1)
    return [flat[:width], flat[width:]]


app = ClientApp(client_fn=_client, mods=[ckks_mod, _privacy_mods])
