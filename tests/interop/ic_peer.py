"""An independent party of the interconnection standard's ECDH-PSI, for the tests.

Written apart from the product: its messages are classes protoc generates from the
standard's message formats (tests/interop/proto), its transport is a plain synchronous gRPC
server and stub, and its curve arithmetic is the `cryptography` package's X25519 — none of
the product's protocol code. It runs as its own process:

    python ic_peer.py --rank 1 --proto-out DIR --peer HOST:PORT --ids FILE [--forge MODE]

prints ``{"port": N}`` once listening, then one JSON line with what it learnt. ``--forge``
makes it misbehave in one named way, to test how the other side ends the session.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

HERE = Path(__file__).resolve().parent

# SM2 (GB/T 32918.5), affine arithmetic on Python integers: slow and plain, and nobody's
# code but this file's.
SM2_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
SM2_A = SM2_P - 3
SM2_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
SUITES = {"curve25519": ((1, 11, 3), 1, 32), "sm2": ((2, 1, 1), 2, 33)}


def sm2_add(p, q):  # type: ignore[no-untyped-def]
    if p is None:
        return q
    if q is None:
        return p
    (x1, y1), (x2, y2) = p, q
    if x1 == x2 and (y1 + y2) % SM2_P == 0:
        return None
    if p == q:
        lam = (3 * x1 * x1 + SM2_A) * pow(2 * y1, -1, SM2_P) % SM2_P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, SM2_P) % SM2_P
    x3 = (lam * lam - x1 - x2) % SM2_P
    return x3, (lam * (x1 - x3) - y1) % SM2_P


def sm2_mul(k: int, p):  # type: ignore[no-untyped-def]
    out = None
    for bit in bin(k)[2:]:
        out = sm2_add(out, out)
        if bit == "1":
            out = sm2_add(out, p)
    return out


def sm2_lift(x: int, odd: bool):  # type: ignore[no-untyped-def]
    y2 = (pow(x, 3, SM2_P) + SM2_A * x + SM2_B) % SM2_P
    y = pow(y2, (SM2_P + 1) // 4, SM2_P)
    if y * y % SM2_P != y2:
        return None
    return x, (y if (y % 2 == 1) == odd else SM2_P - y)


def sm2_hash(item: bytes):  # type: ignore[no-untyped-def]
    d = hashlib.new("sm3", item).digest()
    while True:
        p = sm2_lift(int.from_bytes(d, "big") % SM2_P, False)
        if p is not None:
            return p
        d = hashlib.new("sm3", d).digest()


def sm2_bytes(p) -> bytes:  # type: ignore[no-untyped-def]
    return bytes([2 + (p[1] & 1)]) + p[0].to_bytes(32, "big")


def load_messages(out: Path):  # type: ignore[no-untyped-def]
    out.mkdir(parents=True, exist_ok=True)
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
    import ic_pb2
    import link_pb2
    import psi_pb2

    return ic_pb2, link_pb2, handshake_pb2, ecc_pb2, psi_pb2, ecdh_psi_pb2


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank = args.rank
        self.other = 1 - args.rank
        (self.ic, self.link, self.hs, self.ecc, self.psi, self.cb) = load_messages(
            Path(args.proto_out)
        )
        self.mail: dict[str, bytes] = {}
        self.partial: dict[str, bytearray] = {}
        self.cond = threading.Condition()
        self.sent: dict[str, int] = {}
        self.got: dict[str, int] = {}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "org.interconnection.link.ReceiverService",
            {
                "Push": grpc.unary_unary_rpc_method_handler(
                    self.push,
                    request_deserializer=self.link.PushRequest.FromString,
                    response_serializer=self.link.PushResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.stub = grpc.insecure_channel(args.peer).unary_unary(
            "/org.interconnection.link.ReceiverService/Push",
            request_serializer=self.link.PushRequest.SerializeToString,
            response_deserializer=self.link.PushResponse.FromString,
        )
        self.key = X25519PrivateKey.from_private_bytes(os.urandom(32))
        self.sm2_key = int.from_bytes(os.urandom(32), "big") % (SM2_N - 1) + 1
        self.suite = "curve25519"

    # transport
    def push(self, req, context):  # type: ignore[no-untyped-def]
        with self.cond:
            if req.trans_type == self.link.CHUNKED:
                buf = self.partial.setdefault(req.key, bytearray(req.chunk_info.message_length))
                off = req.chunk_info.chunk_offset
                buf[off : off + len(req.value)] = req.value
                done = self.partial.get(req.key + "#", 0) + len(req.value)
                self.partial[req.key + "#"] = done  # type: ignore[assignment]
                if done == len(buf):
                    self.mail[req.key] = bytes(buf)
            else:
                self.mail[req.key] = req.value
            self.cond.notify_all()
        return self.link.PushResponse(header=self.ic.ResponseHeader(error_code=0))

    def send_raw(self, key: str, value: bytes) -> None:
        resp = self.stub(
            self.link.PushRequest(sender_rank=self.rank, key=key, value=value),
            wait_for_ready=True,
            timeout=60,
        )
        if resp.header.error_code:
            raise SystemExit(f"refused: {resp.header.error_code} {resp.header.error_msg}")

    def recv_raw(self, key: str) -> bytes:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.mail, timeout=60):
                raise SystemExit(f"timed out waiting for {key}")
            return self.mail.pop(key)

    def key_for(self, channel: str, src: int, dst: int, counters: dict[str, int]) -> str:
        n = counters.get(channel, self.args.counter_start)
        counters[channel] = n + 1
        return f"{channel}:P2P-{n}:{src}->{dst}"

    def send(self, value: bytes, channel: str = "root") -> None:
        self.send_raw(self.key_for(channel, self.rank, self.other, self.sent), value)

    def recv(self, channel: str = "root") -> bytes:
        return self.recv_raw(self.key_for(channel, self.other, self.rank, self.got))

    # crypto
    def mask_ids(self, ids: list[str]) -> list[bytes]:
        if self.suite == "sm2":
            return [sm2_bytes(sm2_mul(self.sm2_key, sm2_hash(i.encode()))) for i in ids]
        return [self.mask(hashlib.sha256(i.encode()).digest()) for i in ids]

    def mask(self, u: bytes) -> bytes:
        if self.suite == "sm2":
            point = sm2_lift(int.from_bytes(u[1:], "big"), u[0] == 3)
            return sm2_bytes(sm2_mul(self.sm2_key, point))
        return self.key.exchange(X25519PublicKey.from_public_bytes(u))

    # protocol
    def handshake(self, n: int) -> tuple[int, int]:
        """Returns (bytes kept of a second-stage value, result_to_rank)."""
        forge = self.args.forge
        if self.rank == 1:
            offered = ["sm2"] if forge == "only-sm2" else self.args.suites.split(",")
            ecc = self.ecc.EccProtocolProposal(
                supported_versions=[1],
                point_octet_formats=sorted({SUITES[x][1] for x in offered}),
                support_point_truncation=True,
            )
            for name in offered:
                c, h, s = SUITES[name][0]
                ecc.ec_suits.add(curve=c, hash=h, hash2curve_strategy=s)
            io = self.psi.PsiDataIoProposal(
                supported_versions=[1], item_num=n, result_to_rank=self.args.result_to_rank
            )
            req = self.hs.HandshakeRequest(
                version=3 if forge == "version-3" else 2,
                requester_rank=1,
                supported_algos=[1],
                protocol_families=[1],
            )
            req.protocol_family_params.add().Pack(ecc)
            req.io_param.Pack(io)
            self.send(req.SerializeToString())
            resp = self.hs.HandshakeResponse.FromString(self.recv())
            if resp.header.error_code:
                print(json.dumps({"refused": resp.header.error_code}), flush=True)
                raise SystemExit(0)
            result = self.ecc.EccProtocolResult()
            resp.protocol_family_params[0].Unpack(result)
            chosen = (result.ec_suit.curve, result.ec_suit.hash, result.ec_suit.hash2curve_strategy)
            self.suite = next(k for k, v in SUITES.items() if v[0] == chosen)
            io_result = self.psi.PsiDataIoResult()
            resp.io_param.Unpack(io_result)
            bits = result.bit_length_after_truncated
            return (SUITES[self.suite][2] if bits < 0 else bits // 8), io_result.result_to_rank
        req = self.hs.HandshakeRequest.FromString(self.recv())
        proposal = self.ecc.EccProtocolProposal()
        req.protocol_family_params[0].Unpack(proposal)
        io = self.psi.PsiDataIoProposal()
        req.io_param.Unpack(io)
        # the standard's bound with its 30-bit false-positive level, in whole bytes
        bits = 8 * math.ceil(
            (math.ceil(math.log2(max(n, 2))) + math.ceil(math.log2(max(io.item_num, 2))) + 30) / 8
        )
        resp = self.hs.HandshakeResponse(algo=1, protocol_families=[1])
        resp.header.error_code = 0
        mine = self.args.suites.split(",")
        offered = [(x.curve, x.hash, x.hash2curve_strategy) for x in proposal.ec_suits]
        self.suite = next(k for t in offered for k in mine if SUITES[k][0] == t)
        c, h, s = SUITES[self.suite][0]
        suit = self.ecc.EcSuit(curve=c, hash=h, hash2curve_strategy=s)
        if forge == "choose-sm2":  # a suite the requester did not offer
            suit = self.ecc.EcSuit(curve=2, hash=11, hash2curve_strategy=3)
        resp.protocol_family_params.add().Pack(
            self.ecc.EccProtocolResult(
                version=1,
                ec_suit=suit,
                point_octet_format=SUITES[self.suite][1],
                bit_length_after_truncated=bits,
            )
        )
        resp.io_param.Pack(self.psi.PsiDataIoResult(version=1, result_to_rank=io.result_to_rank))
        self.send(resp.SerializeToString())
        return bits // 8, io.result_to_rank

    def batch(self, kind: str, index: int, values: list[bytes]) -> bytes:
        forge = self.args.forge
        b = self.cb.EcdhPsiCipherBatch(
            type=kind,
            batch_index=index,
            is_last_batch=not values,
            count=len(values),
            ciphertext=b"".join(values),
        )
        if forge == "wrong-type" and values:
            b.type = "dual.enc" if kind == "enc" else "enc"
        if forge == "skip-index" and values:
            b.batch_index = index + 1
        if forge == "short-ciphertext" and values:
            b.ciphertext = b.ciphertext[:-1]
        return b.SerializeToString()

    def run(self, ids: list[str]) -> dict:
        for p in ("connect",):
            self.send_raw(f"{p}_{self.rank}", b"")
            self.recv_raw(f"{p}_{self.other}")
        uniq = sorted(set(ids))
        width, to_rank = self.handshake(len(uniq))
        me_gets, peer_gets = to_rank in (-1, self.rank), to_rank in (-1, self.other)
        size = self.args.batch
        chunks = [uniq[i : i + size] for i in range(0, len(uniq), size)]
        for i, chunk in enumerate(chunks):
            self.send(self.batch("enc", i, self.mask_ids(chunk)))
        self.send(self.batch("enc", len(chunks), []))
        peer_dual: set[bytes] = set()
        index = 0
        while True:
            b = self.cb.EcdhPsiCipherBatch.FromString(self.recv())
            elem = SUITES[self.suite][2]
            pts = [b.ciphertext[j : j + elem] for j in range(0, len(b.ciphertext), elem)]
            dual = [self.mask(p)[elem - width :] for p in pts]
            peer_dual.update(dual)
            if peer_gets:
                self.send(self.batch("dual.enc", index, dual), "root-0")
            if b.is_last_batch:
                break
            index += 1
        if not me_gets:
            return {"size": None}
        mine: list[bytes] = []
        while True:
            b = self.cb.EcdhPsiCipherBatch.FromString(self.recv("root-0"))
            mine += [b.ciphertext[j : j + width] for j in range(0, len(b.ciphertext), width)]
            if b.is_last_batch:
                break
        common = sorted(x for x, d in zip(uniq, mine, strict=True) if d in peer_dual)
        return {"size": len(common), "common": common}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--proto-out", required=True)
    ap.add_argument("--result-to-rank", type=int, default=-1)
    ap.add_argument("--counter-start", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--forge", default="none")
    ap.add_argument("--suites", default="curve25519", help="comma list, preferred first")
    args = ap.parse_args()
    peer = Peer(args)
    print(json.dumps({"port": peer.port}), flush=True)
    ids = [x for x in Path(args.ids).read_text().split("\n") if x]
    out = peer.run(ids)
    print(json.dumps(out), flush=True)
    peer.server.stop(1)


if __name__ == "__main__":
    main()
