"""SM2 signature verification (GB/T 32918.2) in plain Python, for stand-alone auditing.

Self-contained on purpose: it needs only the standard library and ``cryptography`` (for
SM3), because it is copied beside the stand-alone ledger verifier into every exported bundle.
It verifies public data only (a signature, a public key), so plain integer arithmetic needs
no constant-time care. The node itself signs and verifies through the native core.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

# The recommended curve of GB/T 32918.5 (sm2p256v1)
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
DEFAULT_DISTID = b"1234567812345678"

_Point = tuple[int, int, int]  # Jacobian coordinates; Z = 0 is the point at infinity
_INF: _Point = (1, 1, 0)


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _double(p: _Point) -> _Point:
    x, y, z = p
    if z == 0 or y == 0:
        return _INF
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = (3 * x * x + A * zz * zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return x3, y3, z3


def _add(p: _Point, q: _Point) -> _Point:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else _INF
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return x3, y3, z3


def _mul(k: int, p: _Point) -> _Point:
    acc = _INF
    for bit in bin(k)[2:]:
        acc = _double(acc)
        if bit == "1":
            acc = _add(acc, p)
    return acc


def _affine(p: _Point) -> tuple[int, int] | None:
    x, y, z = p
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _decode_public(public_key: bytes) -> tuple[int, int]:
    if len(public_key) != 65 or public_key[0] != 0x04:
        raise ValueError("an SM2 public key is 65 bytes: 04 || x || y")
    x = int.from_bytes(public_key[1:33], "big")
    y = int.from_bytes(public_key[33:], "big")
    if not _on_curve(x, y):
        raise ValueError("the SM2 public key is not on the curve")
    return x, y


def sm2_za(public_key: bytes, distid: bytes = DEFAULT_DISTID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)."""
    x, y = _decode_public(public_key)
    if len(distid) * 8 > 0xFFFF:
        raise ValueError("the distinguishing ID is too long")
    parts = [(len(distid) * 8).to_bytes(2, "big"), distid]
    parts += [v.to_bytes(32, "big") for v in (A, B, GX, GY, x, y)]
    return sm3(b"".join(parts))


def sm2_verify(
    public_key: bytes, message: bytes, signature: bytes, distid: bytes = DEFAULT_DISTID
) -> bool:
    """Whether ``signature`` (64 bytes, r || s) is a valid SM2 signature of ``message``.

    Raises
    ------
    ValueError
        The public key is malformed or not on the curve.
    """
    qx, qy = _decode_public(public_key)
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(sm3(sm2_za(public_key, distid) + message), "big")
    t = (r + s) % N
    if t == 0:
        return False
    point = _affine(_add(_mul(s, (GX, GY, 1)), _mul(t, (qx, qy, 1))))
    if point is None:
        return False
    return (e + point[0]) % N == r
