"""govplane's Flower ServerApp: discover the plan's sites, agree features, run governed rounds.

1. Discovery: every connected SuperNode is asked who it is; the nodes of the plan's sites send
   their :class:`SiteStatistics` (never rows), which become one :class:`FeatureSpec`.
2. Rounds: Flower's FedAvg over the participating nodes only, wrapped in Flower's client-side
   fixed-clipping DP when the plan asks for DP, with the SecAgg+ fit workflow when it asks for
   secure aggregation, and wrapped outermost in :class:`GovernedStrategy`, which records each
   round and applies the run's quorum policy. Under homomorphic aggregation (the plan's ``he``)
   :class:`EncryptedFedAvg` takes FedAvg's and the DP wrapper's place: it sums the sites'
   encrypted updates with the public context the sites gave at discovery, and a site decrypts
   the final model.
3. The outcome (feature spec, final weights, rounds, or the error) is written as JSON to the
   plan's ``output`` path, which the control plane reads back.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetPropertiesIns,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.constant import MessageTypeLegacy
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from flwr.supercore.run import Run

from privacy.federated.client_app import CKKS, DECRYPT, PUBLIC_CONTEXT, SPEC, WEIGHTS
from privacy.federated.model import FeatureSpec, SiteStatistics, initial_weights
from privacy.federated.plan import RUN_CONFIG_KEY, SITE, DifferentialPrivacy, FederatedPlan
from privacy.he import EncryptedAggregator


class QuorumLostError(RuntimeError):
    """Too few sites answered a round for the run's policy to go on."""


class ParticipantManager(SimpleClientManager):
    """A client manager that offers only the connected nodes of participating sites."""

    def __init__(self, participants: dict[int, str]) -> None:
        super().__init__()
        self._criterion = _Participating(participants)

    def num_available(self) -> int:
        return len([p for p in self.all().values() if self._criterion.select(p)])

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        return super().sample(num_clients, min_num_clients, criterion or self._criterion)


class _Participating(Criterion):
    def __init__(self, participants: dict[int, str]) -> None:
        self._participants = participants

    def select(self, client: ClientProxy) -> bool:
        return int(client.node_id) in self._participants


class GovernedStrategy(Strategy):
    """Wraps a strategy: records every round and applies the run's site-loss policy.

    Before a round and again when its updates are in, the sites that answered are judged: a
    lost site fails a run whose policy is ``fail``; fewer than ``min_sites`` sites fails any run.
    A round that never reaches aggregation (SecAgg+ could not unmask it) stays recorded with
    ``aggregated`` false and no participants.
    """

    def __init__(
        self,
        strategy: Strategy,
        plan: FederatedPlan,
        sites: dict[int, str],
        rounds: list[dict[str, Any]],
    ) -> None:
        self._strategy = strategy
        self._plan = plan
        self._sites = sites
        self.rounds = rounds
        self._started = time.monotonic()

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self._strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._started = time.monotonic()
        record: dict[str, Any] = {
            "round": server_round,
            "participants": [],
            "lost": [],
            "aggregated": False,
            "secagg": self._plan.secagg,
            "he": self._plan.he,
            "dp": None if self._plan.dp is None else self._plan.dp.model_dump(),
        }
        self.rounds.append(record)
        self._judge(record, self._available(client_manager))
        return self._strategy.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        participants = sorted(self._sites[int(proxy.node_id)] for proxy, _ in results)
        record = self.rounds[-1]
        record.update(
            participants=participants,
            failures=len(failures),
            site_metrics={
                self._sites[int(proxy.node_id)]: {
                    "examples": res.metrics.get("examples"),
                    "loss": res.metrics.get("loss"),
                    "accuracy": res.metrics.get("accuracy"),
                }
                for proxy, res in results
            },
        )
        self._judge(record, participants)
        # The policy has ruled on the lost sites: what is aggregated is what the quorum sent.
        aggregated, metrics = self._strategy.aggregate_fit(server_round, results, [])
        record["aggregated"] = aggregated is not None
        return aggregated, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        # Too few sites left to evaluate: the next round's judgement ends the run.
        if len(self._available(client_manager)) < self._plan.min_sites:
            return []
        return self._strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        examples = sum(res.num_examples for _, res in results)
        record = self.rounds[-1] if self.rounds and self.rounds[-1]["round"] == server_round else {}
        if examples:
            record["evaluation"] = {
                "examples": examples,
                "loss": sum(res.loss * res.num_examples for _, res in results) / examples,
                "accuracy": sum(
                    float(res.metrics["accuracy"]) * res.num_examples for _, res in results
                )
                / examples,
            }
        record["seconds"] = time.monotonic() - self._started
        return self._strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self._strategy.evaluate(server_round, parameters)

    def _available(self, client_manager: ClientManager) -> list[str]:
        """The participating sites whose SuperNode is connected."""
        nodes = (int(node) for node in client_manager.all())
        return sorted(self._sites[node] for node in nodes if node in self._sites)

    def _judge(self, record: dict[str, Any], answering: list[str]) -> None:
        """Record the round's lost sites; raise unless the run's policy allows going on."""
        lost = record["lost"] = sorted(set(self._sites.values()) - set(answering))
        if lost and self._plan.on_site_loss == "fail":
            raise QuorumLostError(
                f"round {record['round']}: sites {', '.join(lost)} did not answer and the run's "
                "policy is to fail on a lost site"
            )
        if len(answering) < self._plan.min_sites:
            raise QuorumLostError(
                f"round {record['round']}: {len(answering)} sites answered, fewer than the "
                f"quorum of {self._plan.min_sites} (lost: {', '.join(lost)})"
            )


