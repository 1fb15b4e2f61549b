"""A Flower deployment with TLS and SuperNode authentication, as it must run off loopback.

The test makes its own CA, a SuperLink certificate for 127.0.0.1 signed by it, and an OpenSSH
ECDSA key pair per site; the SuperLink accepts only the nodes whose keys the deployment
registered, and the Control API only clients that trust the CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from control_plane.sample_data import ADULT_WORKCLASS_SITES as WORKCLASS_SITES
from control_plane.settings import Settings
from privacy.federated import Deployment, DeploymentError, FlowerControl, Security, SiteNode
from tests.federated.conftest import Federation, adult_partition

SITES = sorted(WORKCLASS_SITES)[:2]
IMPOSTOR = SITES[0]


@dataclass(frozen=True)
class Pki:
    """The CA, the SuperLink's certificate and key, the sites' node keys; and for strangers, a
    key pair for a registered site that is never registered, and another CA."""

    ca: Path
    certificate: Path
    private_key: Path
    node_keys: Path
    impostor_keys: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: str
) -> x509.CertificateBuilder:
    """A day's certificate for ``name``'s ``key``, to be signed by ``issuer``."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(folder: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (PEM file ``NAME.pem``) and the key it signs with."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _certificate(name, key, name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path, key


def _node_keys(folder: Path, sites: list[str]) -> Path:
    """``SITE`` and ``SITE.pub`` per site: an OpenSSH ECDSA P-384 key pair, as Flower wants."""
    folder.mkdir()
    for site in sites:
        key = ec.generate_private_key(ec.SECP384R1())
        (folder / site).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        (folder / f"{site}.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
        )
    return folder


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca, ca_key = _ca(folder, "govplane-test-ca")
    other_ca, _ = _ca(folder, "stranger-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _certificate("superlink", key, "govplane-test-ca")
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "superlink.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "superlink.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(
        ca=ca,
        certificate=folder / "superlink.pem",
        private_key=folder / "superlink.key",
        node_keys=_node_keys(folder / "nodes", SITES),
        impostor_keys=_node_keys(folder / "impostor", [IMPOSTOR]),
        other_ca=other_ca,
    )


@pytest.fixture
def settings(settings: Settings, pki: Pki) -> Settings:
    """The federation's settings, with the SuperLink's TLS and the sites' node keys."""
    return settings.model_copy(
        update={
            "flower_ca_certificate": pki.ca,
            "flower_certificate": pki.certificate,
            "flower_private_key": pki.private_key,
            "flower_node_keys_dir": pki.node_keys,
        }
    )


def _refused(home: Path, address: str, ca: Path | None, public_key: Path) -> str:
    """What a client that does not trust the SuperLink's CA gets when it registers a key."""
    with pytest.raises(DeploymentError) as refused:
        FlowerControl(home, address, ca).register(public_key)
    return str(refused.value)


def _exited(deployment: Deployment, site: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while site not in deployment.dead():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.mark.timeout(900)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_secure_deployment_trains_with_registered_nodes_and_refuses_strangers(
    federation: Federation, pki: Pki, tmp_path: Path
) -> None:
    # Given two sites, each with a key pair, and a deployment serving TLS that authenticates nodes
    for site in SITES:
        federation.add_site(site, adult_partition(1500, WORKCLASS_SITES[site], False), "internal")
    federation.register_model("income-secure")
    deployment = federation.start_flower()
    control_address = deployment.control_address
    control = FlowerControl(tmp_path / "operator", control_address, pki.ca)
    # When a SuperNode claims a registered site with a key the SuperLink was never given
    settings = federation.settings
    impostor = Deployment(
        tmp_path / "impostor",
        [SiteNode(IMPOSTOR, settings.lake_dir, settings.lake_namespace)],
        deployment.ports,
        security=Security(pki.ca, pki.certificate, pki.private_key, pki.impostor_keys),
    )
    impostor.start_node(impostor.sites[0])
    try:
        # And, while a federated run trains, clients without the CA try to register its key
        impostor_key = pki.impostor_keys / f"{IMPOSTOR}.pub"
        with ThreadPoolExecutor(2) as pool:
            refusals = [
                pool.submit(_refused, tmp_path / name, control_address, ca, impostor_key)
                for name, ca in (("insecure", None), ("stranger", pki.other_ca))
            ]
            run = federation.train("income-secure", SITES, rounds=1, min_sites=2)
            refused = [refusal.result() for refusal in refusals]
        # Then the run completes with the registered sites, over TLS
        assert run["state"] == "succeeded", run["error"]
        assert run["outputs"]["participants"] == SITES
        # And the Control API refused both clients
        assert all("Connection to the SuperLink is unavailable" in m for m in refused), refused
        # And the impostor's node was refused by the SuperLink and exited, never joining
        assert _exited(impostor, IMPOSTOR, 60)
        superlink_log = (deployment.home / "logs" / "superlink.log").read_text(errors="replace")
        assert "No SuperNode found with the given public key" in superlink_log
        assert deployment.dead() == []
        assert sorted(control.nodes().values()) == ["online", "online"]
    finally:
        impostor.stop()
