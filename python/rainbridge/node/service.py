"""One party's node, composed: the parts it is built from and the services they serve.

:class:`NodeService` is the composition root. It opens the node's storage, keys and ledger,
makes the runner of job workers, the data plane and the router of peers' messages, and
builds each service with exactly what it uses:

=============  ================================================================  ==========
service        what it does                                                      module
=============  ================================================================  ==========
``jobs``       proposal, acceptance, approval, start, cancel, abort              ``jobs``
``closing``    the end of a job: reports, metering, the countersigned record     ``closing``
``peers``      pinning, revocation, liveness, this node's key rotation           ``peers``
``owners``     datasets, catalogue, policies, grants                             ``owners``
``models``     the model registry and online scoring                             ``models``
``pir``        keyword PIR services and replicas                                 ``pir``
``mlq``        the multi-lender count                                            ``mlq``
``interop``    interconnection peers and PSI with other platforms                ``interop``
=============  ================================================================  ==========

No service reaches into another's state: where one needs another (the jobs check the
owners' grants, a revoked grant stops jobs), it is given the other, or the one function it
calls, when it is built. Each registers the peer messages it answers with the router.
The REST API (:mod:`rainbridge.node.api`) and the tests drive the services through this
object.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rainbridge.crypto.certs import TlsIdentity
from rainbridge.node.background import Background
from rainbridge.node.closing import JobClosing
from rainbridge.node.config import NodeConfig, private_dir
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.interop import Interop
from rainbridge.node.jobs import Jobs
from rainbridge.node.keys import NodeKeys
from rainbridge.node.ledger import Ledger
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.mlq import Mlq
from rainbridge.node.models import Models
from rainbridge.node.owners import DataOwners
from rainbridge.node.peers import Peers
from rainbridge.node.pir import Pir
from rainbridge.node.router import MessageRouter
from rainbridge.node.runner import FINAL, Runner
from rainbridge.node.storage import Storage
from rainbridge.node.users import Users

log = logging.getLogger("rainbridge.node")


class NodeService:
    """One party's node: its state, its data plane, its job workers and its services.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; its directory holds the key, certificate and database.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.name
        self.storage = Storage(config.database_url)
        #: the live counters and histograms, handed to the parts that count
        self.metrics = NodeMetrics()
        keys = NodeKeys.load(config.path, config.crypto_suite, config.master_key_file)
        self.ledger = Ledger(self.storage, self.name, keys, config.path, metrics=self.metrics)
        self.users = Users(self.storage)
        token_file = config.path / "api.token"
        if token_file.is_file():  # the token `node init` wrote is the first admin's
            self.users.ensure("admin", "admin", token_file.read_text().strip())
        self.background = Background()
        self.router = MessageRouter(self.storage, self.background)
        # the runner reports a worker's end to services built after it: bound late
        self.runner = Runner(
            config,
            self.storage,
            lambda job_id, code, message: self.jobs.on_worker_failure(job_id, code, message),
            on_ended=lambda job_id: self.closing.on_job_ended(job_id),
            key_password=keys.identity.key_password,
            metrics=self.metrics,
        )
        self.dataplane = DataPlane(
            config,
            keys.identity,
            self.storage,
            self.runner,
            self.background,
            self.router.dispatch,
            metrics=self.metrics,
        )
        self.interop = Interop(config, self.storage, lambda: self.peers.keys.identity)
        self.owners = DataOwners(
            config,
            self.storage,
            self.dataplane,
            self.router,
            stop_job=lambda job_id, why: self.jobs.stop_job(job_id, why),
        )
        self.models = Models(config, self.storage, self.dataplane, self.router)
        self.pir = Pir(config, self.storage, self.dataplane, self.router, metrics=self.metrics)
        self.mlq = Mlq(config, self.storage, self.dataplane, self.router, metrics=self.metrics)
        self.jobs = Jobs(
            config,
            self.storage,
            self.dataplane,
            self.runner,
            self.background,
            self.router,
            self.owners,
            self.interop,
            metrics=self.metrics,
            models=self.models,
        )
        self.closing = JobClosing(
            config,
            self.storage,
            self.ledger,
            self.dataplane,
            self.background,
            self.router,
            register_models=self.models.register_models,
            ic_names=self.interop.ic_names,
        )
        self.peers = Peers(
            config,
            self.storage,
            keys,
            self.ledger,
            self.dataplane,
            self.runner,
            self.background,
            self.router,
            stop_job=self.jobs.stop_job,
        )

    @property
    def keys(self) -> NodeKeys:
        """This node's current keys (a rotation replaces them)."""
        return self.peers.keys

    @property
    def identity(self) -> TlsIdentity:
        return self.peers.keys.identity

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the data plane; fail jobs that were under way when the node last stopped."""
        for d in ("jobs", "outputs"):
            private_dir(self.config.path / d)
        for row in self.storage.jobs(limit=10_000):
            if row.status not in FINAL:
                self.storage.update_job(row.id, status="failed", error="the node restarted")
        port = await self.dataplane.start()
        log.info("node %s: data plane on %s:%d", self.name, self.config.data_host, port)

    async def stop(self, reason: str | None = None) -> None:
        """Stop every job (telling the other parties why), then the data plane."""
        reason = reason or "node stopped"
        running = self.runner.running()
        for job_id in running:
            self.jobs.end(job_id, "failed", reason)
        await asyncio.gather(
            *(self.jobs.tell_parties(job_id, reason) for job_id in running),
            return_exceptions=True,
        )
        await self.runner.stop_all()
        await self.dataplane.close()
        self.ledger.flush()
        await self.background.close()

    def info(self) -> dict[str, Any]:
        from rainbridge import __version__

        keys = self.keys
        return {
            "name": self.name,
            "fingerprint": keys.fingerprint,
            "data_plane": f"{self.config.data_host}:{self.dataplane.port}",
            "crypto_suite": keys.suite.name,
            "ledger_key": keys.ledger_key.alg,
            "version": __version__,
        }