class RoundTimedGrid(Grid):
    """A grid whose ``send_and_receive`` waits at most ``timeout`` seconds unless told otherwise.

    Flower's default fit and evaluate workflows ignore ``ServerConfig.round_timeout`` and wait
    for every reply: a site that is alive but does not answer would hold the run until it did.
    Bounded, the round goes on with the sites that answered in time, and the late site is lost.
    """

    def __init__(self, grid: Grid, timeout: float) -> None:
        self._grid = grid
        self._timeout = timeout

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._grid.send_and_receive(
            messages, timeout=self._timeout if timeout is None else timeout
        )


class QuorumSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ fit workflow, surviving a site lost before it shared its key shares.

    Flower counts such a site among the round's dropouts and asks the others for shares of its
    key, which none of them holds, so the round cannot be unmasked. No update was masked
    against it either: it is taken out of the round instead, and the others go on.
    """

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        if not super().share_keys_stage(grid, context, state):
            return False
        state.sampled_node_ids = set(state.active_node_ids)
        state.nid_to_neighbours = {
            node: neighbours & state.sampled_node_ids
            for node, neighbours in state.nid_to_neighbours.items()
            if node in state.sampled_node_ids
        }
        return True


class QuorumDifferentialPrivacy(DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed-clipping DP, the noise calibrated to the sites that sent the
    round's updates: a lost site must not thin the noise that protects the others."""

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.num_sampled_clients = len(results)
        return super().aggregate_fit(server_round, results, failures)


class EncryptedFedAvg(FedAvg):
    """FedAvg on updates encrypted under the sites' CKKS key, with the public context only.

    Each site sends its update multiplied by its weight; the new global model is the encrypted
    sum divided by the total weight. Under DP, the sites clip their updates (Flower's
    ``fixedclipping_mod``, told the norm here as Flower's DP wrapper would) and the Gaussian
    noise of Flower's client-side fixed-clipping DP, calibrated to the sites that sent the
    round's updates, is added to the ciphertext.
    """

    def __init__(
        self,
        aggregator: EncryptedAggregator,
        size: int,
        dp: DifferentialPrivacy | None,
        **fedavg: Any,
    ) -> None:
        super().__init__(**fedavg)
        self._aggregator = aggregator
        self._size = size
        self._dp = dp

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        instructions = super().configure_fit(server_round, parameters, client_manager)
        if self._dp is not None:
            for _, fit_ins in instructions:
                fit_ins.config[KEY_CLIPPING_NORM] = self._dp.clipping_norm
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        if any(res.parameters.tensor_type != CKKS for _, res in results):
            raise ValueError("a site sent an update that is not encrypted")
        noise = None
        if self._dp is not None:
            std = self._dp.noise_multiplier * self._dp.clipping_norm / len(results)
            noise = np.random.default_rng().normal(0.0, std, self._size)
        mean = self._aggregator.weighted_mean(
            [res.parameters.tensors[0] for _, res in results],
            sum(res.num_examples for _, res in results),
            noise,
        )
        return Parameters([mean], CKKS), {}


