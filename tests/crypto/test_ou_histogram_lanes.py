"""Encrypted histograms (``OuCiphertexts.histogram``, SecureBoost's feature party) against
plain sums, and the AVX-512 IFMA lanes' sums against the portable path's, byte for byte
(the portable path forced in a subprocess by ``RAINBRIDGE_DISABLE_IFMA=1``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge._core import OuPublicKey, OuSecretKey

CT = 256

Request = tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, int]


@cache
def key() -> OuSecretKey:
    return OuSecretKey.generate(1024)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Values, bins (rows × features), features, node ids, nodes, n_bins: odd row counts,
    one to many features, 1..=256 bins, rows in no listed node, listed nodes without rows."""
    rows = draw(st.integers(0, 37))
    features = draw(st.integers(1, 11))
    n_bins = draw(st.sampled_from([1, 2, 3, 7, 32, 255, 256]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.integers(-(2**40), 2**40, size=rows, dtype="<i8")
    bins = rng.integers(0, n_bins, size=(rows, features)).astype(np.uint8)
    node_of_row = rng.choice(np.array([-1, 0, 1, 2, 9], dtype="<i4"), size=rows)
    nodes = np.array(draw(st.permutations([0, 1, 2, 3, 4]))[: draw(st.integers(0, 5))])
    return values, bins, features, node_of_row, nodes.astype("<i4"), n_bins


def plain_sums(req: Request) -> np.ndarray:
    values, bins, features, node_of_row, nodes, n_bins = req
    want = np.zeros((len(nodes), features, n_bins), dtype=np.int64)
    for k, node in enumerate(nodes):
        mine = node_of_row == node
        for f in range(features):
            np.add.at(want[k, f], bins[mine, f], values[mine])
    return want.reshape(-1)


def encrypt(pk: OuPublicKey, values: np.ndarray) -> bytes:
    # the core refuses to encrypt nothing; zero rows are an empty buffer
    return pk.encrypt_packed(values.reshape(-1, 1), 1, 64) if len(values) else b""


def sums(pk: OuPublicKey, req: Request, rerandomize: bool) -> bytes:
    values, bins, features, node_of_row, nodes, n_bins = req
    cts = pk.load(encrypt(pk, values))
    return cts.histogram(bins, features, node_of_row, nodes, n_bins, rerandomize)


@settings(max_examples=40, deadline=None)
@given(requests(), st.booleans())
def test_histogram_decrypts_to_plain_sums(req: Request, rerandomize: bool) -> None:
    sk = key()
    got = np.frombuffer(sk.decrypt_i64(sums(sk.public_key(), req, rerandomize)), dtype="<i8")
    assert (got == plain_sums(req)).all()


PORTABLE = r"""
import io, sys
import numpy as np
from rainbridge._core import OuPublicKey
z = np.load(io.BytesIO(sys.stdin.buffer.read()))
pk = OuPublicKey.from_bytes(z["pk"].tobytes())
out = pk.load(z["cts"].tobytes()).histogram(
    z["bins"], int(z["features"]), z["node_of_row"], z["nodes"], int(z["n_bins"]), False
)
sys.stdout.buffer.write(out)
"""


def test_lanes_give_the_portable_bytes() -> None:
    # 0 rows, odd counts, nodes of unequal sizes (vectors mix nodes), 1 and 256 bins, a
    # listed node without rows and rows in no listed node
    pk = key().public_key()
    rng = np.random.default_rng(7)
    for rows, features, n_bins in [(0, 3, 4), (1, 1, 1), (61, 9, 256), (45, 30, 16)]:
        values = rng.integers(-(2**40), 2**40, size=(rows, 1), dtype="<i8")
        cts = encrypt(pk, values)
        bins = rng.integers(0, n_bins, size=(rows, features)).astype(np.uint8)
        node_of_row = rng.choice(np.array([-1, 0, 1, 1, 2, 2, 2, 5], dtype="<i4"), size=rows)
        nodes = np.array([2, 0, 1, 3], dtype="<i4")
        here = pk.load(cts).histogram(bins, features, node_of_row, nodes, n_bins, False)
        buf = io.BytesIO()
        np.savez(
            buf,
            pk=np.frombuffer(pk.to_bytes(), dtype=np.uint8),
            cts=np.frombuffer(cts, dtype=np.uint8),
            bins=bins,
            features=features,
            node_of_row=node_of_row,
            nodes=nodes,
            n_bins=n_bins,
        )
        env = dict(os.environ, RAINBRIDGE_DISABLE_IFMA="1")
        there = subprocess.run(
            [sys.executable, "-c", PORTABLE],
            input=buf.getvalue(),
            capture_output=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert there.returncode == 0, there.stderr.decode()
        assert here == there.stdout
        assert len(here) == len(nodes) * features * n_bins * CT
