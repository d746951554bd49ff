"""The interconnection wire: our protobuf codec against protoc-generated classes (both
directions, hypothesis), and the gRPC link's keys, chunks and refusals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import ChannelTimeoutError, ProtocolViolationError
from rainbridge.interop import IcLink
from rainbridge.interop import messages as m
from rainbridge.interop.pb import decode, encode, pack_any, unpack_any

pytest.importorskip("grpc_tools", reason="the generated classes need grpcio-tools (dev extra)")
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("gen")
    protos = sorted(str(p) for p in (HERE / "proto").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{HERE / 'proto'}",
            f"--python_out={out}",
            *protos,
        ],
        check=True,
    )
    sys.path.insert(0, str(out))
    import ecc_pb2
    import ecdh_psi_pb2
    import handshake_pb2
    import link_pb2
    import psi_pb2

    return link_pb2, handshake_pb2, ecc_pb2, psi_pb2, ecdh_psi_pb2


i32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=50, deadline=None)
@given(
    st.text(max_size=20),
    i32,
    st.booleans(),
    i32,
    st.binary(max_size=100),
    st.dictionaries(u32, u32, max_size=5),
)
def test_cipher_batch_both_ways(
    gen: Any, kind: str, index: int, last: bool, count: int, data: bytes, dups: dict
) -> None:
    pb = gen[4].EcdhPsiCipherBatch
    msg = {
        "type": kind,
        "batch_index": index,
        "is_last_batch": last,
        "count": count,
        "ciphertext": data,
        "duplicate_item_cnt_map": dups,
    }
    theirs = pb.FromString(encode(m.ECDH_PSI_CIPHER_BATCH, msg))
    assert (theirs.type, theirs.batch_index, theirs.is_last_batch, theirs.count) == (
        kind,
        index,
        last,
        count,
    )
    assert theirs.ciphertext == data and dict(theirs.duplicate_item_cnt_map) == dups
    back = decode(m.ECDH_PSI_CIPHER_BATCH, theirs.SerializeToString())
    assert back == msg


@settings(max_examples=30, deadline=None)
@given(st.lists(i32, max_size=4), st.integers(min_value=0, max_value=2**40), i32, st.booleans())
def test_handshake_request_both_ways(
    gen: Any, algos: list[int], n: int, to_rank: int, trunc: bool
) -> None:
    _, hs, ecc, psi, _ = gen
    ours = {
        "version": 2,
        "requester_rank": 1,
        "supported_algos": algos,
        "protocol_families": [1],
        "protocol_family_params": [
            pack_any(
                m.ECC_PROTOCOL_PROPOSAL,
                {
                    "supported_versions": [1],
                    "point_octet_formats": [1, 2],
                    "ec_suits": [{"curve": 1, "hash": 11, "hash2curve_strategy": 3}],
                    "support_point_truncation": trunc,
                },
            )
        ],
        "io_param": pack_any(
            m.PSI_DATA_IO_PROPOSAL,
            {"supported_versions": [1], "item_num": n, "result_to_rank": to_rank},
        ),
    }
    req = hs.HandshakeRequest.FromString(encode(m.HANDSHAKE_REQUEST, ours))
    assert list(req.supported_algos) == algos
    prop = ecc.EccProtocolProposal()
    assert req.protocol_family_params[0].Unpack(prop)
    assert prop.support_point_truncation == trunc and prop.ec_suits[0].hash == 11
    io = psi.PsiDataIoProposal()
    assert req.io_param.Unpack(io) and io.item_num == n and io.result_to_rank == to_rank
    back = decode(m.HANDSHAKE_REQUEST, req.SerializeToString())
    assert unpack_any(m.PSI_DATA_IO_PROPOSAL, back["io_param"], "t")["item_num"] == n


def test_malformed_bytes_are_protocol_violations() -> None:
    for bad in (b"\x08", b"\x0a\x05ab", b"\x0d\x00", b"\xff" * 11):
        with pytest.raises(ProtocolViolationError):
            decode(m.ECDH_PSI_CIPHER_BATCH, bad)
    with pytest.raises(ProtocolViolationError, match="expected a"):
        unpack_any(m.PSI_DATA_IO_PROPOSAL, pack_any(m.EC_SUIT, {"curve": 1}), "io")


def pair(**kw: Any) -> Any:
    async def make() -> tuple[IcLink, IcLink]:
        a, b = IcLink(0, "127.0.0.1:0", **kw), IcLink(1, "127.0.0.1:0", **kw)
        pa, pb = await a.start(), await b.start()
        a.peers, b.peers = {1: f"127.0.0.1:{pb}"}, {0: f"127.0.0.1:{pa}"}
        return a, b

    return make()


def test_keys_counters_sub_channels_and_chunks() -> None:
    async def main() -> None:
        a, b = await pair(chunk_bytes=1000, timeout=5)
        try:
            await asyncio.gather(a.connect(), b.connect())
            big = os.urandom(5500)  # six chunks
            await a.send(1, b"first")
            await a.send(1, big)
            await a.send(1, b"sub", a.sub(0))
            assert "root:P2P-0:0->1" in b._mail and "root:P2P-1:0->1" in b._mail
            assert "root-0:P2P-0:0->1" in b._mail
            assert await b.recv(0) == b"first"
            assert await b.recv(0) == big
            assert await b.recv(0, b.sub(0)) == b"sub"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_the_link_refuses_what_it_must() -> None:
    async def main() -> None:
        a, b = await pair(max_message=100, timeout=2)
        try:
            with pytest.raises(ProtocolViolationError, match="too large"):
                await a.send_raw(1, "k", b"x" * 101)
            await a.send_raw(1, "k", b"once")
            with pytest.raises(ProtocolViolationError, match="twice"):
                await a.send_raw(1, "k", b"again")
            b.peers = {5: "127.0.0.1:1"}  # rank 0 is no longer a peer of b
            with pytest.raises(ProtocolViolationError, match="not a peer"):
                await a.send_raw(1, "k2", b"x")
            with pytest.raises(ChannelTimeoutError):
                await a.recv(1)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
