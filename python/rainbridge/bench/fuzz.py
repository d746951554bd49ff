"""Fuzzing of the decoders that read bytes from outside.

Each decoder here takes the raw input (bytes) and returns None when the product decoded it,
or raises the error the product documents for a refusal: a
:class:`~rainbridge.errors.RainbridgeError` (the DER reader of the bundle verifier documents
``ValueError``). Anything else (another exception, a hang, a huge allocation) is a finding.

The runner mutates valid inputs and mixes in random bytes, deterministically from a seed::

    python -m rainbridge.bench.fuzz --inputs 20000 [--decoder NAME] [--seed 0]

and prints JSON: per decoder, the inputs tried, the typed refusals, the inputs decoded and
every untyped failure with its input in hex (a reproducer for :func:`run_one`).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import json
import random
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rainbridge.bench import fuzz_node_inputs as node_inputs
from rainbridge.errors import RainbridgeError

#: the largest input the runner generates, in bytes
MAX_INPUT = 2048


class NotApplicable(Exception):
    """The input is not of the decoder's outer form (e.g. not JSON for a JSON message):
    the transport in front of the decoder refuses it; counted apart, never a finding."""


# -- the data plane ---------------------------------------------------------------------------

_SESSION_ID = "fuzz-session"
_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def decode_frame(data: bytes) -> None:
    """A data-plane frame (header, tag, payload) at the start of ``data``."""
    from rainbridge.net import frames

    session = frames.session_key(_SESSION_ID)
    frame, tag, payload, consumed = frames.decode_frame(
        data, peer="fuzz", session=session, seq=0, max_frame=1 << 16, max_message=1 << 20
    )
    if len(payload) != frame.length or consumed > len(data) or len(tag.encode()) > frames.MAX_TAG:
        raise AssertionError("decode_frame returned an inconsistent frame")


def decode_hello(data: bytes) -> None:
    """The hello a peer sends after the TLS handshake: a u32 length and a JSON object."""
    from rainbridge.net import tls

    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await tls._recv_hello(reader, "fuzz", 1.0)

    _loop().run_until_complete(go())


# -- PIR and the multi-lender query ------------------------------------------------------------


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise NotApplicable("not JSON") from None


_PIR_QUERY: Any = None


def _pir_query() -> tuple[Any, str]:
    """A blinded query of two IDs and a valid evaluation of it (so fuzzing reaches past the
    element checks)."""
    global _PIR_QUERY
    if _PIR_QUERY is None:
        from rainbridge.crypto import oprf

        q = oprf.blind([b"alice", b"bob"])
        sk = oprf.derive_key(b"fuzz" * 8, b"fuzz")
        _PIR_QUERY = (q, base64.b64encode(oprf.evaluate(sk, q.elements)).decode())
    return _PIR_QUERY  # type: ignore[no-any-return]


def decode_pir_answer(data: bytes) -> None:
    """A PIR service's answer (JSON), read by the client without a replica."""
    from rainbridge.protocols.pir import wire

    reply = _json(data)
    if not isinstance(reply, dict):
        raise NotApplicable("not a JSON object")
    q, _ = _pir_query()
    wire.read_answer(q, reply, None, "fuzz")


def decode_pir_rows(data: bytes) -> None:
    """Rows of a PIR table from a peer (sync pages): base64 parts in a JSON object."""
    from rainbridge.protocols.pir import wire

    wire.unpack_rows(_json(data), 24, "fuzz rows")


def decode_mlq_elements(data: bytes) -> None:
    """Masked values a lender receives in the multi-lender query (32-byte group elements)."""
    from rainbridge.protocols import mlq

    mlq.check_elements(data)


def decode_mlq_finish(data: bytes) -> None:
    """An evaluated element returned for a blinded multi-lender query."""
    from rainbridge.protocols import mlq

    mlq.finish_query(mlq.start_query("fuzz-id"), data)


# -- the interconnection protocol -------------------------------------------------------------


def _schemas() -> list[Any]:
    from rainbridge.interop import messages
    from rainbridge.interop.pb import Schema

    return [v for v in vars(messages).values() if isinstance(v, Schema)]


