"""Interconnection peers at a node: PSI with another platform over the open standard.

A peer that runs another platform (SecretFlow's interconnection mode, another vendor's) is
added as an *interconnection peer*: its gRPC ``Push`` address, its rank (this node takes
the other), where this node listens, the channel name and message-counter base the two
agreed, and, for mutual TLS, its certificate (pinned as the only root). ``interop_psi``
then runs the standard's ECDH-PSI with it (:mod:`rainbridge.interop.ecdh_psi`) on one of
this node's datasets, under the same rules as a native PSI job:

* a grant must let that peer use the dataset for ``psi`` on its ID column, with the
  receivers the run asks for (``max_calls``/``max_rows`` counted as for a job);
* the output is the psi component's: the common IDs (sorted) with the named own columns,
  written as Parquet or CSV under ``DIR/outputs/interop-<id>/``, and only at a receiver;
* the run is metered (``component_type: psi``) and ledgered (started, finished or failed,
  with sizes, suite and bytes); a failed run leaves no output.

Both sides must be started for the same run (the standard has no proposal step): the
REST call waits for the peer within the node's timeout.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from rainbridge.crypto.certs import TlsIdentity
from rainbridge.data import read_columns, read_ids, write_table_atomic
from rainbridge.errors import ConfigError, NotFoundError, RainbridgeError
from rainbridge.interop import IcLink, IcPsiParams, IcTls, run_ic_ecdh_psi
from rainbridge.interop.ecdh_psi import SUITES
from rainbridge.node.config import NodeConfig, check_name
from rainbridge.node.grants import use_grant
from rainbridge.node.storage import GrantRow, IcPeerRow, MeterRow, Storage


class Interop:
    """Interconnection peers (other platforms speaking the interconnection standard) and
    the PSI runs with them.

    Parameters
    ----------
    identity : callable
        The node's current TLS identity (it changes with a key rotation).
    """

    def __init__(
        self, config: NodeConfig, storage: Storage, identity: Callable[[], TlsIdentity]
    ) -> None:
        self.name, self.config, self.storage = config.name, config, storage
        self._identity = identity

    @property
    def identity(self) -> TlsIdentity:
        return self._identity()

    def add_ic_peer(
        self,
        *,
        name: str,
        url: str,
        rank: int,
        listen: str,
        channel: str = "root",
        counter_start: int = 0,
        cert_pem: str | None = None,
        tls_name: str | None = None,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Record an interconnection peer (replacing one of that name)."""
        check_name(name)
        for what, addr in (("url", url), ("listen", listen)):
            host, sep, port = addr.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
                raise ConfigError(f"interconnection {what} {addr!r}: expected HOST:PORT")
        if rank not in (0, 1):
            raise ConfigError("the peer's rank is 0 or 1 (this node takes the other)")
        if counter_start not in (0, 1):
            raise ConfigError("message counters start at 0 (the standard) or 1")
        if not channel.replace("_", "a").isalnum():
            raise ConfigError(f"channel {channel!r}: letters, digits and '_' only")
        if cert_pem is not None and "BEGIN CERTIFICATE" not in cert_pem:
            raise ConfigError("the peer's certificate must be PEM")
        row = IcPeerRow(
            name=name,
            url=url,
            rank=rank,
            listen=listen,
            channel=channel,
            counter_start=counter_start,
            cert_pem=cert_pem,
            tls_name=tls_name,
        )
        with self.storage.session() as s:
            s.merge(row)
        d = row.to_dict()
        self.storage.log(
            "ic_peer_added", {k: v for k, v in d.items() if k != "added_at"}, actor=actor
        )
        return d

    def ic_peers(self) -> list[dict[str, Any]]:
        with self.storage.session() as s:
            return [r.to_dict() for r in s.scalars(select(IcPeerRow).order_by(IcPeerRow.name))]

    def ic_names(self) -> set[str]:
        """Names of the interconnection peers."""
        with self.storage.session() as s:
            return set(s.scalars(select(IcPeerRow.name)))

    def ic_peer_config(self, name: str) -> dict[str, Any]:
        """What a job's worker needs to reach interconnection peer ``name``."""
        r = self.ic_peer(name)
        return {
            "url": r.url,
            "rank": r.rank,
            "listen": r.listen,
            "channel": r.channel,
            "counter_start": r.counter_start,
            "cert_pem": r.cert_pem,
            "tls_name": r.tls_name,
            "timeout": self.config.timeout,
        }

    def check_interop_job(self, job: Any) -> None:
        """A job with an interconnection peer: two parties, ECDH ``psi`` components only
        (all the standard defines), and the peer is not asked to receive anything it cannot."""
        ic = [p for p in job.parties if p in self.ic_names()]
        if not ic:
            return
        if len(job.parties) != 2:
            raise ConfigError(f"a job with interconnection peer {ic[0]!r} has two parties")
        for c in job.components:
            if c.type != "psi" or c.params.get("protocol", "ecdh") != "ecdh":
                raise ConfigError(
                    f"component {c.id!r}: with interconnection peer {ic[0]!r} a job runs "
                    "psi with protocol ecdh only (what the standard defines)"
                )
            if c.params.get("cardinality_only") or c.params.get("payload"):
                raise ConfigError(f"component {c.id!r}: the standard's PSI has no variants")
            if c.inputs[ic[0]].dataset is None:
                raise ConfigError(f"component {c.id!r}: {ic[0]!r} reads its own data")

    def ic_peer(self, name: str) -> IcPeerRow:
        with self.storage.session() as s:
            row = s.get(IcPeerRow, name)
        if row is None:
            raise NotFoundError(f"no interconnection peer {name!r} (add it first)")
        return row

    async def interop_psi(
        self,
        *,
        peer: str,
        dataset: str,
        receivers: str = "both",
        columns: list[str] | None = None,
        suites: list[str] | None = None,
        output_format: str = "parquet",
        actor: str = "node",
    ) -> dict[str, Any]:
        """Run the standard's ECDH-PSI with interconnection peer ``peer`` on ``dataset``.

        ``receivers``: ``both``, ``us`` or ``peer`` (who learns the intersection).
        """
        t0 = time.process_time()
        row = self.ic_peer(peer)
        ref = self.storage.dataset_refs().get(dataset)
        if ref is None:
            raise NotFoundError(f"no dataset {dataset!r} at this node")
        if not ref.id_column:
            raise ConfigError(f"dataset {dataset!r} has no ID column")
        if receivers not in ("both", "us", "peer"):
            raise ConfigError("receivers: both, us or peer")
        if output_format not in ("parquet", "csv"):
            raise ConfigError("output format: parquet or csv")
        suites = list(suites or SUITES)
        if not suites or any(s not in SUITES for s in suites):
            raise ConfigError(f"suites: some of {', '.join(SUITES)}")
        columns = [c for c in (columns or []) if c != ref.id_column]
        my_rank = 1 - row.rank
        to_rank = {"both": -1, "us": my_rank, "peer": row.rank}[receivers]
        named = {"both": [self.name, peer], "us": [self.name], "peer": [peer]}[receivers]
        ids = read_ids(ref, ref.id_column)
        if columns:
            read_columns(ref, columns)  # a missing column fails before any byte is sent
        grant = use_grant(
            self.storage,
            dataset=dataset,
            peer=peer,
            component_type="psi",
            columns=[ref.id_column],
            receivers=named,
            rows=len(ids),
            what=f"intersect with dataset {dataset!r}",
        )
        run_id = secrets.token_hex(8)
        detail = {
            "run": run_id,
            "peer": peer,
            "dataset": dataset,
            "receivers": receivers,
            "rank": my_rank,
            "grant": grant.id,
        }
        self.storage.log("interop_psi_started", detail, actor=actor)
        link = self.ic_link(row, my_rank)
        try:
            await link.start()
            result = await run_ic_ecdh_psi(
                link, ids, IcPsiParams(result_to_rank=to_rank, suites=tuple(suites))
            )
        except RainbridgeError as exc:
            self.storage.log(
                "interop_psi_failed", {**detail, "reason": str(exc)[:300]}, actor=actor
            )
            self._ic_meter(run_id, peer, grant, "failed", 0, link, t0)
            raise
        finally:
            await link.close()
        out: dict[str, Any] = {
            **detail,
            "suite": result.stats["suite"],
            "intersection_size": result.size if result.size >= 0 else None,
            "stats": result.stats,
        }
        if result.indices is not None:
            idx = pa.array(result.indices, pa.int64())
            table = pa.table({ref.id_column: ids.take(idx).cast(pa.string())})
            if columns:
                own = read_columns(ref, columns).take(idx)
                for c in columns:
                    table = table.append_column(c, own.column(c))
            table = table.take(pc.sort_indices(table, [(ref.id_column, "ascending")]))
            path = (
                Path(self.config.path)
                / "outputs"
                / f"interop-{run_id}"
                / (f"intersection.{output_format}")
            )
            write_table_atomic(table, path, output_format)
            out["output"] = {
                "path": str(path),
                "rows": table.num_rows,
                "columns": table.column_names,
            }
        self._ic_meter(run_id, peer, grant, "succeeded", len(ids), link, t0)
        self.storage.log(
            "interop_psi_finished",
            {
                **detail,
                "suite": out["suite"],
                "intersection": out["intersection_size"],
                "bytes_sent": link.bytes_sent,
                "bytes_received": link.bytes_received,
            },
            actor=actor,
        )
        return out

    def ic_link(self, row: IcPeerRow, my_rank: int) -> IcLink:
        """This node's end of an interconnection link to ``row``, bounded by the node's
        configured limits (message size, bytes and messages held per peer)."""
        tls = None
        if row.cert_pem is not None:
            tls = IcTls.from_identity(self.identity, row.cert_pem, row.tls_name)
        return IcLink(
            my_rank,
            row.listen,
            {row.rank: row.url},
            channel=row.channel,
            counter_start=row.counter_start,
            timeout=self.config.timeout,
            tls=tls,
            max_message=self.config.interop_max_message,
            max_pending_bytes=self.config.interop_max_pending_bytes,
            max_pending=self.config.interop_max_pending,
        )

    def _ic_meter(
        self,
        run_id: str,
        peer: str,
        grant: GrantRow,
        status: str,
        rows: int,
        link: IcLink,
        t0: float,
    ) -> None:
        with self.storage.session() as s:
            s.add(
                MeterRow(
                    job_id=f"interop:{run_id}",
                    peer=peer,
                    grant_id=grant.id,
                    component="psi",
                    component_type="psi",
                    status=status,
                    calls=1,
                    rows=rows,
                    bytes=link.bytes_sent + link.bytes_received,
                    cpu_seconds=round(time.process_time() - t0, 3),
                )
            )
