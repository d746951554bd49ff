"""Property-based fuzzing of the decoders that read bytes from outside.

Every input either decodes or is refused with a typed error (a RainbridgeError, or the
decoder's documented error); never another exception, a hang or a huge allocation. The
decoders and the mutation of valid inputs live in :mod:`rainbridge.bench.fuzz`; its runner
(``make fuzz``) tries far more inputs than these small budgets.
"""

from __future__ import annotations

import json
import random
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.bench import fuzz

#: per decoder; the whole file stays well under 30 s
EXAMPLES = 200
#: an input that takes longer, or allocates more, is a finding
MAX_SECONDS = 5.0
MAX_ALLOC = 64 << 20

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_SEEDS: dict[str, list[bytes]] = {}


def seeds(name: str) -> list[bytes]:
    if name not in _SEEDS:
        _SEEDS[name] = fuzz.DECODERS[name].seeds()
        # the first input imports the decoder's modules (the REST one, the node's API):
        # a one-time cost of no input, kept out of the time and allocation checks
        for data in _SEEDS[name][:1]:
            fuzz.run_one(name, data)
    return _SEEDS[name]


#: decoders that run code in other threads (Arrow's readers call into Python from theirs;
#: a node's storage pool and ledger thread): stopping tracemalloc while another thread
#: allocates crashes CPython 3.11 (a race in tracemalloc.stop), so their memory is measured
#: in Arrow's pool instead (where the readers' memory is; tracemalloc sees none of it)
_THREADED = ("csv", "parquet", "control")


def check(name: str, data: bytes) -> str:
    """Run one input; fail on an untyped error, a slow input or a large allocation."""
    arrow = name in _THREADED
    if arrow:
        pool = pa.default_memory_pool()
        before = pool.max_memory() or 0
    else:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        got = fuzz.run_one(name, data)
    finally:
        elapsed = time.perf_counter() - t0
        if arrow:
            peak = (pool.max_memory() or 0) - before  # a new high of Arrow's pool, if any
        else:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"{name}: {elapsed:.1f} s on {data.hex()}"
    assert peak < MAX_ALLOC, f"{name}: {peak} bytes allocated on {data.hex()}"
    return got


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


def inputs(name: str) -> st.SearchStrategy[bytes]:
    """Random bytes, random JSON (for JSON decoders) and the runner's mutations of valid
    inputs, driven by a Hypothesis-chosen seed."""
    d = fuzz.DECODERS[name]
    mutated = st.integers(min_value=0, max_value=2**64).map(
        lambda s: fuzz.generate(d, random.Random(s), seeds(name))
    )
    raw = st.binary(max_size=300)
    if d.json:
        return st.one_of(mutated, mutated, raw, json_values.map(lambda v: json.dumps(v).encode()))
    return st.one_of(mutated, mutated, raw)


@pytest.mark.parametrize("name", sorted(fuzz.DECODERS))
def test_decoder_refuses_with_typed_errors(name: str) -> None:
    @FUZZ
    @given(data=inputs(name))
    def prop(data: bytes) -> None:
        check(name, data)

    prop()


@FUZZ
@given(
    obj=st.dictionaries(
        st.sampled_from(["name", "parties", "components", "datasets", "id", "type", "inputs",
                         "params", "outputs", "sql", "x"]),
        json_values,
        max_size=6,
    )
)
def test_job_spec_on_random_dicts(obj: dict[str, Any]) -> None:
    check("job_dict", json.dumps(obj).encode())


@pytest.mark.parametrize("name", sorted(fuzz.DECODERS))
def test_valid_seeds_do_not_fail_untyped(name: str) -> None:
    for s in seeds(name):
        check(name, s)


# -- seeded regressions: inputs that probe each bound directly ----------------------------------


def _frame(flags: int, total: int, tag_len: int, length: int, seq: int = 0) -> bytes:
    from rainbridge.net import frames as f

    head = f.HEADER.pack(f.MAGIC, f.VERSION, flags, f.session_key("fuzz-session"), seq, total,
                         tag_len, length)
    return head + b"t" * tag_len


def _push(total: int, offset: int, value: bytes = b"x") -> bytes:
    from rainbridge.interop import messages as m
    from rainbridge.interop.pb import encode

    return encode(m.PUSH_REQUEST, {"sender_rank": 1, "key": "k", "value": value,
                                   "trans_type": m.CHUNKED,
                                   "chunk_info": {"message_length": total, "chunk_offset": offset}})