def decode_pb(data: bytes) -> None:
    """Every message schema of the interconnection protocol on the same bytes; the first
    refusal is raised once all have been tried."""
    from rainbridge.interop.pb import decode

    first: RainbridgeError | None = None
    for schema in _schemas():
        try:
            decode(schema, data)
        except RainbridgeError as exc:
            first = first or exc
    if first is not None:
        raise first


def split_requests(data: bytes) -> list[bytes]:
    """The link fuzzer's input: up to 8 requests, each a u16 length then that many bytes."""
    out: list[bytes] = []
    at = 0
    while at + 2 <= len(data) and len(out) < 8:
        (n,) = struct.unpack_from("<H", data, at)
        out.append(data[at + 2 : at + 2 + n])
        at += 2 + n
    return out


def join_requests(requests: list[bytes]) -> bytes:
    return b"".join(struct.pack("<H", len(r)) + r for r in requests)


def decode_link_push(data: bytes) -> None:
    """Push requests (whole and chunked) into a fresh interconnection link; the link answers
    every request with a response and holds at most its bounds."""
    from rainbridge.interop import messages as m
    from rainbridge.interop.link import IcLink
    from rainbridge.interop.pb import decode

    link = IcLink(0, "127.0.0.1:0", {1: "127.0.0.1:1", 2: "127.0.0.1:2"},
                  max_message=1 << 12, max_pending_bytes=1 << 14, max_pending=16)

    async def go() -> None:
        for req in split_requests(data):
            reply = await link._on_push(req, None)
            decode(m.PUSH_RESPONSE, reply)
        held = sum(link._held.values())
        if held > link.max_pending_bytes or len(link._mail) + len(link._partial) > 16:
            raise AssertionError(f"the link holds {held} bytes past its bounds")

    _loop().run_until_complete(go())


# -- job specs ----------------------------------------------------------------------------------


def decode_job_text(data: bytes) -> None:
    """A job file (YAML or JSON text)."""
    from rainbridge.jobs.spec import parse_job

    parse_job(data.decode("utf-8", "replace"), "fuzz.yaml")


def decode_job_dict(data: bytes) -> None:
    """A job as a JSON object (what the REST API receives)."""
    from rainbridge.jobs.spec import parse_job

    obj = _json(data)
    parse_job(json.dumps(obj), "fuzz.json")


# -- the audit bundle verifier ------------------------------------------------------------------


def decode_der(data: bytes) -> None:
    """The bundle verifier's DER reader on a PEM-wrapped certificate; its documented error is
    ``ValueError``."""
    from rainbridge.audit import verify_ledger as v

    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(data).decode()
        + "-----END CERTIFICATE-----\n"
    )
    v.fingerprint_pem(pem)
    v.common_name(pem)
    try:
        v.ledger_key_of(pem)
    except KeyError:  # a ledger-key object without "alg"/"key"
        raise ValueError("ledger key lacks a field") from None


_BUNDLE_DIR: Path | None = None


def decode_bundle(data: bytes) -> None:
    """A ledger bundle whose entries.jsonl and head.json are the input (JSON lines; the last
    line is the head); verify_bundle reports problems and never raises."""
    from rainbridge.audit import verify_ledger as v

    global _BUNDLE_DIR
    if _BUNDLE_DIR is None:
        _BUNDLE_DIR = Path(tempfile.mkdtemp(prefix="rb-fuzz-bundle-"))
        atexit.register(shutil.rmtree, _BUNDLE_DIR, True)
        (_BUNDLE_DIR / "certs").mkdir()
    lines = data.split(b"\n")
    (_BUNDLE_DIR / "entries.jsonl").write_bytes(b"\n".join(lines[:-1]))
    (_BUNDLE_DIR / "head.json").write_bytes(lines[-1])
    try:
        v.verify_bundle(_BUNDLE_DIR)
    except UnicodeDecodeError:
        raise NotApplicable("not UTF-8") from None


# -- seeds and mutation ---------------------------------------------------------------------


def _frame_seeds() -> list[bytes]:
    from rainbridge.net import frames as f

    s = f.session_key(_SESSION_ID)
    return [
        f.encode_frame(f.FLAG_FIRST | f.FLAG_LAST, s, 0, 5, "psi/masked", b"hello"),
        f.encode_frame(f.FLAG_FIRST, s, 0, 100, "t", b"x" * 10),
        f.encode_frame(f.FLAG_LAST, s, 0, 0, "é", b""),
        f.encode_header(f.FLAG_ERROR, s, 0, 0, b"", 6) + b"reason",
        f.encode_header(f.FLAG_CLOSE, s, 0, 0, b"", 0),
    ]


