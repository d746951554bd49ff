"""Running a node: the REST API and the data plane in one event loop, stopped gracefully."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService


async def serve(config: NodeConfig) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles the signals), then stop workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service = NodeService(config)
    await service.start()
    app = create_app(service, config.token())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.api_host,
            port=config.api_port,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    )
    try:
        await server.serve()
    finally:
        await service.stop()


def run(config: NodeConfig) -> None:
    asyncio.run(serve(config))
