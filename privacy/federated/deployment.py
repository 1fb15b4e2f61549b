"""A Flower deployment: one SuperLink and one SuperNode per site, as real OS processes.

On loopback (the embedded default) the processes talk without TLS. Anywhere else a
:class:`Deployment` refuses to start without TLS certificates and SuperNode authentication keys:
the SuperLink serves TLS and accepts only the SuperNodes whose public keys were registered with
it (each site's, through the Control API, before its SuperNode starts); each SuperNode checks the
SuperLink's certificate and signs with its own key.

Runs are submitted with the ``flwr`` command line (``flwr run``) to the SuperLink's Control
API, with govplane's Flower app (:data:`FLOWER_APP`) and the run's plan as its run config.

For homomorphic aggregation the sites share one CKKS key: :meth:`Deployment.start` creates it
and writes it to each site's own directory (``HOME/sites/SITE/ckks.key``), which the site's
SuperNode names in its node config. The SuperLink and the ServerApp are never told of it; they
get the public context from the sites.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

_BIN = Path(sys.executable).parent
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

FLOWER_APP = f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "govplane-federated"
version = "1.0.0"
description = "govplane's federated training: the ServerApp and ClientApp of privacy.federated"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "govplane"

[tool.flwr.app.components]
serverapp = "privacy.federated.server_app:app"
clientapp = "privacy.federated.client_app:app"

[tool.flwr.app.config]
{RUN_CONFIG_KEY} = ""
"""


class DeploymentError(RuntimeError):
    """The deployment cannot start, or a run could not be submitted or followed."""


@dataclass(frozen=True)
class SiteNode:
    """A site's SuperNode: the site's name and the lake it reads its snapshots from."""

    site: str
    lake_dir: Path
    lake_namespace: str


@dataclass(frozen=True)
class Security:
    """TLS and node authentication; all None on loopback in the embedded default.

    Attributes:
        ca_certificate: the CA that signed the SuperLink's certificate (nodes and CLI check it).
        certificate: the SuperLink's TLS certificate.
        private_key: the SuperLink's TLS private key.
        node_keys: a folder with ``SITE`` and ``SITE.pub`` per site, an OpenSSH ECDSA key pair on
            a NIST curve (``ssh-keygen -t ecdsa -b 384 -N "" -f SITE``); with TLS, the SuperLink
            accepts only the nodes of these keys.
    """

    ca_certificate: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    node_keys: Path | None = None

    @property
    def secure(self) -> bool:
        return None not in (self.ca_certificate, self.certificate, self.private_key)

    @property
    def authenticated(self) -> bool:
        """SuperNodes authenticate with their site's key (which needs TLS)."""
        return self.secure and self.node_keys is not None


@dataclass(frozen=True)
class Ports:
    """The SuperLink's ports: Fleet API (SuperNodes), Control API (``flwr``), ServerAppIo."""

    fleet: int
    control: int
    serverappio: int


