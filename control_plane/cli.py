"""The ``govplane`` command line.

``init``, ``serve``, ``demo`` (which serves and walks the governed path over the API) and
``policy check`` work on the local data directory or bundle;
``principals``, ``runs`` and ``lineage`` are clients of a running control plane (``--url``,
``--token``), so they pass through the same authentication, authorization and validation as any
client.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from control_plane.settings import Settings

app = typer.Typer(help="govplane: governance, privacy and model-risk control plane for ML.")
principals_app = typer.Typer(help="Manage principals and their API tokens.")
runs_app = typer.Typer(help="Submit and follow governed runs.")
policy_app = typer.Typer(help="Work with policy bundles.")
audit_app = typer.Typer(help="Verify and export the audit trail.")
lineage_app = typer.Typer(help="Query the lineage graph.")
evidence_app = typer.Typer(help="Export and verify evidence packs of model versions.")
sites_app = typer.Typer(help="Run the federated sites' Flower deployment.")
app.add_typer(principals_app, name="principals")
app.add_typer(runs_app, name="runs")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(lineage_app, name="lineage")
app.add_typer(evidence_app, name="evidence")
app.add_typer(sites_app, name="sites")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="GOVPLANE_DATA_DIR", help="Data directory [./.govplane]."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Url = Annotated[
    str, typer.Option("--url", envvar="GOVPLANE_URL", help="Base URL of the control plane.")
]
Token = Annotated[
    str, typer.Option("--token", envvar="GOVPLANE_TOKEN", help="API token.", show_default=False)
]


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _emit(data: Any, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else human)


@app.command()
def init(
    data_dir: DataDir = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Policy bundle to install instead of the default.")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Create the embedded default (store, MLflow registry) and print an admin token (once)."""
    from control_plane.bootstrap import initialize
    from control_plane.connectors import ensure_model_registry
    from policies import BundleError

    settings = _settings(data_dir)
    try:
        done = initialize(settings, bundle)
    except BundleError as exc:
        _fail(f"invalid policy bundle: {exc}")
    ensure_model_registry(settings)
    data = {
        "admin_token": done.admin_token,
        "data_dir": str(done.data_dir),
        "bundle_version": done.bundle_version,
    }
    verb = "Initialized" if done.created else "Already initialized"
    _emit(
        data,
        as_json,
        f"{verb} {done.data_dir} (policy bundle {done.bundle_version}).\n"
        f"Admin token (shown once): {done.admin_token}",
    )


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Run the API and the run worker."""
    import uvicorn

    from control_plane.app import create_app

    settings = _settings(data_dir, host=host, port=port)
    typer.echo(f"govplane serving on http://{host}:{port} (data in {settings.data_dir})")
    application = create_app(settings)
    # The libraries loaded by now hold most of a million objects for the life of the process;
    # left to the collector, every full collection walks them all and stalls requests for
    # half a second.
    gc.collect()
    gc.freeze()
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface the server listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the server listens on.", min=1, max=65535)] = 8000,
    exit_: Annotated[
        bool, typer.Option("--exit", help="Stop the server after the walk instead of staying up.")
    ] = False,
) -> None:
    """Walk the governed path on the embedded default, then leave the server up (Ctrl-C stops).

    Ingest, DP and plain training, evaluation with gates and mitigation, approval by two people,
    local deployment with a prediction, a federated run over three sites, audit verification
    and maturity, each through the HTTP API of a real server on the data directory.
    """
    from control_plane.demo import DemoError, Walk, run_demo

    def stay_up(walk: Walk) -> None:
        typer.echo("The server stays up; Ctrl-C stops it.")
        try:
            walk.server.process.wait()
        except KeyboardInterrupt:
            typer.echo("Stopping.")

    try:
        run_demo(_settings(data_dir).data_dir, host, port, typer.echo, None if exit_ else stay_up)
    except DemoError as exc:
        _fail(str(exc))


@sites_app.command("up")
def sites_up(data_dir: DataDir = None) -> None:
    """Start a Flower SuperLink and one SuperNode per registered site; supervise them."""
    import threading

    from control_plane.federation import site_deployment, supervise
    from control_plane.store import Database
    from privacy.federated import DeploymentError

    settings = _settings(data_dir)
    try:
        deployment = site_deployment(settings, Database(settings.sqlalchemy_url))
        deployment.start()
    except DeploymentError as exc:
        _fail(str(exc))
    sites = ", ".join(node.site for node in deployment.sites) or "none"
    typer.echo(
        f"Flower SuperLink on {deployment.control_address} (control API); SuperNodes: {sites}"
    )
    try:
        supervise(deployment, threading.Event())
    except KeyboardInterrupt:
        pass
    finally:
        deployment.stop()


@policy_app.command("check")
def policy_check(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle folder or .tar.gz.")],
    cases: Annotated[
        Path | None, typer.Option(help="Case files or folder [BUNDLE_DIR/cases].")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Validate a bundle and run its policy cases."""
    from policies import BundleError, load_bundle, load_cases, run_cases

    try:
        bundle = load_bundle(bundle_dir)
        case_files = (
            load_cases(cases or bundle_dir / "cases")
            if (cases or (bundle_dir / "cases").is_dir())
            else []
        )
    except (BundleError, ValueError, OSError) as exc:
        _fail(str(exc))
    failures = run_cases(bundle, case_files)
    total = sum(len(case_file.cases) for case_file in case_files)
    data = {
        "bundle_version": bundle.version,
        "cases": total,
        "failures": [str(failure) for failure in failures],
    }
    lines = [f"bundle {bundle.version} is valid; {total - len(failures)}/{total} cases pass"]
    lines += [f"FAIL {failure}" for failure in failures]
    _emit(data, as_json, "\n".join(lines))
    if failures:
        raise typer.Exit(1)


