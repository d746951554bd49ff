"""A federation whose REST APIs speak HTTPS, driven by the CLI: a PSI job end to end, the
CLI's pin (the node's certificate, a fingerprint, a CA), a key rotation, and an operator's
certificate issued by a CA."""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rainbridge.crypto.certs import fingerprint_pem
from rainbridge.demo.federation import Federation
from rainbridge.node.api_tls import fetch_api_certificate
from rainbridge.node.config import NodeConfig

pytestmark = pytest.mark.slow

JOB = """\
name: over-https
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank]
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAINBRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("https")
    (base / "data").mkdir()
    (base / "data" / "bank.csv").write_text(
        "customer_id,age\n" + "".join(f"c{i:05d},{i % 90}\n" for i in range(0, 400))
    )
    (base / "data" / "telecom.csv").write_text(
        "customer_id\n" + "".join(f"c{i:05d}\n" for i in range(200, 700))
    )
    f = Federation(base, ["bank", "telecom"], timeout=8, api_tls="on")
    f.start()
    try:
        f.pin_all()
        f.add_dataset("bank", "customers", base / "data" / "bank.csv")
        f.add_dataset("telecom", "subscribers", base / "data" / "telecom.csv")
        yield f
    finally:
        f.stop()


def test_a_psi_job_through_https_apis_and_the_cli(fed: Federation, tmp_path: Path) -> None:
    bank = fed.nodes["bank"]
    assert bank.api.startswith("https://127.0.0.1:")
    assert bank.info["api_fingerprint"] == bank.info["fingerprint"]  # the node's own cert
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    row = fed.cli_json("job", "submit", str(job), node="bank")
    assert row["status"] == "succeeded", row
    out = fed.cli_json("job", "result", row["id"], node="bank")["result"]["components"]["psi"]
    got = pq.read_table(out["outputs"]["intersection"]["path"]).column("customer_id").to_pylist()
    assert got == [f"c{i:05d}" for i in range(200, 400)]
    # the console is served over the same HTTPS
    page = httpx.get(bank.api + "/", verify=bank.verify)
    assert page.status_code == 200 and "<html" in page.text.lower()
    # plain HTTP on the HTTPS port gets no answer from the API
    try:
        status: int | None = httpx.get(bank.api.replace("https:", "http:") + "/v1/node").status_code
    except httpx.HTTPError:
        status = None
    assert status in (None, 400)


def test_the_cli_pins_the_server_before_it_sends_the_token(fed: Federation) -> None:
    bank, telecom = fed.nodes["bank"], fed.nodes["telecom"]
    # the bank's directory with the telecom's address: the certificate is not the pinned one
    r = run_cli("node", "info", "--dir", str(bank.dir), "--api", telecom.api)
    assert r.returncode == 4 and "did not present" in r.stderr and "token was not sent" in r.stderr
    # no directory: a fingerprint pins the server, the token comes from the environment
    token = (bank.dir / "api.token").read_text().strip()
    env = {"RAINBRIDGE_API": bank.api, "RAINBRIDGE_TOKEN": token}
    r = run_cli(
        "node",
        "info",
        "--json",
        env={**env, "RAINBRIDGE_API_FINGERPRINT": bank.info["fingerprint"]},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "bank"
    r = run_cli(
        "node", "info", env={**env, "RAINBRIDGE_API_FINGERPRINT": telecom.info["fingerprint"]}
    )
    assert r.returncode == 4 and "not the pinned" in r.stderr
    # neither a directory nor a pin: a self-signed certificate is not trusted
    r = run_cli("node", "info", env=env)
    assert r.returncode == 4 and "token was not sent" in r.stderr, r.stderr
    # and never a token in plain HTTP to another machine
    r = run_cli("node", "info", "--api", "http://192.0.2.10:8700", env={"RAINBRIDGE_TOKEN": token})
    assert r.returncode == 2 and "plain HTTP" in r.stderr


def test_after_a_key_rotation_the_api_presents_the_new_certificate(fed: Federation) -> None:
    telecom = fed.nodes["telecom"]
    out = fed.cli_json("node", "rotate-keys", node="telecom")
    port = int(telecom.api.rsplit(":", 1)[1])
    assert fingerprint_pem(fetch_api_certificate("127.0.0.1", port)) == out["new"]
    assert fed.cli_json("node", "info", node="telecom")["name"] == "telecom"


def _ca_and_leaf(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it issued for localhost and 127.0.0.1 (an operator's PKI)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bank test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "api.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (d / "api.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "ca.pem", d / "api.pem", d / "api.key"


def test_an_operator_certificate_issued_by_a_ca(tmp_path: Path) -> None:
    ca, cert, key = _ca_and_leaf(tmp_path)
    f = Federation(tmp_path / "nodes", ["bureau"], timeout=8)
    f.init()
    d = f.nodes["bureau"].dir
    # re-create the node with the operator's certificate (init refuses an existing node)
    cfg = NodeConfig.load(d)
    cfg.api_cert, cfg.api_key = str(cert), str(key)
    cfg.save()
    f.nodes["bureau"].info["api"] = f"https://127.0.0.1:{cfg.api_port}"
    f._start_one(f.nodes["bureau"])
    try:
        node = f.nodes["bureau"]
        f._wait_ready(node)  # over HTTPS, pinned to the operator's certificate
        r = run_cli("node", "info", "--dir", str(d), "--json")  # the CLI pins it too
        assert r.returncode == 0 and json.loads(r.stdout)["name"] == "bureau", r.stderr
        # a remote client with the bank's CA verifies the name, as a browser would
        env = {
            "RAINBRIDGE_API": f"https://localhost:{cfg.api_port}",
            "RAINBRIDGE_TOKEN": (d / "api.token").read_text().strip(),
        }
        r = run_cli("node", "info", "--json", env={**env, "RAINBRIDGE_API_CA": str(ca)})
        assert r.returncode == 0 and json.loads(r.stdout)["name"] == "bureau", r.stderr
        r = run_cli("node", "info", env=env)  # the CA is not in the system's store
        assert r.returncode == 4 and "token was not sent" in r.stderr
        ctx = ssl.create_default_context(cafile=str(ca))
        assert httpx.get(env["RAINBRIDGE_API"] + "/", verify=ctx).status_code == 200
    finally:
        f.stop()
