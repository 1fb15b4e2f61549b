"""A real JWKS endpoint on loopback and real signing keys, for OIDC tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://login.example.test/"
AUDIENCE = "govplane"


@dataclass
class Jwks:
    """The key set the server publishes; tests swap keys in and out."""

    keys: dict[str, Any] = field(default_factory=dict)
    fetches: int = 0
    up: bool = True

    def publish(self, kid: str, private_key: Any) -> None:
        public = private_key.public_key()
        algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(public))
        self.keys[kid] = {**jwk, "kid": kid, "use": "sig"}

    def document(self) -> bytes:
        return json.dumps({"keys": list(self.keys.values())}).encode()


@dataclass
class Issuer:
    """Signs tokens the way an OIDC provider would."""

    jwks: Jwks
    url: str
    rsa_key: Any
    ec_key: Any

    def token(
        self, kid: str = "rsa-1", key: Any = None, algorithm: str = "RS256", **claims: Any
    ) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signing_key = key if key is not None else self.rsa_key
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    jwks = Jwks()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks.publish("rsa-1", rsa_key)
    jwks.publish("ec-1", ec_key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            jwks.fetches += 1
            if not jwks.up:
                self.send_error(503)
                return
            body = jwks.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Issuer(jwks, f"http://127.0.0.1:{server.server_port}/jwks", rsa_key, ec_key)
    finally:
        server.shutdown()
        server.server_close()
