"""The node's peers and its own keys: pinning, revocation, liveness and key rotation.

A peer is pinned by the SHA-256 fingerprint of its certificate, given out of band by its
operator; the data plane then trusts exactly the pinned certificates. Revoking a peer unpins
it at once and stops the jobs it takes part in. A key rotation makes new TLS and ledger keys,
tells every pinned peer with a hand-over signed by the old ledger key (each re-pins), and
switches without a restart; old certificates stay so that old entries still verify.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from rainbridge.audit.verify_ledger import ROTATION_DOMAIN, ledger_key_of, verify_signature
from rainbridge.crypto.certs import TlsIdentity, fingerprint_pem, normalise_fingerprint
from rainbridge.errors import AuthenticationError, ConfigError, RainbridgeError
from rainbridge.net.tls import fetch_certificate
from rainbridge.node.background import Background
from rainbridge.node.config import NodeConfig, check_name
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.keys import NodeKeys, load_master_key
from rainbridge.node.ledger import Ledger
from rainbridge.node.router import MessageRouter
from rainbridge.node.runner import Runner
from rainbridge.node.storage import CertificateRow, PeerRow, Storage


def parse_url(url: str) -> tuple[str, int]:
    """``host:port`` (optionally ``tls://host:port``) of a peer's data plane."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"peer URL {url!r}: expected HOST:PORT of the peer's data plane")
    return host.strip("[]"), int(port)


class Peers:
    """Pinned peers and this node's keys.

    Parameters
    ----------
    keys : NodeKeys
        This node's keys as loaded; :attr:`keys` is the current set after rotations.
    stop_job : callable
        ``await stop_job(job_id, why)``: end a job a revoked peer takes part in.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        keys: NodeKeys,
        ledger: Ledger,
        dataplane: DataPlane,
        runner: Runner,
        background: Background,
        router: MessageRouter,
        *,
        stop_job: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.name, self.config, self.storage, self.keys = config.name, config, storage, keys
        self.ledger, self.dataplane, self.runner = ledger, dataplane, runner
        self.background = background
        self.stop_job = stop_job
        #: called with the new identity after a key rotation (the API's TLS reloads)
        self.identity_listeners: list[Callable[[TlsIdentity], None]] = []
        router.add("rotate_key", self._on_rotate_key, owner="peers")
        router.add("ping", self._on_ping, owner="peers")

    @staticmethod
    async def _on_ping(peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}  # liveness for the console's overview; nothing is logged

    async def add_peer(
        self,
        name: str,
        url: str,
        fingerprint: str,
        cert_pem: str | None = None,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Pin a peer: its certificate must have ``fingerprint`` (fetched from ``url`` if not
        given).

        Raises
        ------
        ConfigError
            Invalid name, URL or fingerprint, or this node's own name.
        AuthenticationError
            The certificate does not have the given fingerprint.
        ChannelError
            Nothing answers at ``url`` (and no certificate was given).
        """
        check_name(name)
        if name == self.name:
            raise ConfigError(f"{name!r} is this node's own name")
        host, port = parse_url(url)
        fp = normalise_fingerprint(fingerprint)
        if cert_pem is None:
            cert_pem = await fetch_certificate(host, port)
        try:
            actual = fingerprint_pem(cert_pem)
        except (ValueError, TypeError):
            raise ConfigError(
                f"the certificate given for {name!r} is not a PEM certificate"
            ) from None
        if actual != fp:
            raise AuthenticationError(
                f"the certificate of {name!r} at {host}:{port} does not have the fingerprint "
                f"given; check both with the peer's operator"
            )
        row = self.storage.put_peer(
            PeerRow(name=name, host=host, port=port, fingerprint=fp, cert_pem=cert_pem)
        )
        self.storage.keep_certificate(name, fp, cert_pem)
        self.dataplane.reload()
        self.storage.log("peer_added", {"peer": name, "fingerprint": fp}, actor=actor)
        return row.to_dict()

    async def revoke_peer(self, name: str, actor: str = "node") -> dict[str, Any]:
        """Unpin ``name``: its connections are refused from now on and its jobs stopped."""
        row = self.storage.peer(name)
        now = dt.datetime.now(dt.UTC)
        with self.storage.session() as s:
            s.delete(s.get(PeerRow, name))
            for c in s.scalars(select(CertificateRow).where(CertificateRow.owner == name)):
                c.revoked_at = c.revoked_at or now
        self.dataplane.reload()  # its certificate leaves the data plane's pins at once
        self.storage.log(
            "peer_revoked", {"peer": name, "fingerprint": row.fingerprint}, actor=actor
        )
        for job_id in self.runner.running():
            job = self.storage.find_job(job_id)
            if job is not None and name in job.parties:
                await self.stop_job(job_id, f"peer {name} was revoked at {self.name}")
        return {"name": name, "revoked": True}

    # -- keys ------------------------------------------------------------------------------

    async def rotate_keys(self, actor: str = "node") -> dict[str, Any]:
        """New TLS and ledger keys without a restart; peers are told and re-pin.

        Peers are told first, over connections made with the old certificate, with the
        hand-over signed by the old ledger key; then this node switches. Old certificates stay
        in the history so old entries and records still verify.
        """
        master = load_master_key(self.config.path, self.config.master_key_file)
        old = self.keys.fingerprint
        prepared, handover = self.keys.prepare_rotation(self.name, master)
        msg = {
            "type": "rotate_key",
            "cert_pem": prepared.cert_pem,
            "handover_sig": handover,
        }
        told: dict[str, Any] = {}
        for p in self.storage.peers():  # over connections still made with the old key
            r = await self.dataplane.ask(p.name, msg)
            told[p.name] = r.get("ok") is True or r.get("reason")
        new_keys = self.keys.commit_rotation(prepared)
        self.ledger.rotate(new_keys, handover, actor)
        self.keys = new_keys
        self.runner.key_password = new_keys.identity.key_password
        self.dataplane.set_identity(new_keys.identity)
        for listener in self.identity_listeners:
            listener(new_keys.identity)
        return {"old": old, "new": new_keys.fingerprint, "peers_told": told}

    async def _on_rotate_key(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            row = await self.background.db(self.storage.peer, peer)
            pem = str(msg.get("cert_pem", ""))
            new_fp = fingerprint_pem(pem)
            alg, key = ledger_key_of(row.cert_pem)
            sig = bytes.fromhex(str(msg.get("handover_sig", "")))
        except (RainbridgeError, ValueError, TypeError):
            return {"ok": False, "reason": "malformed key rotation"}
        if not verify_signature(alg, key, sig, ROTATION_DOMAIN + bytes.fromhex(new_fp)):
            self.storage.log("peer_rotation_refused", {"peer": peer}, actor=f"peer:{peer}")
            return {"ok": False, "reason": "the hand-over is not signed by the pinned key"}
        await self.background.db(self._repin, peer, new_fp, pem)
        self.dataplane.reload()
        self.storage.log(
            "peer_key_rotated",
            {"peer": peer, "old": row.fingerprint, "new": new_fp},
            actor=f"peer:{peer}",
        )
        return {"ok": True}

    def _repin(self, peer: str, fingerprint: str, pem: str) -> None:
        self.storage.keep_certificate(peer, fingerprint, pem)
        with self.storage.session() as s:
            p = s.get(PeerRow, peer)
            if p is not None:
                p.fingerprint, p.cert_pem = fingerprint, pem
