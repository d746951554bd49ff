"""Running a node: the REST API and the data plane in one event loop, stopped gracefully.

``rainbridge node start`` builds a :class:`NodeServer` from the node's configuration and runs
it until SIGINT or SIGTERM. This module owns the signals (uvicorn's own handlers re-raise the
signal after its shutdown, which would kill the process before the workers are stopped): the
first signal stops accepting requests, fails the running jobs with "node stopped", tells the
other parties, stops the workers and closes the data plane; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from rainbridge.errors import ConfigError
from rainbridge.node.api import create_app
from rainbridge.node.api_tls import load_certificate, server_context
from rainbridge.node.config import NodeConfig
from rainbridge.node.health_api import check_metrics_host, metrics_app
from rainbridge.node.logs import setup_logging
from rainbridge.node.service import NodeService

log = logging.getLogger("rainbridge.node.server")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # NodeServer handles SIGINT/SIGTERM itself (see the module docstring).
        yield


def bind_api(host: str, port: int) -> socket.socket:
    """Bind the API's socket before anything starts, so a busy port is a clear error.

    Raises
    ------
    ConfigError
        The address cannot be bound (port in use, unknown host).
    """
    try:
        return _listen(host, port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen for the REST API on {host}:{port}: {exc.strerror or exc} "
            f"(is the node already running? change api.port in node.toml)"
        ) from None


def bind_metrics(host: str, port: int) -> socket.socket:
    """Bind the token-less metrics listener's socket (``metrics_host:metrics_port``).

    Raises
    ------
    ConfigError
        ``host`` is a public address (see :func:`~.health_api.check_metrics_host`), or the
        address cannot be bound.
    """
    warning = check_metrics_host(host)
    if warning is not None:
        log.warning("%s", warning)
    try:
        return _listen(host, port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen for metrics on {host}:{port}: {exc.strerror or exc} "
            f"(change metrics_port, or 0 for no metrics listener)"
        ) from None


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio disables Nagle only on accepted sockets whose
    # proto says TCP, and with Nagle a keep-alive client waited 40 ms for every answer
    # split in two writes (headers, body) behind its delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class NodeServer:
    """The REST API (uvicorn) and the node's service in one asyncio loop.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._stopping = False
        self.uvicorn: _Uvicorn | None = None
        self.metrics_server: _Uvicorn | None = None

    async def serve(self) -> None:
        """Serve until :meth:`shutdown` (or a signal), then stop every job and the data plane."""
        token = self.config.token()
        cfg = self.config
        sock = bind_api(cfg.api_host, cfg.api_port)
        msock: socket.socket | None = None
        try:
            if cfg.metrics_port:
                msock = bind_metrics(cfg.metrics_host, cfg.metrics_port)
            service = NodeService(cfg)
            tls = (
                server_context(service.identity, cfg.api_cert, cfg.api_key)
                if cfg.api_uses_tls
                else None
            )
            await service.start()
        except BaseException:
            sock.close()
            if msock is not None:
                msock.close()
            raise
        if tls is not None and not cfg.api_cert:
            # a key rotation changes the node's certificate: new API connections present it
            service.peers.identity_listeners.append(lambda ident: load_certificate(tls, ident))
        app = create_app(service, token)
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,  # uvicorn's records go to the node's handler, in its format
            timeout_graceful_shutdown=5,
            lifespan="off",
        )
        config.load()
        config.ssl = tls  # our context (TLS 1.2+, AEAD), not one uvicorn builds from files
        self.uvicorn = _Uvicorn(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.shutdown)
        log.info("node %s: REST API on %s", cfg.name, cfg.api_url)
        scrape: asyncio.Task[None] | None = None
        if msock is not None:
            self.metrics_server = _Uvicorn(
                uvicorn.Config(
                    metrics_app(service),
                    log_level="warning",
                    log_config=None,
                    lifespan="off",
                    access_log=False,
                )
            )
            scrape = asyncio.create_task(self.metrics_server.serve(sockets=[msock]))
            log.info(
                "node %s: metrics without a token on http://%s:%d/metrics (a private "
                "scrape network only)",
                cfg.name,
                cfg.metrics_host,
                cfg.metrics_port,
            )
        try:
            await self.uvicorn.serve(sockets=[sock])
        finally:
            log.info("node %s: stopping", cfg.name)
            if self.metrics_server is not None and scrape is not None:
                self.metrics_server.should_exit = True
                with contextlib.suppress(Exception):
                    await scrape
            if msock is not None:
                msock.close()
            await service.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            sock.close()
            log.info("node %s: stopped", cfg.name)

    def shutdown(self) -> None:
        """Begin a graceful stop; a second call forces uvicorn to drop open connections."""
        if self.uvicorn is None:
            return
        if self._stopping:
            self.uvicorn.force_exit = True
        self._stopping = True
        self.uvicorn.should_exit = True


def run(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM, logging as its settings say."""
    setup_logging(
        config.log_format,
        config.log_level,
        config.log_file,
        directory=config.path,
        max_bytes=config.log_max_bytes,
        backups=config.log_backups,
    )
    asyncio.run(NodeServer(config).serve())