def discover(
    grid: Grid, plan: FederatedPlan
) -> tuple[dict[int, str], list[SiteStatistics], dict[str, bytes]]:
    """The connected nodes of the plan's sites (node id -> site), their statistics, and the
    CKKS public contexts they gave (under homomorphic aggregation).

    Waits up to the plan's round timeout for as many nodes as the plan has sites, then asks
    every connected node who it is.
    """
    deadline = time.monotonic() + plan.round_timeout
    while len(list(grid.get_node_ids())) < len(plan.sites) and time.monotonic() < deadline:
        time.sleep(1.0)
    content = compat.getpropertiesins_to_recorddict(GetPropertiesIns({}))
    messages = [
        Message(content=content, dst_node_id=node, message_type=MessageTypeLegacy.GET_PROPERTIES)
        for node in grid.get_node_ids()
    ]
    sites: dict[int, str] = {}
    statistics: list[SiteStatistics] = []
    contexts: dict[str, bytes] = {}
    for reply in grid.send_and_receive(messages, timeout=plan.round_timeout):
        if reply.has_error():
            continue
        properties = compat.recorddict_to_getpropertiesres(reply.content).properties
        site = str(properties[SITE])
        if site in plan.sites and "statistics" in properties and site not in sites.values():
            sites[reply.metadata.src_node_id] = site
            statistics.append(SiteStatistics.from_json(str(properties["statistics"])))
            public = properties.get(PUBLIC_CONTEXT)
            if isinstance(public, bytes):
                contexts[site] = public
    return sites, statistics, contexts


def encrypted_aggregator(contexts: dict[str, bytes], sites: list[str]) -> EncryptedAggregator:
    """The aggregator of the one public context every site gave.

    Raises:
        ValueError: a site gave none, or the sites' contexts differ (they do not share a key).
        SecretKeyExposureError: a site gave a context with the secret key.
    """
    given = {contexts.get(site) for site in sites}
    if None in given or len(given) != 1:
        raise ValueError("the sites did not all give the same CKKS public context")
    [public] = given
    assert public is not None
    return EncryptedAggregator(public)


def decrypt_at_site(
    grid: Grid, nodes: list[int], parameters: Parameters, spec: FeatureSpec, timeout: float
) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
    """The final model, decrypted by the first of ``nodes`` (key-holding sites) that answers."""
    config: dict[str, Scalar] = {DECRYPT: parameters.tensors[0], SPEC: spec.to_json()}
    content = compat.getpropertiesins_to_recorddict(GetPropertiesIns(config))
    for node in nodes:
        message = Message(
            content=content, dst_node_id=node, message_type=MessageTypeLegacy.GET_PROPERTIES
        )
        for reply in grid.send_and_receive([message], timeout=timeout):
            if not reply.has_error():
                properties = compat.recorddict_to_getpropertiesres(reply.content).properties
                return [
                    np.asarray(w, dtype=np.float64) for w in json.loads(str(properties[WEIGHTS]))
                ]
    raise QuorumLostError("no site answered to decrypt the final model")


