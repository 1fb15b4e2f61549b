"""The embedded serving backend: one local MLflow scoring server process per deployment.

``mlflow models serve --env-manager local`` runs with this interpreter on a loopback port and
serves the verified artifact folder it is given. A deployment is ready once ``/health`` answers;
redeploying starts the new server first and stops the old one only once the new one is ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from connectors.serving.base import DeploymentSpec, Endpoint, EndpointStatus, ServingError


class LocalServingConfig(BaseModel):
    """How local scoring servers are run.

    Attributes:
        log_dir: where each server's output is written (``NAME.log``).
        start_timeout_seconds: how long a server may take to answer ``/health``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "local"
    log_dir: Path
    start_timeout_seconds: float = Field(default=120, gt=0)


@dataclass(frozen=True)
class _Server:
    url: str
    process: subprocess.Popen[bytes]
    version: int


class LocalScoringServers:
    """A :class:`connectors.serving.Serving` of local MLflow scoring server processes.

    Args:
        config: where logs go and how long a start may take.
        free_port: picks a loopback port nothing listens on.
    """

    kind = "local"

    def __init__(self, config: LocalServingConfig, free_port: Callable[[], int]) -> None:
        self._config = config
        self._free_port = free_port
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()

    def deploy(self, spec: DeploymentSpec) -> Endpoint:
        """Start a scoring server on ``spec.model_dir`` and wait until it is healthy.

        Raises:
            ServingError: no model folder was given, or the server exited or did not answer
                in time (its log is named).
        """
        if spec.model_dir is None:
            raise ServingError("a local deployment serves a model folder; none was given")
        port = self._free_port()
        self._config.log_dir.mkdir(parents=True, exist_ok=True)
        log = self._config.log_dir / f"{spec.name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "--model-uri",
                    str(spec.model_dir),
                    "--env-manager",
                    "local",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                env=_environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers stop with it
            )
        server = _Server(f"http://127.0.0.1:{port}", process, spec.version)
        try:
            self._wait_until_healthy(server, log)
        except BaseException:
            _stop(server)
            raise
        with self._lock:
            previous = self._servers.get(spec.name)
            self._servers[spec.name] = server
        if previous is not None:
            _stop(previous)
        return self._endpoint(spec.name, server)

    def status(self, name: str) -> Endpoint:
        """Ready while the process runs and ``/health`` answers; stopped or failed otherwise."""
        with self._lock:
            server = self._servers.get(name)
        if server is None:
            return Endpoint(name, None, EndpointStatus.STOPPED, {})
        return self._endpoint(name, server)

    def predict(self, name: str, frame: pd.DataFrame) -> list[Any]:
        """POST the rows to the server's ``/invocations`` (pandas split orientation).

        Raises:
            ServingError: no such deployment, or the server refused the rows.
        """
        with self._lock:
            server = self._servers.get(name)
        if server is None:
            raise ServingError(f"no local deployment named {name!r}")
        body = {"dataframe_split": frame.to_dict(orient="split")}
        response = httpx.post(f"{server.url}/invocations", json=body, timeout=60)
        if response.status_code != 200:
            raise ServingError(
                f"deployment {name!r} answered {response.status_code}: {response.text[:500]}"
            )
        predictions: list[Any] = response.json()["predictions"]
        return predictions

    def undeploy(self, name: str) -> None:
        """Stop the deployment's server (nothing happens when there is none)."""
        with self._lock:
            server = self._servers.pop(name, None)
        if server is not None:
            _stop(server)

    def close(self) -> None:
        """Stop every server (on shutdown)."""
        with self._lock:
            names = list(self._servers)
        for name in names:
            self.undeploy(name)

    def _endpoint(self, name: str, server: _Server) -> Endpoint:
        healthy = server.process.poll() is None and _healthy(server.url)
        return Endpoint(
            name,
            f"{server.url}/invocations",
            EndpointStatus.READY if healthy else EndpointStatus.FAILED,
            {"pid": server.process.pid, "version": server.version},
        )

    def _wait_until_healthy(self, server: _Server, log: Path) -> None:
        deadline = time.monotonic() + self._config.start_timeout_seconds
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServingError(
                    f"the scoring server exited with {server.process.returncode} (see {log})"
                )
            if _healthy(server.url):
                return
            time.sleep(0.2)
        raise ServingError(
            f"the scoring server did not answer within {self._config.start_timeout_seconds:g} s "
            f"(see {log})"
        )


def _environment() -> dict[str, str]:
    """This environment, with this interpreter's scripts first on the PATH: MLflow starts the
    scoring server as ``uvicorn`` through a shell."""
    scripts = str(Path(sys.executable).parent)
    path = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true"}


def _healthy(url: str) -> bool:
    return _status(url) == 200


def _status(url: str) -> int | None:
    """The status of the server's health route; None when nothing answers."""
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code
    except httpx.TransportError:
        return None


def _stop(server: _Server) -> None:
    """Stop the server's whole process group (MLflow's launcher and the uvicorn workers it
    starts) until nothing answers on its port; SIGKILL what outlives 15 s.

    Raises:
        ServingError: the server still answers after SIGKILL.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, sig)
        if _stopped(server, 15):
            return
    raise ServingError(f"the scoring server at {server.url} did not stop")


def _stopped(server: _Server, timeout: float) -> bool:
    """Whether the launcher exited and the port went quiet within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    while _status(server.url) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
