"""RFC 9497 OPRF (ristretto255-SHA512, mode 0) against the RFC's test vectors, and the
client/server round trip against the server's direct evaluation (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.crypto import oprf
from rainbridge.errors import ConfigError, InvalidElementError

VECTORS = Path(__file__).resolve().parents[2] / "rust" / "tests" / "vectors"


def suite() -> dict:
    data = json.loads((VECTORS / "rfc9497_ristretto255.json").read_text())
    (s,) = [x for x in data["suites"] if x["mode"] == 0]
    return dict(s)


def test_context_matches_the_vectors_group_dst() -> None:
    assert bytes.fromhex(suite()["groupDST"]) == b"HashToGroup-" + oprf.CONTEXT


def test_derive_key_pair() -> None:
    s = suite()
    sk = oprf.derive_key(bytes.fromhex(s["seed"]), bytes.fromhex(s["keyInfo"]))
    assert sk.hex() == s["skSm"]


def test_blind_evaluate_finalize_vectors() -> None:
    s = suite()
    sk = bytes.fromhex(s["skSm"])
    checked = 0
    for v in s["vectors"]:
        inputs = [bytes.fromhex(x) for x in v["Input"].split(",")]
        blinds = [bytes.fromhex(x) for x in v["Blind"].split(",")]
        q = oprf.blind(inputs, blinds)
        assert q.elements.hex() == v["BlindedElement"].replace(",", "")
        ev = oprf.evaluate(sk, q.elements)
        assert ev.hex() == v["EvaluationElement"].replace(",", "")
        outs = oprf.finalize(q, ev)
        assert [o.hex() for o in outs] == v["Output"].split(",")
        assert oprf.evaluate_direct(sk, inputs) == outs
        checked += len(inputs)
    assert checked == 2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_client_and_server_agree(inputs: list[bytes]) -> None:
    sk = oprf.random_key()
    q = oprf.blind(inputs)
    assert oprf.finalize(q, oprf.evaluate(sk, q.elements)) == oprf.evaluate_direct(sk, inputs)
    other = oprf.random_key()
    assert oprf.finalize(q, oprf.evaluate(other, q.elements)) != oprf.evaluate_direct(sk, inputs)


def test_fresh_blinds_hide_the_input() -> None:
    a, b = oprf.blind([b"same id"]), oprf.blind([b"same id"])
    assert a.elements != b.elements


def test_bad_inputs_and_answers_are_refused() -> None:
    sk = oprf.random_key()
    with pytest.raises(InvalidElementError):
        oprf.evaluate(sk, b"\x00" * 31)
    with pytest.raises(InvalidElementError):
        oprf.evaluate(sk, b"\x00" * 32)  # the identity
    with pytest.raises(InvalidElementError):
        oprf.evaluate(sk, b"\xff" * 32)  # not canonical
    q = oprf.blind([b"x", b"y"])
    with pytest.raises(InvalidElementError):
        oprf.finalize(q, oprf.evaluate(sk, q.elements)[:32])
    with pytest.raises(ConfigError):
        oprf.blind([b"x" * 70000])
    with pytest.raises(ConfigError):
        oprf.derive_key(b"short", b"")