def _hello_seeds() -> list[bytes]:
    def h(obj: Any) -> bytes:
        body = json.dumps(obj).encode()
        return struct.pack("<I", len(body)) + body

    return [
        h({"v": 1, "session": "s1", "from": "alice", "to": "bob"}),
        h({"v": 1}),
        h([1, 2]),
        struct.pack("<I", 4097),
    ]


def _pir_seeds() -> list[bytes]:
    _, ev = _pir_query()
    b = base64.b64encode
    rows = {k: b(bytes(n)).decode() for k, n in
            (("tags", 32), ("versions", 16), ("buckets", 8), ("sealed", 48))}
    return [
        json.dumps({"evaluated": ev, "key_id": "k", "version": 1}).encode(),
        json.dumps({"evaluated": ev, "layout": {"columns": [["score", "f64"]]},
                    "answer": {"ticket": {"expires": 0}, "version": 1, "total": 1,
                               "rows": rows}}).encode(),
        json.dumps(rows).encode(),
    ]


def _mlq_seeds() -> list[bytes]:
    from rainbridge.protocols import mlq

    return [mlq.start_query("a").element, mlq.start_query("b").element * 2, bytes(32)]


def _pb_seeds() -> list[bytes]:
    from rainbridge.interop import messages as m
    from rainbridge.interop.pb import encode

    return [
        encode(m.PUSH_REQUEST, {"sender_rank": 1, "key": "root:0", "value": b"abc",
                                "trans_type": m.CHUNKED,
                                "chunk_info": {"message_length": 6, "chunk_offset": 0}}),
        encode(m.PUSH_RESPONSE, {"header": {"error_code": 0, "error_msg": "ok"}}),
    ]


def _link_seeds() -> list[bytes]:
    from rainbridge.interop import messages as m
    from rainbridge.interop.pb import encode

    def push(key: str, value: bytes, total: int, offset: int, sender: int = 1) -> bytes:
        return encode(m.PUSH_REQUEST, {"sender_rank": sender, "key": key, "value": value,
                                       "trans_type": m.CHUNKED,
                                       "chunk_info": {"message_length": total,
                                                      "chunk_offset": offset}})

    whole = encode(m.PUSH_REQUEST, {"sender_rank": 2, "key": "root:1", "value": b"v" * 20,
                                    "trans_type": m.MONO})
    return [
        join_requests([push("k", b"abc", 6, 0), push("k", b"def", 6, 3), whole]),
        join_requests([push("k", b"abc", 6, 3), push("k", b"abc", 6, 2)]),
        join_requests([whole, whole]),
    ]


def _job_seeds() -> list[bytes]:
    here = Path(__file__).resolve().parents[3]
    out = [p.read_bytes() for p in sorted(here.glob("examples/**/*.yaml"))[:6]
           if p.stat().st_size < MAX_INPUT]
    out.append(b"name: j\nparties: [alice, bob]\ncomponents: []\n")
    out.append(json.dumps({"name": "j", "parties": ["a", "b"], "components": [
        {"id": "c", "type": "psi", "inputs": {"alice": "d1", "bob": "d2"}}]}).encode())
    return out


def _job_json_seeds() -> list[bytes]:
    import yaml

    out = []
    for raw in _job_seeds():
        try:
            out.append(json.dumps(yaml.safe_load(raw)).encode())
        except (yaml.YAMLError, TypeError, ValueError):
            continue
    return out


def _der_seeds() -> list[bytes]:
    from rainbridge.crypto.certs import create_identity

    with tempfile.TemporaryDirectory() as tmp:
        ident = create_identity(tmp, "fuzz-node", ledger_key=("ed25519", bytes(32)))
        pem = ident.cert_pem
    body = pem.split("-----")[2]
    return [base64.b64decode("".join(body.split())), bytes.fromhex("3008300602010102010a")]


