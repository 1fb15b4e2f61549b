"""``govplane demo``: the whole governed path on the embedded default, over the real HTTP API.

A real ``govplane serve`` (and, for the federated step, ``govplane sites up``) runs on the data
directory; every step is a request a person would make, as that person: a data steward ingests
Adult, an ML engineer trains, evaluates, promotes and deploys, a model validator and a risk
officer approve, a site operator registers three sites. Each step prints one line; a refusal
stops the walk, naming the step and the server's problem detail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from control_plane.launcher import GOVPLANE, ServerProcess, free_ports, init_data_dir, serve
from control_plane.sample_data import (
    ADULT_LABEL,
    ADULT_SENSITIVE,
    ADULT_SITE_CATEGORICAL,
    ADULT_SITE_NUMERIC,
    ADULT_WORKCLASS_SITES,
    read_adult,
)
from control_plane.sdk import GovplaneClient, GovplaneError

DOMAIN = "lending"
MODEL = "income-screening"
DEPLOYMENT = "income-screening-prod"
POSITIVE = ">50K"
TRAINING_ROWS = (0, 6000)
VALIDATION_ROWS = (6000, 9000)
SITE_ROWS = (9000, 15000)
DP_EPSILON = 3.0
RUN_SECONDS = 900.0
FLOWER_PORTS = (
    "GOVPLANE_FLOWER_FLEET_PORT",
    "GOVPLANE_FLOWER_CONTROL_PORT",
    "GOVPLANE_FLOWER_SERVERAPPIO_PORT",
)
# Who the demo acts as: name -> roles in DOMAIN and attributes.
PEOPLE: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "steward": (("data_owner",), {}),
    "engineer": (("ml_engineer",), {"clearance": "confidential"}),
    "validator": (("model_validator",), {"clearance": "confidential"}),
    "risk-officer": (("risk_officer",), {}),
    "site-operator": (("site_operator", "data_owner"), {}),
}


class DemoError(Exception):
    """The demo could not go on; the message names the step and the reason."""


@dataclass
class Walk:
    """The running control plane and what the steps so far produced."""

    server: ServerProcess
    data_dir: Path
    env: dict[str, str]
    resources: ExitStack
    admin: GovplaneClient
    people: dict[str, GovplaneClient] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def person(self, name: str) -> GovplaneClient:
        return self.people[name]

    def submit(
        self, who: str, kind: str, target: str, inputs: Sequence[str] = (), /, **params: Any
    ) -> dict[str, Any]:
        """Submit a run as ``who`` and wait until it finished."""
        client = self.person(who)
        body = {"kind": kind, "target": target, "inputs": list(inputs), "params": params}
        run = client.call("POST", "/runs", json=body)
        return client.wait(run["id"], RUN_SECONDS)

    def close(self) -> None:
        for client in (self.admin, *self.people.values()):
            client.close()


def succeeded(run: dict[str, Any]) -> dict[str, Any]:
    """The outputs of ``run``, which must have succeeded."""
    if run["state"] != "succeeded":
        raise DemoError(f"{run['kind']} run {run['id']} {run['state']}: {run['error']}")
    outputs: dict[str, Any] = run["outputs"]
    return outputs


def adult_rows(start: int, stop: int) -> pa.Table:
    """Adult rows ``start:stop``, unknown categories spelled out (explanations need a value)."""
    table = read_adult().slice(start, stop - start)
    for index, column in enumerate(table.schema):
        if pa.types.is_string(column.type):
            table = table.set_column(index, column, pc.fill_null(table[index], "unknown"))
    return table


def site_rows(workclasses: tuple[str, ...]) -> pa.Table:
    """The site rows of these employer types, without the sensitive columns, deduplicated."""
    table = read_adult().slice(SITE_ROWS[0], SITE_ROWS[1] - SITE_ROWS[0])
    table = table.filter(pc.is_in(table["workclass"], pa.array(workclasses)))
    frame = table.drop_columns(list(ADULT_SENSITIVE)).to_pandas().drop_duplicates()
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def create_people(walk: Walk) -> str:
    """The principals of the story, each with its own API token."""
    for name, (roles, attributes) in PEOPLE.items():
        created = walk.admin.call(
            "POST",
            "/principals",
            json={
                "name": name,
                "kind": "user",
                "roles": [{"role": role, "domain": DOMAIN} for role in roles],
                "attributes": attributes,
            },
        )
        issued = walk.admin.call("POST", f"/principals/{created['id']}/tokens", json={})
        walk.people[name] = GovplaneClient(walk.url, issued["token"])
        walk.names[created["id"]] = name
    return f"{', '.join(PEOPLE)} created in domain {DOMAIN}, each with a token"


def ingest(
    walk: Walk, who: str, name: str, table: pa.Table, classified: Sequence[str] = ()
) -> None:
    """Register dataset ``name`` as ``who`` and ingest ``table`` into it."""
    owner = walk.person(who)
    registered = owner.call(
        "POST", "/datasets", json={"name": name, "domain": DOMAIN, "classification": "internal"}
    )
    columns = {column: {"classification": "confidential"} for column in classified}
    succeeded(owner.ingest(registered["id"], table, columns=columns, wait=RUN_SECONDS))
    walk.datasets[name] = registered["id"]


def ingest_adult(walk: Walk) -> str:
    """Adult for training and validation: sensitive columns confidential, masked on reads."""
    for name, rows in (("adult_train", TRAINING_ROWS), ("adult_valid", VALIDATION_ROWS)):
        ingest(walk, "steward", name, adult_rows(*rows), ADULT_SENSITIVE)
    preview = walk.person("engineer").call(
        "GET", f"/datasets/{walk.datasets['adult_train']}/preview", params={"limit": 1}
    )
    masked = sorted(c["name"] for c in preview["columns"] if c["access"] == "pseudonyms")
    first = preview["rows"][0]
    return (
        f"adult_train ({TRAINING_ROWS[1] - TRAINING_ROWS[0]} rows) and adult_valid "
        f"({VALIDATION_ROWS[1] - VALIDATION_ROWS[0]} rows) in the lake; "
        f"{', '.join(ADULT_SENSITIVE)} classified confidential; the ML engineer sees "
        f"{', '.join(masked)} masked (sex = {first['sex']})"
    )


def train(walk: Walk, **params: Any) -> dict[str, Any]:
    """A train run of the model on adult_train as the engineer; the new version's training."""
    run = walk.submit(
        "engineer",
        "train",
        f"model:{MODEL}",
        ["dataset:adult_train"],
        label=ADULT_LABEL,
        positive_label=POSITIVE,
        **params,
    )
    version: int = succeeded(run)["model_version"]
    walk.versions[params["privacy_mode"]] = version
    shown = walk.person("engineer").call("GET", f"/models/{MODEL}/versions/{version}")
    training: dict[str, Any] = shown["evidence"]["training"]
    return training


