"""Secure aggregation: a server learns the sum of the clients' vectors and nothing else, even
when clients drop out mid-round (Bonawitz et al., CCS 2017, the semi-honest protocol).

Setup, once per session: every client makes two X25519 key pairs — one to encrypt the
shares it sends other clients through the server, one to agree pairwise masks — and the
server relays the public keys. Each client splits its mask key t-of-n among the others
(Shamir over the prime 2^521 - 1) and sends each share encrypted (AES-GCM, a key from
X25519 + HKDF) through the server, which cannot read them.

A round: each client draws a fresh self-mask seed ``b``, shares it the same way, and sends
``x + PRG(b) + Σ_{j>i} PRG(s_ij) - Σ_{j<i} PRG(s_ij)`` over Z_2^64 (fixed point), where
``s_ij`` is the pairwise X25519 secret with client j. Pairwise masks cancel in the sum. The
server then asks the surviving clients for the shares of each survivor's ``b`` and of each
dropped client's mask key — never both for one client (each client checks) — removes the
self masks and the dropped clients' pairwise masks, and keeps the sum.

Security model: semi-honest server and clients, the server colluding with fewer than
``t - 1`` clients learns only the sum of the survivors' vectors; it learns who dropped. A
round fails (``SecAggError``) when fewer than ``t`` clients survive to unmask.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rainbridge.errors import ChannelError, ProtocolViolationError, RainbridgeError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.prg import Prg
from rainbridge.protocols.mpc.ring import Ring, byte_view, decode, encode

PRIME = (1 << 521) - 1
FRAC_BITS = 24


class SecAggError(RainbridgeError):
    """A secure-aggregation round cannot finish (too few clients left, bad messages)."""

    code = "protocol"


# -- Shamir over GF(2^521 - 1) ------------------------------------------------------------


def shamir_split(secret: int, n: int, t: int) -> list[tuple[int, int]]:
    """``n`` shares (x = 1..n) of which any ``t`` recover ``secret``."""
    if not 0 <= secret < PRIME or not 1 <= t <= n:
        raise ValueError("bad Shamir parameters")
    coeffs = [secret] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    out = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coeffs):
            y = (y * x + c) % PRIME
        out.append((x, y))
    return out


def shamir_join(shares: Sequence[tuple[int, int]]) -> int:
    """Lagrange interpolation at 0."""
    total = 0
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total


# -- keys and masks -------------------------------------------------------------------------


def _raw(pub: X25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _priv_int(key: X25519PrivateKey) -> int:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return int.from_bytes(raw, "little")


def _priv_from_int(v: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(v.to_bytes(32, "little"))


def _aead_key(mine: X25519PrivateKey, theirs: bytes, a: str, b: str) -> AESGCM:
    secret = mine.exchange(X25519PublicKey.from_public_bytes(theirs))
    info = b"rainbridge/secagg/share-key/" + "|".join(sorted((a, b))).encode()
    return AESGCM(HKDF(hashes.SHA256(), 16, None, info).derive(secret))


def _pair_mask(secret: bytes, rnd: int, dim: int) -> Ring:
    seed = hashlib.sha256(b"rainbridge/secagg/mask" + secret + rnd.to_bytes(8, "little")).digest()
    return Prg(seed[:16]).words(dim)


def _self_mask(seed: int, dim: int) -> Ring:
    return Prg(seed.to_bytes(16, "little")).words(dim)


# -- client -----------------------------------------------------------------------------------


@dataclass
class SecAggClient:
    """One client's end; ``ch`` goes to the server. Use one object for a whole session."""

    name: str
    ch: Channel
    enc_key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    mask_key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    peers: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # name -> (enc, mask)
    held: dict[str, tuple[int, int]] = field(default_factory=dict)  # mask-key shares I hold
    threshold: int = 0
    rnd: int = 0
    _own_share: tuple[int, int] = (0, 0)

    async def setup(self) -> None:
        await self.ch.send_json(
            "secagg/keys",
            {"enc": _raw(self.enc_key.public_key()).hex(),
             "mask": _raw(self.mask_key.public_key()).hex()},
        )  # fmt: skip
        roster = await self.ch.recv_json("secagg/roster")
        if not isinstance(roster, dict) or self.name not in roster.get("keys", {}):
            raise ProtocolViolationError("malformed roster from the server")
        self.peers = {
            str(n): (bytes.fromhex(k["enc"]), bytes.fromhex(k["mask"]))
            for n, k in roster["keys"].items()
        }
        self.threshold = int(roster["threshold"])
        if not 2 <= self.threshold <= len(self.peers):
            raise ProtocolViolationError("a threshold outside 2..clients")
        await self._send_shares("secagg/key-shares", _priv_int(self.mask_key))
        self.held = await self._recv_shares("secagg/key-shares")

    def _ordered(self) -> list[str]:
        return sorted(self.peers)

    async def _send_shares(self, tag: str, secret: int) -> None:
        names = self._ordered()
        shares = shamir_split(secret, len(names), self.threshold)
        boxes = {}
        for peer, (x, y) in zip(names, shares, strict=True):
            if peer == self.name:
                continue
            box = _aead_key(self.enc_key, self.peers[peer][0], self.name, peer)
            nonce = os.urandom(12)
            ad = f"{tag}|{self.rnd}|{self.name}|{peer}".encode()
            body = json.dumps({"x": x, "y": hex(y)}).encode()
            boxes[peer] = (nonce + box.encrypt(nonce, body, ad)).hex()
        own = dict(zip(names, shares, strict=True))[self.name]
        await self.ch.send_json(tag, {"boxes": boxes, "own": None})
        self._own_share = own

    async def _recv_shares(self, tag: str) -> dict[str, tuple[int, int]]:
        got = await self.ch.recv_json(tag)
        if not isinstance(got, dict):
            raise ProtocolViolationError("malformed shares from the server")
        out = {self.name: self._own_share}
        for sender, hexbox in got.items():
            if sender not in self.peers or sender == self.name:
                raise ProtocolViolationError(f"a share from an unknown client {sender!r}")
            raw = bytes.fromhex(hexbox)
            box = _aead_key(self.enc_key, self.peers[sender][0], self.name, sender)
            ad = f"{tag}|{self.rnd}|{sender}|{self.name}".encode()
            try:
                body = json.loads(box.decrypt(raw[:12], raw[12:], ad))
            except Exception:
                raise ProtocolViolationError(f"a share from {sender!r} does not decrypt") from None
            out[sender] = (int(body["x"]), int(body["y"], 16))
        return out

    async def submit(self, x: npt.NDArray[np.float64]) -> None:
        """One round: send ``x`` masked, then help unmask."""
        self.rnd += 1
        b = secrets.randbelow(1 << 128)
        await self._send_shares("secagg/seed-shares", b)
        seed_shares = await self._recv_shares("secagg/seed-shares")
        alive = await self.ch.recv_json("secagg/alive")  # who shared a seed this round
        if not isinstance(alive, list) or self.name not in alive:
            raise ProtocolViolationError("malformed survivor list from the server")
        dim = x.shape[0]
        y = encode(x, FRAC_BITS) + _self_mask(b, dim)
        for peer in alive:
            if peer == self.name:
                continue
            secret = self.mask_key.exchange(X25519PublicKey.from_public_bytes(self.peers[peer][1]))
            m = _pair_mask(secret, self.rnd, dim)
            y = y + m if self.name < peer else y - m
        await self.ch.send(f"secagg/masked/{self.rnd}", byte_view(y))
        ask = await self.ch.recv_json("secagg/unmask")
        if not isinstance(ask, dict):
            raise ProtocolViolationError("malformed unmask request")
        survivors, dropped = set(ask.get("survivors", [])), set(ask.get("dropped", []))
        if survivors & dropped or not survivors <= set(alive) or not dropped <= set(alive):
            # a client's self-mask seed and its mask key together would unmask it alone
            raise SecAggError("the server asked for both secrets of one client; refusing")
        reply = {
            "seeds": {n: [seed_shares[n][0], hex(seed_shares[n][1])] for n in survivors
                      if n in seed_shares},
            "keys": {n: [self.held[n][0], hex(self.held[n][1])] for n in dropped
                     if n in self.held},
        }  # fmt: skip
        await self.ch.send_json("secagg/unmask", reply)