def train(
    grid: Grid, context: Context, plan: FederatedPlan, rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    """Run the plan's rounds, recording each in ``rounds``; returns the outcome to write."""
    sites, statistics, contexts = discover(grid, plan)
    missing = sorted(set(plan.sites) - set(sites.values()))
    if missing and plan.on_site_loss == "fail":
        raise QuorumLostError(
            f"sites {', '.join(missing)} are not connected and the run's policy is to fail on "
            "a lost site"
        )
    if len(sites) < plan.min_sites:
        raise QuorumLostError(
            f"{len(sites)} of the plan's sites are connected, fewer than the quorum of "
            f"{plan.min_sites} (not connected: {', '.join(missing)})"
        )
    spec = FeatureSpec.merge(plan.label, plan.positive_label, statistics)
    config: dict[str, Scalar] = {SPEC: spec.to_json()}
    fedavg: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": plan.min_sites,
        "min_evaluate_clients": plan.min_sites,
        "min_available_clients": plan.min_sites,
        "initial_parameters": ndarrays_to_parameters(initial_weights(spec)),
        "on_fit_config_fn": lambda rnd: {**config, "server_round": rnd},
        "on_evaluate_config_fn": lambda rnd: {**config, "server_round": rnd},
    }
    inner: Strategy
    he: dict[str, Any] | None = None
    if plan.he:
        aggregator = encrypted_aggregator(contexts, list(sites.values()))
        inner = EncryptedFedAvg(aggregator, spec.width + 1, plan.dp, **fedavg)
        he = {
            "scheme": "ckks",
            "public_context_sha256": hashlib.sha256(contexts[sites[min(sites)]]).hexdigest(),
            "server_context_public": aggregator.is_public,
        }
    else:
        inner = FedAvg(**fedavg)
        if plan.dp is not None:
            inner = QuorumDifferentialPrivacy(
                inner, plan.dp.noise_multiplier, plan.dp.clipping_norm, len(sites)
            )
    governed = GovernedStrategy(inner, plan, sites, rounds)
    legacy = LegacyContext(
        context,
        config=ServerConfig(num_rounds=plan.rounds, round_timeout=plan.round_timeout),
        strategy=governed,
        client_manager=ParticipantManager(sites),
    )
    fit_workflow = (
        QuorumSecAggPlusWorkflow(
            *_secagg_shares(len(sites), plan.min_sites),
            # The largest site's weight stays within the quantized range.
            max_weight=float(max(plan.aggregation_weight(s.rows) for s in statistics)),
            timeout=plan.round_timeout,
        )
        if plan.secagg
        else None
    )
    DefaultWorkflow(fit_workflow=fit_workflow)(RoundTimedGrid(grid, plan.round_timeout), legacy)
    # A round SecAgg+ abandons (too few sites left to unmask) never reaches aggregation.
    abandoned = [r["round"] for r in rounds if not r["aggregated"]]
    if abandoned and plan.on_site_loss == "fail":
        raise QuorumLostError(
            f"rounds {', '.join(map(str, abandoned))} of {plan.rounds} were abandoned "
            "(sites stopped answering) and the run's policy is to fail on a lost site"
        )
    if len(abandoned) == len(rounds):
        raise QuorumLostError(
            f"no round was aggregated with the quorum of {plan.min_sites} sites: the model did "
            "not train"
        )
    final = compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], True)
    if final.tensor_type == CKKS:
        connected = set(grid.get_node_ids())
        nodes = [node for node in sorted(sites) if node in connected]
        weights = decrypt_at_site(grid, nodes, final, spec, plan.round_timeout)
    else:
        weights = parameters_to_ndarrays(final)
    return {
        "status": "completed",
        "spec": json.loads(spec.to_json()),
        "weights": [w.tolist() for w in weights],
        "participants": sorted(sites.values()),
        "not_connected": missing,
        "rounds": rounds,
        "he": he,
    }


def _secagg_shares(sites: int, min_sites: int) -> tuple[int | float, int | float]:
    """SecAgg+ shares and reconstruction threshold: every site holds a share of every other
    site's keys, and a round is unmasked while the larger of the quorum and a majority of the
    sites answer (a majority, so that no minority can unmask a single site's update)."""
    threshold = max(min_sites, sites // 2 + 1)
    if sites >= 3 and threshold < sites:
        return sites, threshold
    return 1.0, 1.0


def write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    """Write the outcome atomically: the reader never sees half a file."""
    scratch = path.with_suffix(".partial")
    scratch.write_text(json.dumps(outcome))
    os.replace(scratch, path)


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    plan = FederatedPlan.model_validate_json(str(context.run_config[RUN_CONFIG_KEY]))
    rounds: list[dict[str, Any]] = []
    try:
        outcome = train(grid, context, plan, rounds)
    except Exception as exc:
        write_outcome(Path(plan.output), {"status": "failed", "error": f"{exc}", "rounds": rounds})
        raise
    write_outcome(Path(plan.output), outcome)