@dataclass
class Deployment:
    """A SuperLink and one SuperNode per site, started, watched and stopped together."""

    home: Path
    sites: Sequence[SiteNode]
    ports: Ports
    host: str = "127.0.0.1"
    security: Security = field(default_factory=Security)
    _superlink: subprocess.Popen[bytes] | None = None
    _supernodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.host not in _LOOPBACK and not self.security.authenticated:
            raise DeploymentError(
                f"a Flower deployment on {self.host} needs TLS certificates and SuperNode "
                "authentication keys; only loopback runs without them"
            )

    @property
    def control_address(self) -> str:
        return f"{self.host}:{self.ports.control}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the SuperLink, register the sites' keys when nodes authenticate, then start
        every SuperNode; stops what it started if any of it fails.

        Raises:
            DeploymentError: the SuperLink did not come up, or refused a site's key.
        """
        self._share_ckks_key()
        for host, port in self._superlink_addresses():
            _refuse_taken(host, port)
        self._superlink = self._spawn(
            "superlink", [str(_BIN / "flower-superlink"), *self._superlink_args()]
        )
        try:
            self._wait_for_superlink(timeout)
            if self.security.authenticated:
                # A SuperNode whose key the SuperLink does not know exits at once: register first.
                control = FlowerControl(
                    self.home, self.control_address, self.security.ca_certificate
                )
                for node in self.sites:
                    control.register(self._node_key(node.site, ".pub"))
        except BaseException:
            self.stop()
            raise
        for node in self.sites:
            self.start_node(node)

    def start_node(self, node: SiteNode) -> None:
        """(Re)start one site's SuperNode."""
        port = _free_port()
        config = (
            f"{SITE}={json.dumps(node.site)} {LAKE_DIR}={json.dumps(str(node.lake_dir))} "
            f"{LAKE_NAMESPACE}={json.dumps(node.lake_namespace)} "
            f"{HE_KEY}={json.dumps(str(self.ckks_key(node.site)))} "
            f"{HE_PUBLIC_CONTEXT}={json.dumps(str(self.ckks_key(node.site, '.pub')))}"
        )
        args = [
            str(_BIN / "flower-supernode"),
            "--superlink",
            f"{self.host}:{self.ports.fleet}",
            "--clientappio-api-address",
            f"127.0.0.1:{port}",
            "--node-config",
            config,
            *self._supernode_security(node.site),
        ]
        self._supernodes[node.site] = self._spawn(f"supernode-{node.site}", args)

    def restart(self, site: str) -> None:
        """Start again the SuperNode of a site whose process exited."""
        self.start_node(next(node for node in self.sites if node.site == site))

    def kill(self, site: str) -> None:
        """Kill a site's SuperNode at once (SIGKILL), as a crash would."""
        process = self._supernodes[site]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def pid(self, site: str) -> int:
        """The process id of a site's SuperNode."""
        return self._supernodes[site].pid

    def dead(self) -> list[str]:
        """The sites whose SuperNode has exited (``superlink`` when the SuperLink has)."""
        down = [site for site, p in self._supernodes.items() if p.poll() is not None]
        if self._superlink is not None and self._superlink.poll() is not None:
            down.insert(0, "superlink")
        return down

    def stop(self) -> None:
        """Stop every process: SuperNodes first, then the SuperLink."""
        processes = [*self._supernodes.values(), self._superlink]
        for process in processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in processes:
            if process is None:
                continue
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._supernodes.clear()
        self._superlink = None

    def ckks_key(self, site: str, suffix: str = ".key") -> Path:
        """The file of the sites' CKKS secret context in the site's own directory, or with
        ``suffix`` ``.pub`` the file of its public context."""
        return self.home / "sites" / site / f"ckks{suffix}"

    def _share_ckks_key(self) -> None:
        """A new CKKS key for the sites, written with its public context to each site's
        directory, readable by the owner only."""
        keys = KeyHolder()
        files = {".key": keys.secret_context(), ".pub": keys.public_context()}
        for node in self.sites:
            for suffix, content in files.items():
                path = self.ckks_key(node.site, suffix)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                scratch = path.with_suffix(".partial")
                descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "wb") as file:
                    file.write(content)
                os.replace(scratch, path)

    def _wait_for_superlink(self, timeout: float) -> None:
        """Wait until the SuperLink listens on all its ports: it binds them one after another
        (the Fleet API last), and one it cannot bind ends it after the others listen.

        Raises:
            DeploymentError: it exited (the end of its log says why) or did not listen in time.
        """
        assert self._superlink is not None
        addresses = self._superlink_addresses()
        deadline = time.monotonic() + timeout
        while addresses and time.monotonic() < deadline:
            if self._superlink.poll() is not None:
                log = (self.home / "logs" / "superlink.log").read_bytes()[-2000:]
                raise DeploymentError(
                    f"the SuperLink exited with {self._superlink.returncode}: "
                    f"{log.decode(errors='replace')}"
                )
            with socket.socket() as probe:
                if probe.connect_ex(addresses[0]) == 0:
                    addresses.pop(0)
                    continue
            time.sleep(0.2)
        if addresses:
            host, port = addresses[0]
            raise DeploymentError(f"the SuperLink did not listen on {host}:{port} in {timeout:g} s")

    def _superlink_addresses(self) -> list[tuple[str, int]]:
        """The SuperLink's listening addresses, in the order it binds them."""
        return [
            (self.host, self.ports.control),
            ("127.0.0.1", self.ports.serverappio),
            (self.host, self.ports.fleet),
        ]

    def _superlink_args(self) -> list[str]:
        args = [
            "--fleet-api-address",
            f"{self.host}:{self.ports.fleet}",
            "--control-api-address",
            f"{self.host}:{self.ports.control}",
            "--serverappio-api-address",
            f"127.0.0.1:{self.ports.serverappio}",
            "--disable-runtime-dependency-installation",
        ]
        if not self.security.secure:
            return [*args, "--insecure"]
        return [
            *args,
            "--ssl-ca-certfile",
            str(self.security.ca_certificate),
            "--ssl-certfile",
            str(self.security.certificate),
            "--ssl-keyfile",
            str(self.security.private_key),
            *(["--enable-supernode-auth"] if self.security.authenticated else []),
        ]

    def _supernode_security(self, site: str) -> list[str]:
        if not self.security.secure:
            return ["--insecure"]
        args = ["--root-certificates", str(self.security.ca_certificate)]
        if not self.security.authenticated:
            return args
        return [*args, "--auth-supernode-private-key", str(self._node_key(site))]

    def _node_key(self, site: str, suffix: str = "") -> Path:
        """A site's private key file, or with ``suffix`` ``.pub`` its public key file."""
        assert self.security.node_keys is not None
        return self.security.node_keys / f"{site}{suffix}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        log = (self.home / "logs" / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(  # noqa: S603 (Flower's own executables, fixed arguments)
                args, env=_environment(self.home), stdout=log, stderr=log
            )
        finally:
            log.close()