REGRESSIONS = [
    # a frame announcing the largest lengths the fields carry: refused before any allocation
    ("frame", _frame(0x03, (1 << 64) - 1, 1, (1 << 32) - 1), "refused"),
    ("frame", _frame(0x03, 5, 1, 5), "refused"),  # truncated payload
    ("frame", _frame(0x03, 1, 1, 1) + b"\xff", "decoded"),  # tag "t", one payload byte
    ("frame", _frame(0xF0, 0, 0, 0), "refused"),  # reserved flag bits
    ("hello", struct.pack("<I", 0xFFFFFFFF), "refused"),
    ("hello", struct.pack("<I", 3) + b"\xff\xfe\x00", "refused"),
    ("hello", struct.pack("<I", 2) + b"[]", "refused"),
    ("pb", b"\xff" * 11, "refused"),  # a varint longer than 64 bits
    ("pb", b"\x12\xff\xff\xff\xff\x0f", "refused"),  # a length beyond the message
    ("pb", b"\x0b", "refused"),  # a group (wire type 3)
    ("link_push", fuzz.join_requests([_push(1 << 63, 0)]), "decoded"),  # refused in the reply
    ("link_push", fuzz.join_requests([_push(10, (1 << 64) - 1)]), "decoded"),
    ("mlq_elements", b"\xff" * 32, "refused"),
    ("mlq_elements", b"\x00" * 31, "refused"),
    ("mlq_finish", b"\x00" * 32, "refused"),
    ("pir_rows", b'{"tags": "AAAA", "versions": "", "buckets": "", "sealed": 7}', "refused"),
    ("pir_answer", b'{"evaluated": "not base64!"}', "refused"),
    # a YAML alias bomb: refused (or bounded) without expanding it
    ("job_text", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
     "refused"),
    ("job_text", b"!!python/object/apply:os.system ['true']", "refused"),
    ("job_dict", b'{"name": [], "parties": 1, "components": {}}', "refused"),
    ("der", bytes.fromhex("3084ffffffff"), "refused"),  # a 4 GiB length in 6 bytes
    ("der", bytes.fromhex("30850100000000"), "refused"),  # a 5-byte length
    ("der", bytes.fromhex("3000"), "refused"),
    ("bundle", b'{"entry": 1}\n{"seq": "x"}', "decoded"),  # a report of problems
]


@pytest.mark.parametrize(("name", "data", "expected"), REGRESSIONS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(REGRESSIONS)])
def test_regressions(name: str, data: bytes, expected: str) -> None:
    assert check(name, data) == expected


# -- findings: untyped failures the fuzzer found in product code, fixed -------------------


def test_bundle_head_that_is_not_an_object() -> None:
    # found by the fuzzer: a head.json holding JSON that is not an object (0, 1e+308, true)
    # made the verifier raise instead of reporting the bundle as tampered with
    for data in ("30", "31652b333038", "74727565"):
        assert fuzz.run_one("bundle", bytes.fromhex(data)) in ("decoded", "refused")


# -- crashes: inputs a fuzzer found failing untyped, one file each under crashes/DECODER/ ------
#
# parquet/id-not-utf8, parquet/id-a-list: an ID column that is binary holding bytes that are
#   not UTF-8, or a list, raised Arrow's cast error from read_ids (now a DataError naming the
#   dataset and column)
# parquet/int-wider-than-64-bits: a footer declaring a wider integer raised Arrow's
#   ArrowNotImplementedError from the schema read (every Arrow error is now a DataError)
# csv/a-column-name-twice: a header naming a column twice (here the empty name) was
#   registered, its columns collapsed to one entry, and a read of them raised KeyError (now
#   refused at registration, naming the column)
# control/propose-parties-not-text: a proposal whose parties are objects made the router
#   raise TypeError (unhashable) instead of refusing the proposal
# rest/encoding-with-nul: a dataset's encoding holding a NUL raised ValueError from the codec
#   lookup instead of ConfigError; rest/encoding-lone-surrogate probes the same lookup

CRASHES = sorted((Path(__file__).parent / "crashes").glob("*/*"))


@pytest.mark.parametrize("path", CRASHES, ids=[f"{p.parent.name}/{p.name}" for p in CRASHES])
def test_crashes_are_refused(path: Path) -> None:
    assert check(path.parent.name, path.read_bytes()) in ("refused", "decoded")
