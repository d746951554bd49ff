"""The core through its Python face: published vectors and properties against references."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.crypto.groups import get_suite
from rainbridge.errors import ConfigError, InvalidElementError

VECTORS = Path(__file__).resolve().parents[2] / "rust" / "tests" / "vectors"
BACKENDS = ["portable"] + (["avx512ifma"] if _core.build_info()["avx512ifma"] else [])


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def items(values: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(v) for v in values])
    return b"".join(values), offsets


@pytest.mark.parametrize("backend", BACKENDS)
def test_rfc7748(backend: str) -> None:
    v = load("rfc7748.json")
    for case in v["scalar_mult"]:
        out = _core.x25519_mul(bytes.fromhex(case["scalar"]), bytes.fromhex(case["u"]), backend)
        assert out.hex() == case["out"]
    k = u = (9).to_bytes(32, "little")
    for _ in range(1000):
        k, u = _core.x25519_mul(k, u, backend), k
    assert k.hex() == v["iterated"]["1000"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wycheproof_x25519(backend: str) -> None:
    tests = [t for g in load("wycheproof_x25519_test.json")["testGroups"] for t in g["tests"]]
    assert len(tests) == 518
    for t in tests:
        k, u = bytes.fromhex(t["private"]), bytes.fromhex(t["public"])
        if set(t["shared"]) == {"0"}:
            with pytest.raises(_core.InvalidElementError):
                _core.x25519_mul(k, u, backend)
        else:
            assert _core.x25519_mul(k, u, backend).hex() == t["shared"], t["tcId"]


def test_rfc9496() -> None:
    v = load("rfc9496.json")
    s = get_suite("ristretto255")
    for i, enc in enumerate(v["small_multiples"][1:], start=1):
        assert _core.ristretto_base_mul(i.to_bytes(32, "little")).hex() == enc
        _core.ristretto_validate(bytes.fromhex(enc))
    for enc in v["bad_encodings"] + [v["small_multiples"][0]]:
        with pytest.raises(InvalidElementError):
            s.mul(s.random_scalar(), bytes.fromhex(enc))
    for case in v["from_uniform_bytes_sha512"]:
        h = hashlib.sha512(case["input"].encode()).digest()
        assert _core.ristretto_from_uniform_bytes(h).hex() == case["element"]
    x = load("expand_message_xmd_sha512.json")
    for case in x["cases"]:
        out = _core.expand_message_xmd_sha512(case["msg"].encode(), x["dst"].encode(), 32)
        assert out.hex() == case["out"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.sampled_from(BACKENDS))
def test_curve25519_matches_openssl_one_at_a_time(values: list[bytes], backend: str) -> None:
    data, offsets = items(values)
    k = _core.x25519_random_scalar()
    out = _core.x25519_hash_mul(k, data, offsets, backend)
    sk = X25519PrivateKey.from_private_bytes(k)
    for i, v in enumerate(values):
        u = hashlib.sha256(v).digest()
        assert out[32 * i : 32 * i + 32] == sk.exchange(X25519PublicKey.from_public_bytes(u))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.binary(max_size=64), max_size=16), st.sampled_from(["curve25519", "ristretto255"])
)
def test_masking_commutes(values: list[bytes], curve: str) -> None:
    s = get_suite(curve)
    data, offsets = items(values)
    a, b = s.random_scalar(), s.random_scalar()
    assert s.mul(b, s.hash_mul(a, data, offsets)) == s.mul(a, s.hash_mul(b, data, offsets))
    assert s.hash_mul(a, data, offsets) == s.mul(a, s.hash_to_group(data, offsets))


def test_bad_inputs_are_typed_errors() -> None:
    s = get_suite("curve25519")
    with pytest.raises(InvalidElementError):
        s.mul(s.random_scalar(), b"\x00" * 32)  # u = 0: low order
    with pytest.raises(InvalidElementError):
        s.mul(s.random_scalar(), b"\x01" * 33)  # ragged buffer
    with pytest.raises(InvalidElementError):
        s.mul(b"short", b"\x09" + b"\x00" * 31)
    with pytest.raises(ConfigError):
        s.hash_to_group(b"abc", np.array([0, 5], dtype=np.int64))  # offset past the data
    with pytest.raises(ConfigError):
        s.hash_to_group(b"abc", np.array([2, 1], dtype=np.int64))
    r = get_suite("ristretto255")
    with pytest.raises(InvalidElementError):
        r.mul(b"\xff" * 32, _core.ristretto_base_mul((1).to_bytes(32, "little")))
    with pytest.raises(ConfigError):
        get_suite("p256")
    assert s.hash_mul(s.random_scalar(), b"", np.zeros(1, dtype=np.int64)) == b""
