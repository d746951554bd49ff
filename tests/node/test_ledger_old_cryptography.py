"""The exported bundle's verifier runs on the oldest `cryptography` its README names
(38.0.4, Debian 12's), in a virtual environment of its own with nothing else installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from node_helpers import make_config

from rainbridge.audit import verify_ledger as v
from rainbridge.node.ledger import export_directory
from rainbridge.node.service import NodeService

OLD = "38.0.4"


@pytest.fixture(scope="module")
def old_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("cryptography-38")
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    try:
        got = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--only-binary",
                ":all:",
                f"cryptography=={OLD}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip could not install cryptography {OLD} within 5 minutes")
    if got.returncode != 0:
        pytest.skip(f"pip cannot install cryptography {OLD}: {got.stderr.strip()[-300:]}")
    return python


@pytest.mark.parametrize("suite", ["standard", "gm"])
def test_the_bundle_verifies_under_cryptography_38(
    old_python: Path, tmp_path: Path, suite: str
) -> None:
    node = NodeService(make_config(tmp_path / "bank", "bank", suite))
    node.storage.log("dataset_read", {"dataset": "customers", "rows": 1000, "grants": {}}, "j")
    record = {"job_id": "j", "parties": ["bank"], "status": "succeeded", "parts": {}}
    sig = node.keys.ledger_key.sign(v.RECORD_DOMAIN + v.canonical(record)).hex()
    node.storage.log(
        "job_record",
        {"record": record, "signatures": {"bank": {"key": node.keys.fingerprint, "sig": sig}}},
        "j",
    )
    node.ledger.flush()
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    assert (
        f"version {'.'.join(map(str, v.MIN_CRYPTOGRAPHY))} or later"
        in (path / "README.txt").read_text()
    )
    fp = node.keys.fingerprint

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # from the bundle's own folder, so that no Rainbridge can be imported
        return subprocess.run(
            [str(old_python), "verify_ledger.py", ".", *args],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    version = subprocess.run(
        [str(old_python), "-c", "import cryptography; print(cryptography.__version__)"],
        capture_output=True,
        text=True,
    )
    assert version.stdout.strip() == OLD
    ok = run("--fingerprint", fp)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ledger of bank, 3 entries, 1 job"), ok
    assert run("--fingerprint", "00" * 32).returncode == 8
    rows = [json.loads(line) for line in (path / "entries.jsonl").read_text().splitlines()]
    rows[1]["entry"]["body"]["rows"] = 10
    (path / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = run("--fingerprint", fp)
    assert bad.returncode == 8 and "edited" in bad.stdout, bad


def test_certificates_are_read_without_cryptography_x509(tmp_path: Path) -> None:
    from cryptography import x509

    node = NodeService(make_config(tmp_path / "bank", "bank"))
    pem = node.keys.cert_pem
    cert = x509.load_pem_x509_certificate(pem.encode())
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(v.LEDGER_KEY_OID))
    assert v.common_name(pem) == "bank"
    assert v.fingerprint_pem(pem) == node.keys.fingerprint
    assert v.ledger_key_of(pem) == (node.keys.ledger_key.alg, node.keys.ledger_key.public_bytes())
    assert ext.value.value[0] == 0x04  # type: ignore[attr-defined]
    for broken in ("", pem.replace("M", "A", 3), pem[:200] + "\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ValueError):
            v.ledger_key_of(broken)
