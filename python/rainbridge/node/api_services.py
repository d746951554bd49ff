"""The REST routes of the node's query services, in one place for the app: PIR
(:mod:`~rainbridge.node.pir_api`), the multi-lender count (:mod:`~rainbridge.node.mlq_api`)
and interconnection peers (:mod:`~rainbridge.node.interop_api`), each beside its service and
included here by :func:`add_service_routes` (called by
:func:`rainbridge.node.api.create_app`)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from rainbridge.node import interop_api, mlq_api, pir_api
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow


def add_service_routes(
    app: FastAPI,
    service: NodeService,
    may: Callable[[str], Callable[..., UserRow]],
    actor: Callable[[UserRow], str],
) -> None:
    """PIR, multi-lender and interconnection routes, under the app's auth and errors
    (``may(action)`` is the app's one permission dependency)."""
    for module in (pir_api, mlq_api, interop_api):
        app.include_router(module.router(service, may, actor))