def train_dp(walk: Walk) -> str:
    """The high-risk model, and a version trained with DP-SGD charged to the budget."""
    walk.person("engineer").call(
        "POST",
        "/models",
        json={
            "name": MODEL,
            "domain": DOMAIN,
            "risk_tier": "high",
            "intended_use": "income screening (demo)",
        },
    )
    training = train(walk, privacy_mode="dp", epsilon=DP_EPSILON, epochs=2, batch_size=256)
    privacy = training["privacy"]
    budget = walk.person("engineer").call("GET", f"/privacy/budgets/{walk.datasets['adult_train']}")
    return (
        f"{MODEL} v{walk.versions['dp']}: DP-SGD spent epsilon {privacy['epsilon']:.2f} of "
        f"{DP_EPSILON:g} (delta {privacy['delta']:g}, {privacy['accountant']}); "
        f"accuracy {training['metrics']['accuracy']:.3f}; budget left "
        f"{budget['epsilon']['left']:.2f} of {budget['epsilon']['budget']:g}"
    )


def train_plain(walk: Walk) -> str:
    """A plain logistic regression of the same model, on every column sex and race included."""
    training = train(walk, privacy_mode="plain")
    return (
        f"{MODEL} v{walk.versions['plain']}: logistic regression on "
        f"{len(training['features'])} features, accuracy {training['metrics']['accuracy']:.3f}"
    )


