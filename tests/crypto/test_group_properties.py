"""Properties of the group suites against references, and their handling of bad input.

References: OpenSSL's X25519 (through ``cryptography``) one ladder at a time, a pure-Python
``expand_message_xmd`` (RFC 9380 §5.3.1), and each back end against the other.
"""

from __future__ import annotations

import hashlib
import itertools
import pickle
import re
import sys
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from crypto_helpers import BACKENDS, items
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.crypto import groups
from rainbridge.crypto.groups import Curve25519Suite, Ristretto255Suite, get_suite
from rainbridge.errors import ConfigError, InvalidElementError, RainbridgeError

SUITES = ["curve25519", "ristretto255"]
ORDER = 2**252 + 27742317777372353535851937790883648493  # of ristretto255
P = 2**255 - 19

values_st = st.lists(st.binary(max_size=80), max_size=24)
scalar25519_st = st.binary(min_size=32, max_size=32)
scalar_r255_st = st.integers(min_value=1, max_value=ORDER - 1).map(
    lambda x: x.to_bytes(32, "little")
)


def xmd_sha512(msg: bytes, dst: bytes, n: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512, straight from the text."""
    ell = -(-n // 64)
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + n.to_bytes(2, "big") + b"\0" + dst_prime).digest()
    b = [hashlib.sha512(b0 + b"\1" + dst_prime).digest()]
    for i in range(2, ell + 1):
        x = bytes(p ^ q for p, q in zip(b0, b[-1], strict=True))
        b.append(hashlib.sha512(x + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:n]


@settings(max_examples=25, deadline=None)
@given(values_st, st.sampled_from(SUITES))
def test_masking_commutes(values: list[bytes], name: str) -> None:
    s = get_suite(name)
    data, offsets = items(values)
    a, b = s.random_scalar(), s.random_scalar()
    ha, hb = s.hash_mul(a, data, offsets), s.hash_mul(b, data, offsets)
    assert len(ha) == 32 * len(values)
    assert s.mul(b, ha) == s.mul(a, hb)
    assert ha == s.mul(a, s.hash_to_group(data, offsets))


@settings(max_examples=25, deadline=None)
@given(values_st, scalar25519_st, st.sampled_from(BACKENDS))
def test_curve25519_equals_openssl_one_at_a_time(
    values: list[bytes], k: bytes, backend: str
) -> None:
    s = Curve25519Suite(backend)
    data, offsets = items(values)
    hashed = s.hash_to_group(data, offsets)
    out = s.hash_mul(k, data, offsets)
    assert out == s.mul(k, hashed)
    sk = X25519PrivateKey.from_private_bytes(k)
    for i, v in enumerate(values):
        u = hashlib.sha256(v).digest()
        assert hashed[32 * i : 32 * i + 32] == u  # DIRECT_HASH_AS_POINT_X
        want = sk.exchange(X25519PublicKey.from_public_bytes(u))
        assert out[32 * i : 32 * i + 32] == want
        assert s.mul(k, u) == want  # a batch of one


@settings(max_examples=25, deadline=None)
@given(values_st, scalar_r255_st)
def test_ristretto_batch_equals_one_at_a_time(values: list[bytes], k: bytes) -> None:
    s = Ristretto255Suite()
    data, offsets = items(values)
    hashed = s.hash_to_group(data, offsets)
    out = s.hash_mul(k, data, offsets)
    for i, v in enumerate(values):
        h = _core.ristretto_from_uniform_bytes(xmd_sha512(v, groups.PSI_DST, 64))
        assert hashed[32 * i : 32 * i + 32] == h
        assert out[32 * i : 32 * i + 32] == s.mul(k, h)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="this CPU has no AVX-512 IFMA")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scalar25519_st, st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40))
def test_ifma_equals_portable(k: bytes, us: list[bytes]) -> None:
    # any 32 bytes, so the top bit and u >= p (non-canonical) come up; low-order u rarely
    points = b"".join(us)

    def run(backend: str) -> Any:
        try:
            return _core.x25519_mul(k, points, backend)
        except _core.InvalidElementError as exc:
            return str(exc)

    assert run("portable") == run("avx512ifma")


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**256 - 1), scalar25519_st)
def test_u_is_taken_mod_p_with_the_top_bit_ignored(u: int, k: bytes) -> None:
    s = get_suite("curve25519")
    canonical = ((u % 2**255) % P).to_bytes(32, "little")
    try:
        want = s.mul(k, canonical)
    except InvalidElementError:
        with pytest.raises(InvalidElementError):
            s.mul(k, u.to_bytes(32, "little"))
        return
    assert s.mul(k, u.to_bytes(32, "little")) == want


def test_disable_ifma_env_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAINBRIDGE_DISABLE_IFMA", "1")
    assert groups.backend() == "portable"
    monkeypatch.delenv("RAINBRIDGE_DISABLE_IFMA")
    assert groups.backend() == BACKENDS[-1]
    assert groups.build_info()["x25519_backend"] == BACKENDS[-1]


def test_build_info() -> None:
    info = groups.build_info()
    assert info["version"]
    assert isinstance(info["target_features"], list)
    assert info["avx512ifma"] == ("avx512ifma" in info["target_features"])


@pytest.mark.parametrize("name", SUITES)
def test_empty_batches(name: str) -> None:
    s = get_suite(name)
    k = s.random_scalar()
    empty = np.zeros(1, dtype=np.int64)
    assert s.hash_to_group(b"", empty) == b""
    assert s.hash_mul(k, b"", empty) == b""
    assert s.mul(k, b"") == b""
    assert _core.ristretto_from_uniform_bytes(b"") == b""
    _core.ristretto_validate(b"")


@pytest.mark.parametrize("name", SUITES)
def test_buffer_kinds_are_accepted(name: str) -> None:
    s = get_suite(name)
    k = s.random_scalar()
    values = [b"alice", b"", "客户".encode(), b"x" * 100]
    data, offsets = items(values)
    want = s.hash_mul(k, data, offsets)
    for d in (bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8),
              pa.py_buffer(data)):  # fmt: skip
        assert s.hash_mul(k, d, offsets) == want
    for o in (offsets.tobytes(), offsets.tolist(), memoryview(offsets), offsets.astype(np.int32)):
        assert s.hash_mul(k, data, o) == want
    # little-endian int64 bytes at an odd address (copied, not reinterpreted, by the core)
    unaligned = memoryview(b"x" + offsets.tobytes())[1:]
    assert s.hash_mul(k, data, unaligned) == want
    # offsets that start past 0 (a slice of a larger Arrow array)
    assert s.hash_mul(k, b"zz" + data, offsets + 2) == want
    points = s.hash_to_group(data, offsets)
    masked = s.mul(k, points)
    for p in (bytearray(points), memoryview(points), np.frombuffer(points, dtype=np.uint8)):
        assert s.mul(k, p) == masked


@pytest.mark.parametrize("name", SUITES)
def test_malformed_batches_are_clear_errors(name: str) -> None:
    s = get_suite(name)
    k = s.random_scalar()
    bad_offsets: list[Any] = [
        np.array([0, 5], dtype=np.int64),  # past the data
        np.array([2, 1], dtype=np.int64),  # decreasing
        np.array([-1, 1], dtype=np.int64),  # negative
        np.array([], dtype=np.int64),  # no n + 1 entries
        b"\x00" * 7,  # not whole int64s
    ]
    for o in bad_offsets:
        with pytest.raises(ConfigError):
            s.hash_to_group(b"abc", o)
        with pytest.raises(ConfigError):
            s.hash_mul(k, b"abc", o)
    for o in (memoryview(np.array([0, 1, 2, 3], dtype=np.int64))[::2],  # strided view
              memoryview(np.array([0, 3], dtype=">i8")),  # big-endian
              memoryview(np.array([0, 3], dtype=np.float64))):  # fmt: skip
        with pytest.raises(ValueError, match="offsets"):
            _core.x25519_hash_to_point(b"abc", o)
    # a strided numpy array is made contiguous by the wrapper, not refused
    assert s.hash_to_group(b"abc", np.array([[0, 9], [3, 9]])[:, 0]) == s.hash_to_group(
        b"abc", [0, 3]
    )
    with pytest.raises(InvalidElementError, match="multiple of 32"):
        s.mul(k, b"\x01" * 33)
    with pytest.raises(InvalidElementError, match="32 bytes"):
        s.mul(k[:31], bytes(s.hash_to_group(b"a", [0, 1])))
    with pytest.raises(ValueError, match="multiple of 64"):
        _core.ristretto_from_uniform_bytes(b"\x00" * 65)
    with pytest.raises(TypeError):
        s.mul(k, "not a buffer")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40), st.lists(st.integers(-5, 60), max_size=8))
def test_arbitrary_offsets_never_crash(data: bytes, offs: list[int]) -> None:
    s = get_suite("curve25519")
    o = np.array(offs, dtype=np.int64)
    ok = len(offs) >= 1 and offs[0] >= 0 and offs == sorted(offs) and offs[-1] <= len(data)
    try:
        out = s.hash_to_group(data, o)
    except ConfigError:
        assert not ok
    else:
        assert ok
        assert out == b"".join(
            hashlib.sha256(data[a:b]).digest() for a, b in itertools.pairwise(offs)
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_bad_index_is_named(backend: str) -> None:
    s = Curve25519Suite(backend)
    k = s.random_scalar()
    n = 3000
    data, offsets = items([i.to_bytes(4, "little") for i in range(n)])
    points = bytearray(s.hash_to_group(data, offsets))
    for at in (2900, 1234):  # in different parallel chunks: the first is named
        points[32 * at : 32 * at + 32] = bytes(32)
    with pytest.raises(InvalidElementError, match="index 1234") as exc:
        s.mul(k, points)
    assert k.hex() not in str(exc.value)
    assert isinstance(exc.value, RainbridgeError)

    r = Ristretto255Suite()
    rk = r.random_scalar()
    rp = bytearray(r.hash_to_group(data, offsets))
    rp[32 * 2000 : 32 * 2001] = bytes(32)  # the identity
    rp[32 * 700 : 32 * 701] = b"\xff" * 32  # not canonical
    with pytest.raises(InvalidElementError, match="index 700"):
        r.mul(rk, rp)


def test_ristretto_scalars_must_be_canonical_and_nonzero() -> None:
    s = Ristretto255Suite()
    p = s.hash_to_group(b"a", [0, 1])
    for bad in (bytes(32), ORDER.to_bytes(32, "little"), b"\xff" * 32, (1).to_bytes(31, "little")):
        with pytest.raises(InvalidElementError) as exc:
            s.mul(bad, p)
        assert bad.hex() not in str(exc.value)
        with pytest.raises(InvalidElementError):
            s.hash_mul(bad, b"a", [0, 1])
    assert s.mul((ORDER - 1).to_bytes(32, "little"), p)
    k = s.random_scalar()
    assert 0 < int.from_bytes(k, "little") < ORDER


def test_suite_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="unknown curve suite"):
        get_suite("p256")
    with pytest.raises(ConfigError):
        Ristretto255Suite(dst=b"")
    with pytest.raises(ConfigError):
        Curve25519Suite(backend="gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        _core.x25519_mul(bytes(32), b"", "gpu")
    assert groups.suite_names() == ["curve25519", "ristretto255"]


def test_x25519_random_scalars_differ() -> None:
    s = get_suite("curve25519")
    assert len({s.random_scalar() for _ in range(16)}) == 16


def spins_during(fn: Any) -> int:
    """How often a spinning Python thread counted while ``fn()`` ran. With a short switch
    interval a GIL-holding ``fn`` lets it count only for an interval or two (a few thousand)."""
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.01)
        before = count[0]
        fn()
        return count[0] - before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


def test_spins_during_detects_a_gil_holding_call() -> None:
    # the control: a regular expression backtracks for a while holding the GIL
    assert spins_during(lambda: re.match(r"(a|aa)*c", "a" * 30)) < 250_000


@pytest.mark.parametrize("name", SUITES)
def test_the_gil_is_released_while_the_core_works(name: str) -> None:
    s = get_suite(name)
    k = s.random_scalar()
    n = 40_000 if name == "curve25519" else 8_000  # a few hundred milliseconds
    data, offsets = items([i.to_bytes(4, "little") for i in range(n)])
    points = s.hash_to_group(data, offsets)
    assert spins_during(lambda: s.mul(k, points)) > 500_000


def test_core_error_is_a_value_error_that_pickles() -> None:
    # job workers hand errors across processes
    assert issubclass(_core.InvalidElementError, ValueError)
    assert _core.InvalidElementError.__module__ == "rainbridge._core"
    e = pickle.loads(pickle.dumps(_core.InvalidElementError("index 3")))
    assert isinstance(e, _core.InvalidElementError) and str(e) == "index 3"
