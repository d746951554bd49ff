"""Published known-answer vectors through the Python face (``rainbridge.crypto.groups``).

RFC 7748 §5.2 and §6.1, all of Wycheproof's x25519 cases, RFC 9496 Appendix A, RFC 9380's
expand_message_xmd (SHA-512) and RFC 9497's ristretto255 blinding and evaluation. The files
live in ``rust/tests/vectors`` (see its README for provenance) and serve ``cargo test`` too.
"""

from __future__ import annotations

import hashlib

import pytest
from crypto_helpers import BACKENDS, load

from rainbridge import _core
from rainbridge.crypto.groups import Curve25519Suite, Ristretto255Suite, get_suite
from rainbridge.errors import InvalidElementError

NINE = (9).to_bytes(32, "little")


@pytest.mark.parametrize("backend", BACKENDS)
def test_rfc7748_scalar_mult(backend: str) -> None:
    s = Curve25519Suite(backend)
    v = load("rfc7748.json")
    for case in v["scalar_mult"]:
        out = s.mul(bytes.fromhex(case["scalar"]), bytes.fromhex(case["u"]))
        assert out.hex() == case["out"]
    # both cases in one batch need one scalar; the vectors have two, so also check batching
    k = bytes.fromhex(v["scalar_mult"][0]["scalar"])
    us = b"".join(bytes.fromhex(c["u"]) for c in v["scalar_mult"])
    assert s.mul(k, us)[:32].hex() == v["scalar_mult"][0]["out"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rfc7748_iterated(backend: str) -> None:
    s = Curve25519Suite(backend)
    v = load("rfc7748.json")["iterated"]
    k = u = NINE
    for i in range(1, 1001):
        k, u = s.mul(k, u), k
        if i == 1:
            assert k.hex() == v["1"]
    assert k.hex() == v["1000"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rfc7748_diffie_hellman(backend: str) -> None:
    s = Curve25519Suite(backend)
    dh = load("rfc7748.json")["dh"]
    a, b = bytes.fromhex(dh["alice_private"]), bytes.fromhex(dh["bob_private"])
    assert s.public_key(a).hex() == dh["alice_public"]
    assert s.public_key(b).hex() == dh["bob_public"]
    assert s.mul(a, NINE).hex() == dh["alice_public"]
    shared = s.mul(a, bytes.fromhex(dh["bob_public"]))
    assert shared == s.mul(b, bytes.fromhex(dh["alice_public"]))
    assert shared.hex() == dh["shared"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wycheproof_x25519(backend: str) -> None:
    s = Curve25519Suite(backend)
    tests = [t for g in load("wycheproof_x25519_test.json")["testGroups"] for t in g["tests"]]
    assert len(tests) == 518
    refused = 0
    for t in tests:
        k, u = bytes.fromhex(t["private"]), bytes.fromhex(t["public"])
        assert t["result"] in ("valid", "acceptable")
        if set(t["shared"]) == {"0"}:
            # low-order public key: refused, the index named, the key not echoed
            with pytest.raises(InvalidElementError, match="index 0") as exc:
                s.mul(k, u)
            assert t["private"] not in str(exc.value)
            refused += 1
        else:
            assert s.mul(k, u).hex() == t["shared"], t["tcId"]
    assert refused == 31


def test_rfc9496_small_multiples() -> None:
    s = Ristretto255Suite()
    encodings = load("rfc9496.json")["small_multiples"]
    assert len(encodings) == 16
    one = (1).to_bytes(32, "little")
    for i, enc in enumerate(encodings[1:], start=1):
        assert _core.ristretto_base_mul(i.to_bytes(32, "little")).hex() == enc
        s.validate(bytes.fromhex(enc))
        assert s.mul(one, bytes.fromhex(enc)).hex() == enc  # decode, re-encode: round trip
    # (i * B) * j == (i * j) * B, through one batch
    batch = b"".join(bytes.fromhex(e) for e in encodings[1:4])
    out = s.mul((5).to_bytes(32, "little"), batch)
    assert out.hex() == encodings[5] + encodings[10] + encodings[15]
    # 0 * B is the identity, which is refused as a received element
    with pytest.raises(InvalidElementError, match="identity"):
        s.mul(one, bytes.fromhex(encodings[0]))


def test_rfc9496_bad_encodings_rejected() -> None:
    s = Ristretto255Suite()
    bad = load("rfc9496.json")["bad_encodings"]
    assert len(bad) == 29
    good = bytes.fromhex(load("rfc9496.json")["small_multiples"][1])
    for enc in bad:
        with pytest.raises(InvalidElementError, match="index 1"):
            s.mul(s.random_scalar(), good + bytes.fromhex(enc) + good)
        with pytest.raises(InvalidElementError, match="index 0"):
            s.validate(bytes.fromhex(enc))


def test_rfc9496_from_uniform_bytes() -> None:
    v = load("rfc9496.json")
    for case in v["from_uniform_bytes_sha512"]:
        h = hashlib.sha512(case["input"].encode()).digest()
        assert _core.ristretto_from_uniform_bytes(h).hex() == case["element"]
    eq = v["equivalent_uniform_bytes"]
    out = _core.ristretto_from_uniform_bytes(b"".join(bytes.fromhex(x) for x in eq["inputs"]))
    assert out.hex() == eq["element"] * len(eq["inputs"])


def test_expand_message_xmd_sha512() -> None:
    v = load("expand_message_xmd_SHA512_38.json")
    assert len(v["tests"]) == 10
    for case in v["tests"]:
        n = int(case["len_in_bytes"], 16)
        out = _core.expand_message_xmd_sha512(case["msg"].encode(), v["DST"].encode(), n)
        assert out.hex() == case["uniform_bytes"]


def test_rfc9497_ristretto255_blind_and_evaluate() -> None:
    checked = 0
    for suite in load("rfc9497_ristretto255.json")["suites"]:
        s = Ristretto255Suite(dst=bytes.fromhex(suite["groupDST"]))
        sk = bytes.fromhex(suite["skSm"])
        if "pkSm" in suite:
            assert _core.ristretto_base_mul(sk).hex() == suite["pkSm"]
        for vec in suite["vectors"]:
            inputs = [bytes.fromhex(x) for x in vec["Input"].split(",")]
            blinds = vec["Blind"].split(",")
            blinded = vec["BlindedElement"].split(",")
            evaluated = vec["EvaluationElement"].split(",")
            for i, msg in enumerate(inputs):
                b = s.hash_mul(bytes.fromhex(blinds[i]), msg, [0, len(msg)])
                assert b.hex() == blinded[i]
                if suite["mode"] != 2:  # POPRF evaluates with a tweaked key
                    assert s.mul(sk, b).hex() == evaluated[i]
                checked += 1
    assert checked == 10


def test_default_suite_is_curve25519() -> None:
    assert get_suite().name == "curve25519"
    assert get_suite("ristretto255").name == "ristretto255"
    assert get_suite().element_size == get_suite("ristretto255").element_size == 32
