"""Review cases of the verifiable OPRF: a malformed public key is a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.crypto import voprf
from rainbridge.errors import InvalidElementError

SK = voprf.derive_key(b"\x01" * 32, b"review")
PK = voprf.public_key(SK)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 100).filter(lambda n: n != 32))
def test_a_public_key_of_the_wrong_length_is_refused(size: int) -> None:
    q = voprf.blind([b"a", b"b"])
    ev = voprf.evaluate(SK, q.elements)
    pk = (PK * 4)[:size]
    with pytest.raises(InvalidElementError):
        voprf.verify(pk, q.elements, ev.elements, ev.proof)
    with pytest.raises(InvalidElementError):
        voprf.finalize(q, ev, pk)
