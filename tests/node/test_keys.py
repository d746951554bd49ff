"""Keys at rest: encrypted under the master key (environment or file), per suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rainbridge.errors import ConfigError, CryptoError
from rainbridge.node.keys import MASTER_KEY_ENV, NodeKeys, init_node_keys


@pytest.mark.parametrize("suite", ["standard", "gm"])
def test_keys_are_encrypted_and_open_only_with_the_master_key(
    tmp_path: Path, suite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = init_node_keys(tmp_path, "bank", suite)
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "node.key").read_bytes()
    sealed = json.loads((tmp_path / "ledger.key").read_text())
    assert sealed["suite"] == suite and keys.ledger_key.private_bytes().hex() not in str(sealed)
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0
    again = NodeKeys.load(tmp_path, suite)
    assert again.fingerprint == keys.fingerprint
    assert again.ledger_key.public_bytes() == keys.ledger_key.public_bytes()
    # another master key opens nothing
    monkeypatch.setenv(MASTER_KEY_ENV, "11" * 32)
    with pytest.raises(ConfigError, match="wrong master key"):
        NodeKeys.load(tmp_path, suite)
    # a sealed key swapped between nodes does not open (bound to its certificate)
    monkeypatch.delenv(MASTER_KEY_ENV)
    other = tmp_path / "other"
    init_node_keys(other, "tax", suite)
    (tmp_path / "master.key").write_text((other / "master.key").read_text())
    with pytest.raises((ConfigError, CryptoError)):
        NodeKeys.load(tmp_path, suite)


def test_the_master_key_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "ab" * 32)
    keys = init_node_keys(tmp_path / "n", "bank")
    assert not (tmp_path / "n" / "master.key").exists()  # none written when one is given
    assert NodeKeys.load(tmp_path / "n", "standard").fingerprint == keys.fingerprint
    monkeypatch.setenv(MASTER_KEY_ENV, "too short")
    with pytest.raises(ConfigError, match="32 bytes"):
        NodeKeys.load(tmp_path / "n", "standard")
    monkeypatch.delenv(MASTER_KEY_ENV)
    with pytest.raises(ConfigError, match="no master key"):
        NodeKeys.load(tmp_path / "n", "standard")
    key_file = tmp_path / "secrets" / "bank.key"
    init_node_keys(tmp_path / "m", "bank", master_key_file=str(key_file))
    assert key_file.exists() and not (tmp_path / "m" / "master.key").exists()
    NodeKeys.load(tmp_path / "m", "standard", str(key_file))
    with pytest.raises(ConfigError, match="sealed under the 'standard' suite"):
        NodeKeys.load(tmp_path / "m", "gm", str(key_file))