def evaluate(walk: Walk, version: int, **params: Any) -> dict[str, Any]:
    """An evaluate run of ``version`` on adult_valid as the engineer (it may fail)."""
    return walk.submit(
        "engineer",
        "evaluate",
        f"model:{MODEL}",
        ["dataset:adult_valid"],
        version=version,
        **params,
    )


def evaluate_plain(walk: Walk) -> str:
    """The high tier's gates on the plain version: it must fail fairness."""
    run = evaluate(walk, walk.versions["plain"])
    gates = {gate["gate"]: gate for gate in run["gates"]}
    fairness = gates.get("fairness")
    if run["state"] != "failed" or fairness is None or fairness["status"] != "fail":
        raise DemoError(f"the plain version was expected to fail fairness; run {run['id']}")
    (by_sex,) = [f for f in fairness["evidence"]["features"] if f["features"] == ["sex"]]
    statuses = ", ".join(f"{name} {gate['status']}" for name, gate in gates.items())
    return (
        f"v{walk.versions['plain']} refused: {statuses}; demographic parity gap by sex "
        f"{by_sex['demographic_parity_difference']:.3f} (the high tier allows 0.10)"
    )


def mitigate(walk: Walk) -> str:
    """A fair refit of the plain version without sex and race, which must pass every gate."""
    parent = walk.versions["plain"]
    mitigation = {"sensitive_features": ["sex"], "drop_features": ["race"]}
    outputs = succeeded(evaluate(walk, parent, mitigate=mitigation))
    candidate: int = outputs["model_version"]
    walk.versions["candidate"] = candidate
    shown = walk.person("engineer").call("GET", f"/models/{MODEL}/versions/{candidate}")
    gaps = shown["evidence"]["mitigation"]
    before = gaps["before"]["sex"]["demographic_parity_difference"]
    after = gaps["after"]["sex"]["demographic_parity_difference"]
    passed = ", ".join(f"{gate} {status}" for gate, status in outputs["gates"].items())
    return (
        f"v{candidate} refit from v{parent} (exponentiated gradient, no sex or race): {passed}; "
        f"gap by sex {before:.3f} -> {after:.3f}"
    )


def promote(walk: Walk) -> str:
    """Production release of the candidate, approved by a validator and a risk officer."""
    engineer = walk.person("engineer")
    body = {
        "kind": "promote",
        "target": f"model:{MODEL}",
        "params": {"version": walk.versions["candidate"], "target_stage": "production"},
    }
    run = engineer.call("POST", "/runs", json=body)
    waiting = engineer.wait(run["id"], RUN_SECONDS, frozenset({"awaiting_approval", "failed"}))
    if waiting["state"] != "awaiting_approval":
        succeeded(waiting)
    approvals = walk.admin.call("GET", "/approvals", params={"status": "pending", "limit": 200})
    (approval,) = [a for a in approvals["items"] if a["run_id"] == run["id"]]
    for approver in ("validator", "risk-officer"):
        walk.person(approver).call(
            "POST",
            f"/approvals/{approval['id']}/decisions",
            json={"decision": "approve", "comment": "gates passed, model card reviewed"},
        )
    succeeded(engineer.wait(run["id"], RUN_SECONDS))
    decided = walk.admin.call("GET", f"/approvals/{approval['id']}")
    approvers = " and ".join(
        f"{walk.names.get(d['approver'], d['approver'])} ({', '.join(d['roles'])})"
        for d in decided["decisions"]
    )
    return f"v{walk.versions['candidate']} released to production, approved by {approvers}"


