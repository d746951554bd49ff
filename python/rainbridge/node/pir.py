"""PIR services at a node (匿踪查询): the services it serves and its queries of peers'.

:class:`Pir` is the node's PIR service, made of two halves that share nothing but the
wire format (:mod:`rainbridge.protocols.pir.wire`):

* the server (:mod:`rainbridge.node.pir_server`) publishes a registered dataset's label
  columns as a sealed table, updates it by versions, and answers peers' queries, syncs
  and info requests under grants, rate limits and metering;
* the client (:mod:`rainbridge.node.pir_client`) keeps replicas of peers' tables and
  looks IDs up in them, privately or by bucket, or keeps their lattice hints and looks IDs
  up by lattice PIR at the server.

The REST routes are in :mod:`rainbridge.node.pir_api`.
"""

from __future__ import annotations

from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.pir_client import PirClient
from rainbridge.node.pir_server import PirServer
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import Storage


class Pir:
    """Keyword PIR at a node: its :attr:`server` half (the services it publishes and
    answers) and its :attr:`client` half (its replicas of peers' tables and its queries).

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; tables and replicas lie in its directory.
    storage : Storage
        Datasets, grants, metering and ledger.
    dataplane : DataPlane
        How the client asks peers.
    router : MessageRouter
        Where the server registers the peer messages it answers.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        dataplane: DataPlane,
        router: MessageRouter,
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.server = PirServer(config, storage, router, metrics=metrics)
        self.client = PirClient(config, storage, dataplane)
        self.publish_pir = self.server.publish
        self.update_pir = self.server.update
        self.pir_services = self.server.services
        self.pir_query = self.client.query
        self.pir_sync = self.client.sync
        self.pir_sync_hint = self.client.sync_hint