def _bundle_seeds() -> list[bytes]:
    entry = {"entry": {"seq": 0, "prev": "0" * 64, "kind": "genesis", "time": 0},
             "hash": "0" * 64, "sig": "00"}
    return [
        json.dumps(entry).encode() + b"\n" + json.dumps({"seq": 0, "hash": "0" * 64}).encode(),
        b"\n{}",
    ]


@dataclass
class Decoder:
    name: str
    fn: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: the errors the decoder documents besides RainbridgeError
    documented: tuple[type[BaseException], ...] = ()
    json: bool = False


DECODERS: dict[str, Decoder] = {
    d.name: d
    for d in (
        Decoder("frame", decode_frame, _frame_seeds),
        Decoder("hello", decode_hello, _hello_seeds),
        Decoder("pir_answer", decode_pir_answer, _pir_seeds, json=True),
        Decoder("pir_rows", decode_pir_rows, _pir_seeds, json=True),
        Decoder("mlq_elements", decode_mlq_elements, _mlq_seeds),
        Decoder("mlq_finish", decode_mlq_finish, _mlq_seeds),
        Decoder("pb", decode_pb, _pb_seeds),
        Decoder("link_push", decode_link_push, _link_seeds),
        Decoder("job_text", decode_job_text, _job_seeds),
        Decoder("job_dict", decode_job_dict, _job_json_seeds, json=True),
        Decoder("der", decode_der, _der_seeds, documented=(ValueError,)),
        Decoder("bundle", decode_bundle, _bundle_seeds, json=True),
        Decoder("control", node_inputs.decode_control, node_inputs._control_seeds, json=True),
        Decoder("rest", node_inputs.decode_rest, node_inputs._rest_seeds,
                documented=(ValidationError,), json=True),
        Decoder("csv", node_inputs.decode_csv, node_inputs._csv_seeds),
        Decoder("parquet", node_inputs.decode_parquet, node_inputs._parquet_seeds),
    )
}

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff" * 4, b"\xff" * 8, b"\x00" * 8,
                b'"', b"{", b"[", b"}", b"]", b"null", b"1e309", b"-1", b"\n", b":", b"- ",
                b"&a", b"*a", b"!!python/object", b"\xc3", b"0" * 30]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One input: random bytes, or a seed mutated a few times (flips, overwrites, inserted
    tokens, deletions, truncations, splices)."""
    if not seeds or rng.random() < 0.15:
        return rng.randbytes(rng.choice([0, 1, 2, 4, 8, 16, 41, 64, 256]))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
        op = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1 and at < len(data):
            data[at] = rng.randrange(256)
        elif op == 2:
            data[at:at] = rng.choice(_INTERESTING)
        elif op == 3:
            del data[at : at + rng.randrange(1, 9)]
        elif op == 4:
            del data[at:]
        elif op == 5:
            other = rng.choice(seeds)
            j = rng.randrange(len(other) + 1)
            data[at:] = other[j:]
        elif op == 6 and len(data) >= at + 8:
            data[at : at + 8] = rng.choice([b"\xff" * 8, b"\x00" * 8, struct.pack("<Q", 1 << 40)])
    return bytes(data[:MAX_INPUT])


def _json_mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """For a JSON decoder: a seed object with a random subtree replaced, or byte mutation."""
    if rng.random() < 0.2:
        return mutate(rng, seeds)
    try:
        obj = json.loads(rng.choice(seeds).split(b"\n")[0])
    except ValueError:
        return mutate(rng, seeds)
    leaves: list[Any] = [None, True, 0, -1, 1 << 70, 1e308, "", "A" * 40, "=", [], {},
                         "AAAA", "////", [1, 2], {"a": 1}, -(1 << 63), 2**32]

    def walk(x: Any) -> Any:
        if rng.random() < 0.2:
            return rng.choice(leaves)
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items() if rng.random() > 0.05}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return json.dumps(walk(obj)).encode()


def generate(decoder: Decoder, rng: random.Random, seeds: list[bytes]) -> bytes:
    return _json_mutate(rng, seeds) if decoder.json else mutate(rng, seeds)


def run_one(name: str, data: bytes) -> str:
    """``"decoded"``, ``"refused"`` (a typed error), ``"not_applicable"``; any other
    exception propagates (a finding)."""
    d = DECODERS[name]
    try:
        d.fn(data)
    except NotApplicable:
        return "not_applicable"
    except RainbridgeError:
        return "refused"
    except d.documented:
        return "refused"
    return "decoded"


@dataclass
class Tally:
    inputs: int = 0
    refused: int = 0
    decoded: int = 0
    not_applicable: int = 0
    untyped: int = 0
    slowest_s: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)


def fuzz(name: str, inputs: int, seed: int = 0, max_failures: int = 20) -> Tally:
    d = DECODERS[name]
    rng = random.Random(f"{seed}:{name}")
    seeds = d.seeds()
    seen: set[tuple[str, str]] = set()
    t = Tally()
    for _ in range(inputs):
        data = generate(d, rng, seeds)
        t.inputs += 1
        t0 = time.perf_counter()
        try:
            got = run_one(name, data)
            setattr(t, got, getattr(t, got) + 1)
        except Exception as exc:  # an untyped failure: what the fuzzer looks for
            t.untyped += 1
            where = f"{type(exc).__name__}:{exc.__traceback__ and _last_frame(exc)}"
            if (type(exc).__name__, where) not in seen and len(t.failures) < max_failures:
                seen.add((type(exc).__name__, where))
                t.failures.append({"error": f"{type(exc).__name__}: {str(exc)[:200]}",
                                   "at": where, "input_hex": data.hex()})
        t.slowest_s = max(t.slowest_s, time.perf_counter() - t0)
    return t


def _last_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fuzz Rainbridge's decoders of outside bytes.")
    ap.add_argument("--inputs", type=int, default=10_000, help="inputs per decoder")
    ap.add_argument("--decoder", action="append", choices=sorted(DECODERS),
                    help="only this decoder (repeatable); all by default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["mutational", "atheris"], default="mutational",
                    help="atheris: coverage-guided (when installed; else the mutational engine)")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="atheris: where the corpus and crashes are kept (default: a temp dir)")
    args = ap.parse_args(argv)
    names = args.decoder or list(DECODERS)
    if args.engine == "atheris":
        from rainbridge.bench import fuzz_atheris

        if fuzz_atheris.available():
            return _atheris(names, args.inputs, args.seed, args.corpus)
        print("atheris is not installed: the mutational engine runs instead", file=sys.stderr)
    report: dict[str, Any] = {}
    untyped = 0
    for name in names:
        t0 = time.perf_counter()
        t = fuzz(name, args.inputs, args.seed)
        untyped += t.untyped
        report[name] = {
            "inputs": t.inputs, "typed_refusals": t.refused, "decoded": t.decoded,
            "not_applicable": t.not_applicable, "seconds": round(time.perf_counter() - t0, 2),
            "slowest_input_s": round(t.slowest_s, 4), "untyped": t.untyped,
            "untyped_failures": t.failures,
        }
        print(f"{name}: {t.inputs} inputs, {t.untyped} untyped", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 1 if untyped else 0


def _atheris(names: list[str], inputs: int, seed: int, corpus: Path | None) -> int:
    """Each decoder in a process of its own (libFuzzer exits when done); their JSON merged."""
    import subprocess

    from rainbridge.bench import fuzz_atheris

    if len(names) == 1:
        where = corpus or Path(tempfile.mkdtemp(prefix="rb-fuzz-corpus-"))
        fuzz_atheris.run(names[0], inputs, seed, where)  # exits the process
    report: dict[str, Any] = {}
    failed = 0
    for name in names:
        cmd = [sys.executable, "-m", "rainbridge.bench.fuzz", "--engine", "atheris",
               "--decoder", name, "--inputs", str(inputs), "--seed", str(seed)]
        if corpus is not None:
            cmd += ["--corpus", str(corpus)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        out = done.stdout
        report.update(json.loads(out[out.index("{"):]) if "{" in out else {name: {}})
        report[name]["exit_code"] = done.returncode
        failed += done.returncode != 0
        print(f"{name}: atheris exited {done.returncode}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    # run as rainbridge.bench.fuzz, not as a second copy of it named __main__: the decoders
    # in fuzz_node_inputs raise this module's NotApplicable
    from rainbridge.bench import fuzz as _imported

    sys.exit(_imported.main())
