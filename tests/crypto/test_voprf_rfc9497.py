"""RFC 9497 VOPRF (ristretto255-SHA512, mode 1) against all of the RFC's test vectors
(Appendix A.1.2: batches of 1 and 2, proofs with the listed ``r``), and hypothesis
properties: a proof for another key, element or evaluation is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.crypto import oprf, voprf
from rainbridge.errors import InvalidElementError, ProofError

VECTORS = Path(__file__).resolve().parents[2] / "rust" / "tests" / "vectors"


def suite() -> dict[str, Any]:
    data = json.loads((VECTORS / "rfc9497_ristretto255.json").read_text())
    (s,) = [x for x in data["suites"] if x["mode"] == 1]
    return dict(s)


def _hexes(v: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in v.split(",")]


def test_context_and_keys_match_the_vectors() -> None:
    s = suite()
    assert bytes.fromhex(s["groupDST"]) == b"HashToGroup-" + voprf.CONTEXT
    sk = voprf.derive_key(bytes.fromhex(s["seed"]), bytes.fromhex(s["keyInfo"]))
    assert sk.hex() == s["skSm"]
    assert voprf.public_key(sk).hex() == s["pkSm"]
    assert voprf.public_key(b"\x01" + bytes(31)) == voprf.GENERATOR


def test_all_vectors() -> None:
    s = suite()
    sk, pk = bytes.fromhex(s["skSm"]), bytes.fromhex(s["pkSm"])
    batches = []
    for v in s["vectors"]:
        inputs = _hexes(v["Input"])
        assert len(inputs) == v["Batch"]
        q = voprf.blind(inputs, _hexes(v["Blind"]))
        assert q.elements.hex() == v["BlindedElement"].replace(",", "")
        ev = voprf.evaluate(sk, q.elements, r=bytes.fromhex(v["Proof"]["r"]))
        assert ev.elements.hex() == v["EvaluationElement"].replace(",", "")
        assert ev.proof.hex() == v["Proof"]["proof"]
        outs = voprf.finalize(q, ev, pk)
        assert [o.hex() for o in outs] == v["Output"].split(",")
        assert voprf.evaluate_direct(sk, inputs) == outs
        batches.append(v["Batch"])
    assert sorted(batches) == [1, 1, 2]


def test_mode_0_and_mode_1_differ() -> None:
    sk = voprf.random_key()
    assert oprf.evaluate_direct(sk, [b"x"]) != voprf.evaluate_direct(sk, [b"x"])


_ids = st.lists(st.binary(max_size=24), min_size=1, max_size=6)


@settings(max_examples=20, deadline=None)
@given(_ids)
def test_round_trip_and_another_key_is_refused(inputs: list[bytes]) -> None:
    sk, other = voprf.random_key(), voprf.random_key()
    q = voprf.blind(inputs)
    ev = voprf.evaluate(sk, q.elements)
    assert voprf.finalize(q, ev, voprf.public_key(sk)) == voprf.evaluate_direct(sk, inputs)
    # the same answer checked against another pinned key
    with pytest.raises(ProofError):
        voprf.finalize(q, ev, voprf.public_key(other))
    # an answer under another key, with that key's valid proof, against the pinned key
    with pytest.raises(ProofError):
        voprf.finalize(q, voprf.evaluate(other, q.elements), voprf.public_key(sk))


@settings(max_examples=20, deadline=None)
@given(_ids, st.data())
def test_a_changed_element_or_proof_is_refused(inputs: list[bytes], data: st.DataObject) -> None:
    sk = voprf.random_key()
    pk = voprf.public_key(sk)
    q = voprf.blind(inputs)
    ev = voprf.evaluate(sk, q.elements)
    n = len(inputs)
    i = data.draw(st.integers(0, n - 1))
    # one evaluated element replaced by another valid element
    forged = bytearray(ev.elements)
    forged[32 * i : 32 * i + 32] = voprf.public_key(voprf.random_key())
    with pytest.raises(ProofError):
        voprf.finalize(q, voprf.Evaluation(bytes(forged), ev.proof), pk)
    # one query element changed: the proof is for other elements
    other = voprf.blind([b"another input"]).elements
    changed = bytearray(q.elements)
    changed[32 * i : 32 * i + 32] = other
    with pytest.raises(ProofError):
        voprf.verify(pk, bytes(changed), ev.elements, ev.proof)
    # a proof with one bit flipped, a truncated one, a missing one
    bit = data.draw(st.integers(0, 8 * voprf.PROOF_SIZE - 1))
    flipped = bytearray(ev.proof)
    flipped[bit // 8] ^= 1 << (bit % 8)
    for bad in (bytes(flipped), ev.proof[:-1], b""):
        with pytest.raises(ProofError):
            voprf.finalize(q, voprf.Evaluation(ev.elements, bad), pk)


def test_duplicate_elements_are_fine() -> None:
    sk = voprf.random_key()
    q = voprf.blind([b"same", b"same"], [oprf.random_blinds(1)[0]] * 2)
    assert q.elements[:32] == q.elements[32:]
    ev = voprf.evaluate(sk, q.elements)
    outs = voprf.finalize(q, ev, voprf.public_key(sk))
    assert outs[0] == outs[1] == voprf.evaluate_direct(sk, [b"same"])[0]


def test_bad_batches_are_refused() -> None:
    sk = voprf.random_key()
    pk = voprf.public_key(sk)
    with pytest.raises(InvalidElementError):
        voprf.evaluate(sk, b"")  # a batch of 0
    with pytest.raises(InvalidElementError):
        voprf.evaluate(sk, b"\x00" * 31)
    with pytest.raises(InvalidElementError):
        voprf.evaluate(sk, b"\x00" * 32)  # the identity
    q = voprf.blind([b"a", b"b"])
    ev = voprf.evaluate(sk, q.elements)
    with pytest.raises(InvalidElementError):
        voprf.verify(pk, b"", b"", ev.proof)
    with pytest.raises(InvalidElementError):
        voprf.verify(pk, q.elements, ev.elements[:32], ev.proof)  # an element dropped
    with pytest.raises(InvalidElementError):
        voprf.verify(pk, q.elements, ev.elements[:32] + bytes(32), ev.proof)  # the identity
    with pytest.raises(ProofError):
        voprf.verify(pk, q.elements, ev.elements, b"\xff" * 64)  # scalars out of range
