"""A small Protocol Buffers (proto3) wire codec for the interconnection messages.

The interconnection standard publishes its messages as ``.proto`` files; the handful this
project speaks are described here as schemas (field number, name, type) and encoded and
decoded directly on the wire format (varints, length-delimited fields, packed repeated
scalars, maps as repeated entries), so the product needs no generated code and no protoc.
Decoding is strict where it matters: a field with the wrong wire type, a truncated varint
or length, or a message nested deeper than 16 levels is a :class:`ProtocolViolationError`;
unknown fields are skipped, as proto3 requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rainbridge.errors import ProtocolViolationError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_SCALARS_VARINT = {"int32", "int64", "uint32", "uint64", "bool", "enum"}


@dataclass(frozen=True)
class Schema:
    name: str  # the full proto name, e.g. "org.interconnection.link.PushRequest"
    fields: tuple[Field, ...]

    def by_number(self) -> dict[int, Field]:
        return {f.number: f for f in self.fields}


@dataclass(frozen=True)
class Field:
    number: int
    name: str
    kind: str | Schema  # a scalar kind, "string", "bytes", a Schema or "map<uint32,uint32>"
    repeated: bool = False


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1  # negative int32/int64: ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _scalar_int(kind: str, v: Any) -> int:
    if kind == "bool":
        return 1 if v else 0
    return int(v)


def encode(schema: Schema, msg: Mapping[str, Any]) -> bytes:
    """``msg`` (a dict by field name; absent or default values omitted) on the wire."""
    out = bytearray()
    for f in schema.fields:
        v = msg.get(f.name)
        if v is None:
            continue
        if f.kind == "map<uint32,uint32>":
            for k, val in sorted(dict(v).items()):
                entry = _key(1, _VARINT) + _varint(int(k)) + _key(2, _VARINT) + _varint(int(val))
                out += _key(f.number, _LEN) + _varint(len(entry)) + entry
            continue
        values = list(v) if f.repeated else [v]
        if f.repeated and f.kind in _SCALARS_VARINT:
            if values:  # packed, as proto3 does by default
                body = b"".join(_varint(_scalar_int(f.kind, x)) for x in values)
                out += _key(f.number, _LEN) + _varint(len(body)) + body
            continue
        for x in values:
            if isinstance(f.kind, Schema):
                body = encode(f.kind, x)
                out += _key(f.number, _LEN) + _varint(len(body)) + body
            elif f.kind in ("string", "bytes"):
                raw = x.encode() if isinstance(x, str) else bytes(x)
                if not f.repeated and not raw:
                    continue  # proto3 default
                out += _key(f.number, _LEN) + _varint(len(raw)) + raw
            else:
                n = _scalar_int(f.kind, x)
                if not f.repeated and n == 0:
                    continue
                out += _key(f.number, _VARINT) + _varint(n)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = memoryview(data), 0, what

    def bad(self, why: str) -> ProtocolViolationError:
        return ProtocolViolationError(f"malformed {self.what}: {why}")

    def varint(self) -> int:
        n, shift = 0, 0
        while True:
            if self.at >= len(self.data) or shift > 63:
                raise self.bad("truncated varint")
            b = self.data[self.at]
            self.at += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def chunk(self) -> bytes:
        n = self.varint()
        if n > len(self.data) - self.at:
            raise self.bad("a length beyond the message")
        out = bytes(self.data[self.at : self.at + n])
        self.at += n
        return out

    def skip(self, wire: int) -> None:
        if wire == _VARINT:
            self.varint()
        elif wire == _LEN:
            self.chunk()
        elif wire in (_I64, _I32):
            width = 8 if wire == _I64 else 4
            if self.at + width > len(self.data):
                raise self.bad("truncated fixed field")
            self.at += width
        else:
            raise self.bad(f"unsupported wire type {wire}")


def _signed(kind: str, n: int) -> Any:
    if kind in ("int32", "int64", "enum") and n >= 1 << 63:
        n -= 1 << 64
    if kind == "int32" and not -(1 << 31) <= n < 1 << 31:
        n = ((n + (1 << 31)) % (1 << 32)) - (1 << 31)
    if kind == "bool":
        return n != 0
    return n


def decode(schema: Schema, data: bytes, depth: int = 0) -> dict[str, Any]:
    """A message from the wire: a dict with every field (defaults filled in)."""
    if depth > 16:
        raise ProtocolViolationError(f"malformed {schema.name}: nested too deeply")
    out: dict[str, Any] = {}
    for f in schema.fields:
        if f.kind == "map<uint32,uint32>":
            out[f.name] = {}
        elif f.repeated:
            out[f.name] = []
        elif isinstance(f.kind, Schema):
            out[f.name] = None
        elif f.kind == "string":
            out[f.name] = ""
        elif f.kind == "bytes":
            out[f.name] = b""
        elif f.kind == "bool":
            out[f.name] = False
        else:
            out[f.name] = 0
    r = _Reader(data, schema.name)
    fields = schema.by_number()
    while r.at < len(r.data):
        key = r.varint()
        number, wire = key >> 3, key & 7
        found = fields.get(number)
        if found is None:
            r.skip(wire)
            continue
        f = found
        if f.kind == "map<uint32,uint32>":
            if wire != _LEN:
                raise r.bad(f"field {f.name} has wire type {wire}")
            entry = _Reader(r.chunk(), schema.name)
            k = v = 0
            while entry.at < len(entry.data):
                ek = entry.varint()
                if ek == (1 << 3) | _VARINT:
                    k = entry.varint()
                elif ek == (2 << 3) | _VARINT:
                    v = entry.varint()
                else:
                    entry.skip(ek & 7)
            out[f.name][k] = v
            continue
        if f.kind in _SCALARS_VARINT:
            if f.repeated and wire == _LEN:
                packed = _Reader(r.chunk(), schema.name)
                while packed.at < len(packed.data):
                    out[f.name].append(_signed(f.kind, packed.varint()))
                continue
            if wire != _VARINT:
                raise r.bad(f"field {f.name} has wire type {wire}")
            value: Any = _signed(f.kind, r.varint())
        else:
            if wire != _LEN:
                raise r.bad(f"field {f.name} has wire type {wire}")
            raw = r.chunk()
            if isinstance(f.kind, Schema):
                value = decode(f.kind, raw, depth + 1)
            elif f.kind == "string":
                try:
                    value = raw.decode()
                except UnicodeDecodeError:
                    raise r.bad(f"field {f.name} is not UTF-8") from None
            else:
                value = raw
        if f.repeated:
            out[f.name].append(value)
        else:
            out[f.name] = value
    return out


ANY = Schema(
    "google.protobuf.Any",
    (Field(1, "type_url", "string"), Field(2, "value", "bytes")),
)


def pack_any(schema: Schema, msg: Mapping[str, Any]) -> dict[str, Any]:
    """A ``google.protobuf.Any`` holding ``msg``."""
    return {"type_url": f"type.googleapis.com/{schema.name}", "value": encode(schema, msg)}


def unpack_any(schema: Schema, any_msg: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """The message an Any holds, checked to be of ``schema``'s type."""
    if not any_msg or not str(any_msg.get("type_url", "")).endswith("/" + schema.name):
        got = (any_msg or {}).get("type_url", "nothing")
        raise ProtocolViolationError(f"{what}: expected a {schema.name}, got {got!r}")
    return decode(schema, bytes(any_msg.get("value", b"")))
