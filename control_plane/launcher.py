"""Real ``govplane`` processes on loopback: ``init`` a data directory, then ``serve`` it.

Used wherever a whole server must run as its own OS process (end-to-end tests, replicas, crash
tests, benchmarks), so that all of them start it, wait for it and stop it the same way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

GOVPLANE = (sys.executable, "-m", "control_plane")
"""The command line of ``govplane`` with this interpreter."""


@dataclass(frozen=True)
class ServerProcess:
    """A running ``govplane serve``: its base URL and its OS process."""

    url: str
    process: subprocess.Popen[bytes]


def init_data_dir(data_dir: Path, env: Mapping[str, str] | None = None, *args: str) -> str:
    """``govplane init --json`` on ``data_dir`` (plus ``args``); returns the admin token."""
    done = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [*GOVPLANE, "init", "--data-dir", str(data_dir), "--json", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    token: str = json.loads(done.stdout)["admin_token"]
    return token


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now (picked
    one by one, the kernel may hand out a port it just handed out)."""
    with ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@contextmanager
def serve(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    startup_seconds: float = 180.0,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """A ``govplane serve`` process, stopped on exit.

    Args:
        data_dir: the data directory it serves (``govplane init`` must have run on it).
        env: ``GOVPLANE_*`` settings for the process, on top of this process's environment.
        log: a file its output is appended to (discarded otherwise).
        startup_seconds: how long ``GET /api/v1/health`` may take to answer 200.
        host: the interface it listens on (loopback unless told).
        port: the port it listens on (a free one unless told).

    Raises:
        RuntimeError: the server exited or did not answer in time.
    """
    port = port or free_port()
    command = [*GOVPLANE, "serve", "--data-dir", str(data_dir), "--host", host, "--port", str(port)]
    with open(log, "ab") if log is not None else open(os.devnull, "wb") as output:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            command, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT
        )
        server = ServerProcess(f"http://{_reachable(host)}:{port}", process)
        try:
            _wait_until_healthy(server, startup_seconds)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(30)


def _reachable(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (compared, not bound)


def _wait_until_healthy(server: ServerProcess, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"govplane serve exited with {server.process.returncode}")
        try:
            if httpx.get(f"{server.url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"govplane serve did not answer within {seconds:g} s")