def _call(
    url: str,
    token: str,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> Any:
    return _request(url, token, method, path, body, params).json()


def _request(
    url: str,
    token: str,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}/api/v1{path}",
            json=body,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {exc}")
    if response.is_error:
        try:
            problem = response.json()
            _fail(f"{problem['status']} {problem['title']}: {problem['detail']}")
        except (ValueError, KeyError, TypeError):
            _fail(f"HTTP {response.status_code}: {response.text[:200]}")
    return response


def _split(value: str, separator: str, form: str) -> tuple[str, str]:
    key, sep, item = value.partition(separator)
    if not sep or not key or not item:
        _fail(f"{value!r} is not of the form {form}")
    return key, item


DEFAULT_URL = "http://127.0.0.1:8000"


@principals_app.command("create")
def principals_create(
    name: str,
    token: Token,
    role: Annotated[
        list[str], typer.Option(help="ROLE@DOMAIN (DOMAIN * for all); repeatable.")
    ] = [],  # noqa: B006
    attr: Annotated[list[str], typer.Option(help="KEY=VALUE attribute; repeatable.")] = [],  # noqa: B006
    kind: Annotated[str, typer.Option(help="user or service.")] = "user",
    oidc_subject: Annotated[str | None, typer.Option(help="Bind an OIDC `sub`.")] = None,
    url: Url = DEFAULT_URL,
    as_json: JsonOut = False,
) -> None:
    """Create a principal with roles per domain."""
    roles = [
        dict(zip(("role", "domain"), _split(r, "@", "ROLE@DOMAIN"), strict=True)) for r in role
    ]
    attributes = dict(_split(a, "=", "KEY=VALUE") for a in attr)
    body: dict[str, Any] = {"name": name, "kind": kind, "roles": roles, "attributes": attributes}
    if oidc_subject:
        body["oidc_subject"] = oidc_subject
    created = _call(url, token, "POST", "/principals", body)
    _emit(created, as_json, f"created {created['kind']} {created['name']} ({created['id']})")


@principals_app.command("list")
def principals_list(token: Token, url: Url = DEFAULT_URL, as_json: JsonOut = False) -> None:
    """List principals."""
    page = _call(url, token, "GET", "/principals", params={"limit": 200})
    rows = [
        f"{p['id']}  {p['name']:<24} {p['kind']:<8} "
        + ", ".join(f"{r['role']}@{r['domain']}" for r in p["roles"])
        for p in page["items"]
    ]
    _emit(page, as_json, "\n".join(rows) or "no principals")


@principals_app.command("token")
def principals_token(
    principal_id: str,
    token: Token,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    url: Url = DEFAULT_URL,
    as_json: JsonOut = False,
) -> None:
    """Issue an API token for a principal (shown once)."""
    issued = _call(
        url,
        token,
        "POST",
        f"/principals/{principal_id}/tokens",
        {"expires_in_days": expires_in_days},
    )
    _emit(issued, as_json, issued["token"])


@runs_app.command("submit")
def runs_submit(
    kind: str,
    target: Annotated[str, typer.Argument(help="dataset:NAME, model:NAME, ...")],
    token: Token,
    input_: Annotated[list[str], typer.Option("--input", help="Input asset; repeatable.")] = [],  # noqa: B006
    param: Annotated[list[str], typer.Option(help="KEY=JSON_OR_TEXT; repeatable.")] = [],  # noqa: B006
    url: Url = DEFAULT_URL,
    as_json: JsonOut = False,
) -> None:
    """Submit a governed run."""
    params: dict[str, Any] = {}
    for key, value in (_split(p, "=", "KEY=VALUE") for p in param):
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    body = {"kind": kind, "target": target, "inputs": input_, "params": params}
    run = _call(url, token, "POST", "/runs", body)
    _emit(run, as_json, f"run {run['id']} {run['state']}")


@runs_app.command("list")
def runs_list(
    token: Token,
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    url: Url = DEFAULT_URL,
    as_json: JsonOut = False,
) -> None:
    """List runs."""
    page = _call(url, token, "GET", "/runs", params={"limit": 200, "state": state})
    rows = [f"{r['id']}  {r['kind']:<16} {r['state']:<18} {r['target']}" for r in page["items"]]
    _emit(page, as_json, "\n".join(rows) or "no runs")


@runs_app.command("show")
def runs_show(run_id: str, token: Token, url: Url = DEFAULT_URL, as_json: JsonOut = False) -> None:
    """Show a run with its gate results."""
    run = _call(url, token, "GET", f"/runs/{run_id}")
    lines = [f"run {run['id']} ({run['kind']} {run['target']}): {run['state']}"]
    lines += [
        f"  gate {g['gate']}: {g['status']}"
        + (f" — {'; '.join(g['reasons'])}" if g["reasons"] else "")
        for g in run["gates"]
    ]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    _emit(run, as_json, "\n".join(lines))


DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="GOVPLANE_DATABASE_URL", help="Store URL."),
]