class FlowerControl:
    """Submits govplane's Flower app to a SuperLink and follows the run, through ``flwr``."""

    def __init__(self, home: Path, address: str, ca_certificate: Path | None = None) -> None:
        self._home = home
        self._address = address
        self._ca_certificate = ca_certificate

    def submit(self, plan: FederatedPlan) -> int:
        """Start a run of govplane's app with ``plan``; returns Flower's run id."""
        app = self._home / "app"
        app.mkdir(parents=True, exist_ok=True)
        (app / "pyproject.toml").write_text(FLOWER_APP)
        overrides = self._home / "run-config.toml"
        overrides.write_text(f"{RUN_CONFIG_KEY} = {json.dumps(plan.model_dump_json())}\n")
        done = self._flwr("run", str(app), "govplane", "--run-config", str(overrides))
        try:
            return int(json.loads(done)["run-id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeploymentError(f"flwr run gave no run id: {done[-2000:]}") from exc

    def status(self, run_id: int) -> str:
        """Flower's status of a run, such as ``running`` or ``finished:completed``."""
        listed = json.loads(self._flwr("ls", "govplane", "--run-id", str(run_id)))
        runs = listed.get("runs") or []
        if not runs:
            raise DeploymentError(f"the SuperLink knows no run {run_id}")
        return str(runs[0]["status"])

    def log(self, run_id: int) -> str:
        """The run's log as the SuperLink holds it (the ServerApp's output)."""
        return self._flwr("log", str(run_id), "govplane", "--show", json_format=False)

    def stop(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        self._flwr("stop", str(run_id), "govplane")

    def register(self, public_key: Path) -> int:
        """Register a SuperNode's public key (OpenSSH, NIST EC) with a SuperLink that
        authenticates nodes; returns the node id the SuperLink gave it."""
        done = self._flwr("supernode", "register", str(public_key), "govplane")
        try:
            return int(json.loads(done)["node-id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeploymentError(f"flwr supernode register gave no node id: {done}") from exc

    def nodes(self) -> dict[int, str]:
        """The SuperNodes the SuperLink knows, by node id: ``registered``, ``online``, ..."""
        listed = json.loads(self._flwr("supernode", "list", "govplane"))
        return {int(node["node-id"]): str(node["status"]) for node in listed.get("nodes") or []}

    def _flwr(self, *args: str, json_format: bool = True) -> str:
        self._configure()
        done = subprocess.run(  # noqa: S603 (Flower's own command line, fixed arguments)
            [str(_BIN / "flwr"), *args, *(["--format", "json"] if json_format else [])],
            env=_environment(self._home),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0 or (json_format and _failed(done.stdout)):
            raise DeploymentError(f"flwr {args[0]} failed: {(done.stdout + done.stderr)[-2000:]}")
        return done.stdout

    def _configure(self) -> None:
        """The ``flwr`` configuration: one SuperLink connection named ``govplane``."""
        self._home.mkdir(parents=True, exist_ok=True)
        security = (
            f"root-certificates = {json.dumps(str(self._ca_certificate))}\n"
            if self._ca_certificate
            else "insecure = true\n"
        )
        (self._home / "config.toml").write_text(
            f'[superlink]\ndefault = "govplane"\n\n[superlink.govplane]\n'
            f"address = {json.dumps(self._address)}\n{security}"
        )


def wait_for_outcome(
    control: FlowerControl, run_id: int, output: Path, timeout: float, poll: float = 1.0
) -> Mapping[str, object]:
    """The outcome the ServerApp wrote for a run, once the run finished.

    Raises:
        DeploymentError: the run finished without an outcome or did not finish in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if output.exists():
            outcome: Mapping[str, object] = json.loads(output.read_text())
            return outcome
        status = control.status(run_id)
        if status.startswith("finished") and not output.exists():
            time.sleep(poll)
            if not output.exists():
                raise DeploymentError(
                    f"Flower run {run_id} ended ({status}) with no outcome: "
                    f"{control.log(run_id)[-3000:]}"
                )
        time.sleep(poll)
    control.stop(run_id)
    raise DeploymentError(f"Flower run {run_id} did not finish within {timeout:g} s")


def _failed(output: str) -> bool:
    """Whether ``flwr ... --format json`` reports a failure: it exits with 0 all the same."""
    try:
        reported = json.loads(output)
    except ValueError:
        return False
    return isinstance(reported, dict) and reported.get("success") is False


def _environment(home: Path) -> dict[str, str]:
    """Flower's processes find each other's executables (``flower-superexec``,
    ``flwr-serverapp``, ``flwr-clientapp``) beside this interpreter."""
    path = os.pathsep.join([str(_BIN), os.environ.get("PATH", "")])
    # Unbuffered: a process's log shows what it did up to the moment it died.
    return {**os.environ, "FLWR_HOME": str(home), "PATH": path, "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _refuse_taken(host: str, port: int) -> None:
    """Refuse an address something already listens on: the SuperLink would bind its other
    ports, then exit when it reached this one.

    Raises:
        DeploymentError: the address cannot be bound.
    """
    with socket.socket() as probe:
        # As gRPC binds: a port left in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DeploymentError(
                f"the SuperLink cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