# -- server -----------------------------------------------------------------------------------


async def _gather(chs: Mapping[str, Channel], names: Sequence[str], recv: Any) -> dict[str, Any]:
    """recv(channel) from each of ``names``; a client that fails or is gone is left out."""

    async def one(n: str) -> tuple[str, Any]:
        try:
            return n, await recv(chs[n])
        except (ChannelError, ValueError) as exc:
            return n, exc

    got = await asyncio.gather(*(one(n) for n in names))
    return {n: v for n, v in got if not isinstance(v, Exception)}


@dataclass
class SecAggServer:
    """The aggregator's end; ``chs`` go to the clients."""

    chs: Mapping[str, Channel]
    threshold: int
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    rnd: int = 0
    dropped_for_good: set[str] = field(default_factory=set)

    async def setup(self) -> list[str]:
        names = sorted(self.chs)
        got = await _gather(self.chs, names, lambda ch: ch.recv_json("secagg/keys"))
        self.keys = {
            n: {"enc": str(v["enc"]), "mask": str(v["mask"])}
            for n, v in got.items()
            if isinstance(v, dict) and "enc" in v and "mask" in v
        }
        if len(self.keys) < self.threshold:
            raise SecAggError(f"only {len(self.keys)} clients sent keys; {self.threshold} needed")
        roster = {"keys": self.keys, "threshold": self.threshold}
        await asyncio.gather(*(self.chs[n].send_json("secagg/roster", roster) for n in self.keys))
        await self._relay("secagg/key-shares", list(self.keys))
        return sorted(self.keys)

    async def _relay(self, tag: str, names: list[str]) -> list[str]:
        got = await _gather(self.chs, names, lambda ch: ch.recv_json(tag))
        inbox: dict[str, dict[str, str]] = {n: {} for n in got}
        for sender, msg in got.items():
            for to, box in dict(msg.get("boxes", {})).items():
                if to in inbox:
                    inbox[to][sender] = str(box)
        await asyncio.gather(*(self.chs[n].send_json(tag, inbox[n]) for n in inbox))
        return sorted(got)

    async def aggregate(self, dim: int) -> tuple[npt.NDArray[np.float64], list[str]]:
        """One round: (the sum of the survivors' vectors, the survivors)."""
        self.rnd += 1
        members = sorted(set(self.keys) - self.dropped_for_good)
        alive = await self._relay("secagg/seed-shares", members)
        if len(alive) < self.threshold:
            raise SecAggError(f"{len(alive)} clients left; {self.threshold} needed to unmask")
        await asyncio.gather(*(self.chs[n].send_json("secagg/alive", alive) for n in alive))

        async def masked(ch: Channel) -> Ring:
            buf = np.empty(dim, dtype=np.uint64)
            got = await ch.recv_into(f"secagg/masked/{self.rnd}", byte_view(buf))
            if got != buf.nbytes:
                raise ProtocolViolationError("a masked vector of the wrong size")
            return buf

        ys = await _gather(self.chs, alive, masked)
        survivors = sorted(ys)
        dropped = sorted(set(alive) - set(survivors))
        ask = {"survivors": survivors, "dropped": dropped}
        await asyncio.gather(*(self.chs[n].send_json("secagg/unmask", ask) for n in survivors))
        replies = await _gather(self.chs, survivors, lambda ch: ch.recv_json("secagg/unmask"))
        if len(replies) < self.threshold:
            raise SecAggError(f"{len(replies)} clients helped unmask; {self.threshold} needed")
        total = np.zeros(dim, dtype=np.uint64)
        for y in ys.values():
            total += y
        for n in survivors:
            shares = [(int(r["seeds"][n][0]), int(r["seeds"][n][1], 16))
                      for r in replies.values() if n in r.get("seeds", {})]  # fmt: skip
            total -= _self_mask(_join(shares, self.threshold, n), dim)
        for d in dropped:
            shares = [(int(r["keys"][d][0]), int(r["keys"][d][1], 16))
                      for r in replies.values() if d in r.get("keys", {})]  # fmt: skip
            key = _priv_from_int(_join(shares, self.threshold, d))
            for n in survivors:
                secret = key.exchange(
                    X25519PublicKey.from_public_bytes(bytes.fromhex(self.keys[n]["mask"]))
                )
                m = _pair_mask(secret, self.rnd, dim)
                # survivor n added +m if n < d, else -m: take it back out
                total = total - m if n < d else total + m
            self.dropped_for_good.add(d)
        return np.asarray(decode(total, FRAC_BITS), dtype=np.float64), survivors


def _join(shares: list[tuple[int, int]], t: int, whose: str) -> int:
    if len(shares) < t:
        raise SecAggError(f"{len(shares)} shares of {whose!r}'s secret; {t} needed")
    return shamir_join(shares[:t])