def deploy(walk: Walk) -> str:
    """Serve the released version on a local scoring server and ask it for a prediction."""
    version = walk.versions["candidate"]
    outputs = succeeded(
        walk.submit(
            "engineer",
            "deploy",
            f"model:{MODEL}",
            version=version,
            deployment=DEPLOYMENT,
            target="local",
        )
    )
    shown = walk.person("engineer").call("GET", f"/models/{MODEL}/versions/{version}")
    row = adult_rows(*VALIDATION_ROWS).slice(0, 1).to_pandas()
    applicant = row[shown["evidence"]["training"]["features"]]
    answer = httpx.post(
        outputs["endpoint_url"],
        json={"dataframe_split": applicant.to_dict(orient="split")},
        timeout=60,
    )
    if answer.is_error:
        raise DemoError(f"the scoring server answered {answer.status_code}: {answer.text[:200]}")
    (prediction,) = answer.json()["predictions"]
    return (
        f"{DEPLOYMENT} serves v{version} at {outputs['endpoint_url']}; a {row['age'][0]}-year-old "
        f"{row['occupation'][0]} is predicted {'>50K' if prediction else '<=50K'}"
    )


@contextmanager
def flower_sites(
    data_dir: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``govplane sites up`` on ``data_dir``: a SuperLink and a SuperNode per site, stopped
    (with SIGINT, so it stops its nodes) on exit."""
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [*GOVPLANE, "sites", "up", "--data-dir", str(data_dir)],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def federate(walk: Walk) -> str:
    """Three sites holding Adult partitions train one model with Flower; rows stay at the sites."""
    operator = walk.person("site-operator")
    for site, workclasses in ADULT_WORKCLASS_SITES.items():
        ingest(walk, "site-operator", f"{site}-data", site_rows(workclasses))
        operator.call(
            "POST",
            "/sites",
            json={"name": site, "domain": DOMAIN, "residency": "DE", "datasets": [f"{site}-data"]},
        )
    walk.resources.enter_context(flower_sites(walk.data_dir, walk.env, walk.data_dir / "sites.log"))
    run = walk.submit(
        "engineer",
        "federated_train",
        f"model:{MODEL}",
        [f"dataset:{site}-data" for site in ADULT_WORKCLASS_SITES],
        rounds=2,
        local_epochs=3,
        learning_rate=0.2,
        min_sites=len(ADULT_WORKCLASS_SITES),
        label=ADULT_LABEL,
        positive_label=POSITIVE,
        numeric=ADULT_SITE_NUMERIC,
        categorical=ADULT_SITE_CATEGORICAL,
    )
    outputs = succeeded(run)
    walk.versions["federated"] = outputs["model_version"]
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in outputs["metrics"].items() if _number(v))
    return (
        f"v{outputs['model_version']} trained by {', '.join(outputs['participants'])} over "
        f"{len(outputs['rounds'])} rounds; {metrics}"
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def verify_audit(walk: Walk) -> str:
    """The audit trail's hash chain and Merkle tree recomputed by the server."""
    verified = walk.admin.call("GET", "/audit/verify")
    if not verified["valid"]:
        raise DemoError(f"the audit trail is invalid: {verified['problem']}")
    return f"valid: {verified['size']} records, root {verified['root_hash'][:16]}..."


def maturity(walk: Walk) -> str:
    """The maturity levels the store's evidence earns."""
    scored = walk.admin.call("GET", "/maturity")
    levels = [
        f"{rubric.replace('_', ' ')} {scored[rubric]['level']}"
        for rubric in ("ai_capability", "data_governance")
    ]
    return "; ".join(levels)


Step = tuple[str, Callable[[Walk], str]]

STEPS: tuple[Step, ...] = (
    ("people", create_people),
    ("ingest", ingest_adult),
    ("DP training", train_dp),
    ("plain training", train_plain),
    ("evaluation", evaluate_plain),
    ("mitigation", mitigate),
    ("approval", promote),
    ("deployment", deploy),
    ("federated training", federate),
    ("audit", verify_audit),
    ("maturity", maturity),
)
"""The path, in order: a title and the step, which returns its one-line outcome."""


def walk_through(walk: Walk, echo: Callable[[str], None], steps: Sequence[Step] = STEPS) -> None:
    """Run ``steps`` in order, printing each outcome as ``[n/N] title: outcome``.

    Raises:
        DemoError: a step failed; the message names it and the server's problem detail.
    """
    for number, (title, step) in enumerate(steps, 1):
        echo(f"[{number}/{len(steps)}] {title} ...")
        try:
            outcome = step(walk)
        except GovplaneError as exc:
            detail = exc.problem.get("detail") or exc.problem.get("title")
            raise DemoError(f"step {number}/{len(steps)} ({title}) refused: {detail}") from exc
        except (DemoError, TimeoutError, httpx.HTTPError) as exc:
            raise DemoError(f"step {number}/{len(steps)} ({title}) failed: {exc}") from exc
        echo(f"[{number}/{len(steps)}] {title}: {outcome}")


def writable_data_dir(data_dir: Path) -> Path:
    """``data_dir``, created if need be, absolute; refused unless this user can write it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DemoError(f"the data directory {data_dir} is not writable")
    return data_dir.resolve()


def free_to_listen(host: str, port: int) -> None:
    """Refuse a ``host``:``port`` something already listens on (or that cannot be bound)."""
    with socket.socket() as probe:
        # As the server binds: a port left in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def flower_ports() -> dict[str, str]:
    """The Flower ports of this environment, free ones where it names none."""
    free = iter(free_ports(len(FLOWER_PORTS)))
    return {name: os.environ.get(name) or str(next(free)) for name in FLOWER_PORTS}


def walked(walk: Walk) -> bool:
    """Whether an earlier demo walked the path on this data directory (its model exists)."""
    try:
        walk.admin.call("GET", f"/models/{MODEL}")
    except GovplaneError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def where_to_look(walk: Walk, token: str) -> list[str]:
    """The closing lines: dashboard, token, data, and commands to try."""
    data = walk.data_dir
    return [
        f"Dashboard:   {walk.url}/  (log in with the admin token)",
        f"API docs:    {walk.url}/docs",
        f"Admin token: {token}",
        f"Data dir:    {data}  (server log: {data / 'server.log'})",
        "Try:",
        f"  govplane audit verify --data-dir {data}",
        f"  govplane evidence export {MODEL} {walk.versions.get('candidate', 'VERSION')} "
        f"--url {walk.url} --token {token}",
        f"  govplane runs list --url {walk.url} --token {token}",
    ]


def run_demo(
    data_dir: Path,
    host: str,
    port: int,
    echo: Callable[[str], None],
    then: Callable[[Walk], None] | None = None,
) -> None:
    """Initialize ``data_dir``, serve it on ``host``:``port``, walk the path, print where to
    look; then ``then`` (for example: wait for Ctrl-C) before the server stops.

    Raises:
        DemoError: bad input, a server that did not start, or a step that failed.
    """
    data_dir = writable_data_dir(data_dir)
    free_to_listen(host, port)
    env = flower_ports()
    try:
        token = init_data_dir(data_dir, env)
    except subprocess.CalledProcessError as exc:
        raise DemoError(f"govplane init failed: {exc.stderr.strip()[-500:]}") from exc
    echo(f"Initialized {data_dir}; starting govplane serve on {host}:{port} ...")
    with ExitStack() as resources:
        try:
            server = resources.enter_context(
                serve(data_dir, env, data_dir / "server.log", host=host, port=port)
            )
        except RuntimeError as exc:
            raise DemoError(f"{exc} (see {data_dir / 'server.log'})") from exc
        walk = Walk(server, data_dir, env, resources, GovplaneClient(server.url, token))
        resources.callback(walk.close)
        if walked(walk):
            echo(f"The path was already walked in {data_dir}; serving it as it is.")
        else:
            walk_through(walk, echo)
        for line in where_to_look(walk, token):
            echo(line)
        if then is not None:
            then(walk)