def _audit_log(data_dir: Path | None, database_url: str | None) -> Any:
    from control_plane.audit_trail import AuditLog, load_audit_keys
    from control_plane.store import Database

    settings = _settings(data_dir, database_url=database_url)
    try:
        keys = load_audit_keys(settings)
    except RuntimeError as exc:
        _fail(str(exc))
    return AuditLog(Database(settings.sqlalchemy_url), keys)


def _report(result: Any, as_json: bool) -> None:
    data = result.to_json()
    if result.valid:
        human = f"valid: {result.size} records, root {result.root_hash}"
    else:
        where = (
            "" if result.first_invalid is None else f" (first bad record: {result.first_invalid})"
        )
        human = f"INVALID{where}: {result.problem}"
    _emit(data, as_json, human)
    if not result.valid:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: JsonOut = False
) -> None:
    """Recompute the trail's chain and tree from the store and check its signed checkpoints."""
    trail = _audit_log(data_dir, database_url)
    try:
        result = trail.verify()
    finally:
        trail.close()
    _report(result, as_json)


@audit_app.command("export")
def audit_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet.")] = "jsonl",
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC if no zone).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor's records.")] = None,
    resource: Annotated[str | None, typer.Option(help="Only records about this.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Export the trail with the checkpoint and hashes that verify it offline."""
    from audit import FORMATS, ExportFilter

    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    filters = ExportFilter(_utc(since), _utc(until), actor, resource, action)
    trail = _audit_log(data_dir, database_url)
    try:
        with output.open("wb") as sink:
            for chunk in trail.export(fmt, filters):
                sink.write(chunk)
    finally:
        trail.close()
    typer.echo(f"wrote {output}")


@audit_app.command("prune")
def audit_prune(
    archive: Annotated[Path, typer.Option(help="Archive file (.jsonl, .csv or .parquet).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Archive the records older than the active bundle's retention to a verified export, then
    prune them.

    The retention is the active policy bundle's ``audit.yaml``; a bundle without one prunes
    nothing. Only records behind a signed checkpoint are pruned; the tree state they leave keeps
    the rest verifiable, and the pruning itself is recorded in the trail.
    """
    from audit import FORMATS, ExportError
    from control_plane.bundles import audit_retention_cutoff
    from control_plane.errors import ConflictError

    fmt = archive.suffix.removeprefix(".")
    if fmt not in FORMATS:
        _fail(f"the archive must end in one of {', '.join('.' + f for f in FORMATS)}")
    if archive.exists():
        _fail(f"{archive} exists; an archive is never overwritten")
    trail = _audit_log(data_dir, database_url)
    try:
        with trail.db.session() as session:
            until = audit_retention_cutoff(session, datetime.now(UTC))
        pruned = trail.archive_and_prune(archive, fmt, until, "system:cli")
    except ConflictError as exc:
        _fail(exc.detail)
    except ExportError as exc:
        _fail(str(exc))
    finally:
        trail.close()
    data = {"pruned": pruned, "archive": str(archive), "before": until.isoformat()}
    _emit(data, as_json, f"archived and pruned {pruned} records older than {until.isoformat()}")


@audit_app.command("public-key")
def audit_public_key(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Print the public key that checkpoints and exports are signed with (PEM)."""
    trail = _audit_log(data_dir, database_url)
    typer.echo(trail.public_key_pem, nl=False)


def _public_key(path: Path) -> Any:
    """The audit trail's Ed25519 public key from a PEM file."""
    from audit import load_public_key

    try:
        return load_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the public key {path}: {exc}")


@audit_app.command("verify-export")
def audit_verify_export(
    file: Annotated[Path, typer.Argument(help="A JSONL, CSV or Parquet audit export.")],
    public_key: Annotated[Path, typer.Option(help="The trail's public key (PEM).")],
    as_json: JsonOut = False,
) -> None:
    """Verify an export offline: no server, no database, only the public key."""
    from audit import verify_export

    key = _public_key(public_key)
    if not file.is_file():
        _fail(f"no such file: {file}")
    _report(verify_export(file, key), as_json)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


NodeArg = Annotated[
    str, typer.Argument(help="dataset:NS:NAME, job:NS:NAME, model:NAME:VERSION or deployment:NAME.")
]
DepthOpt = Annotated[int, typer.Option(help="Hops to follow (1-50).", min=1, max=50)]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="RFC 3339 time: the graph as it was then.")
]


def _graph_lines(node: str, direction: str, depth: int, graph: dict[str, Any]) -> list[str]:
    lines = [f"{direction} of {node} (depth {depth}): {len(graph['nodes'])} nodes"]
    lines += [f"  {n['type']:<10} {n['id']}" for n in graph["nodes"] if n["id"] != node]
    lines += [
        f"  {e['source']} -[{e['kind']}"
        + (f" {e['source_field']}->{e['target_field']}" if e.get("source_field") else "")
        + f"]-> {e['target']}"
        for e in graph["edges"]
    ]
    return lines


def _impact_lines(node: str, depth: int, found: dict[str, Any]) -> list[str]:
    lines = [f"impact of {node} (depth {depth}):"]
    for kind in ("datasets", "jobs", "models", "deployments"):
        lines.append(f"  {kind}: {len(found[kind])}")
        lines += [f"    {item}" for item in found[kind]]
    return lines


def _lineage_query(
    query: str, node: str, depth: int, as_of: str | None, url: str, token: str, as_json: bool
) -> None:
    """Ask the server for ``impact`` or a graph in direction ``query``, and print it."""
    params: dict[str, Any] = {"node": node, "depth": depth, "as_of": as_of}
    if query == "impact":
        found = _call(url, token, "GET", "/lineage/impact", params=params)
        lines = _impact_lines(node, depth, found)
    else:
        found = _call(url, token, "GET", "/lineage/graph", params={**params, "direction": query})
        lines = _graph_lines(node, query, depth, found)
    if found["truncated"]:
        lines.append("  (truncated: the node limit was reached)")
    if found["hidden"]:
        lines.append(f"  ({found['hidden']} nodes hidden: not readable by this caller)")
    _emit(found, as_json, "\n".join(lines))


def _lineage_command(query: str, summary: str) -> None:
    """Register ``govplane lineage QUERY NODE``."""

    def command(
        node: NodeArg,
        token: Token,
        depth: DepthOpt = 10,
        as_of: AsOfOpt = None,
        url: Url = DEFAULT_URL,
        as_json: JsonOut = False,
    ) -> None:
        _lineage_query(query, node, depth, as_of, url, token, as_json)

    command.__doc__ = summary
    lineage_app.command(query)(command)


for _query, _summary in (
    ("upstream", "What a node comes from: its inputs, their producers, and so on."),
    ("downstream", "What a node feeds: the jobs that read it, what they write, and so on."),
    ("impact", "Everything affected by a node: downstream datasets, jobs, models and deployments."),
):
    _lineage_command(_query, _summary)


@evidence_app.command("export")
def evidence_export(
    model: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(help="The version number.", min=1)],
    token: Token,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the zip [evidence-MODEL-vVERSION.zip].")
    ] = None,
    url: Url = DEFAULT_URL,
    as_json: JsonOut = False,
) -> None:
    """Download a model version's evidence pack (one zip, verifiable offline)."""
    path = f"/models/{quote(model, safe='')}/versions/{version}/evidence-pack"
    pack = _request(url, token, "GET", path).content
    target = out or Path(f"evidence-{model}-v{version}.zip")
    target.write_bytes(pack)
    _emit({"file": str(target), "bytes": len(pack)}, as_json, f"wrote {target} ({len(pack)} bytes)")


@evidence_app.command("verify")
def evidence_verify(
    pack: Annotated[Path, typer.Argument(help="An evidence pack (zip).")],
    public_key: Annotated[Path, typer.Option(help="The audit trail's public key (PEM).")],
    as_json: JsonOut = False,
) -> None:
    """Verify an evidence pack offline: file digests, the signed checkpoint, every proof."""
    from audit import verify_pack

    key = _public_key(public_key)
    try:
        result = verify_pack(pack.read_bytes(), key)
    except OSError as exc:
        _fail(f"cannot read {pack}: {exc}")
    except ValueError as exc:
        _fail(str(exc))
    lines = [
        f"{result.subject}: {'valid' if result.valid else 'INVALID'}",
        f"  {result.files} files, {result.records} audit records, checkpoint size "
        f"{result.checkpoint_size}",
        *(f"  problem: {problem}" for problem in result.problems),
    ]
    _emit(result.to_json(), as_json, "\n".join(lines))
    if not result.valid:
        raise typer.Exit(1)
