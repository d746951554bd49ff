"""What the REST API checks before a route sees a request: HTTPS for a ``/v1`` request from
off loopback (403 ``tls_required``), the bearer token before any body is read, the body's size
(413 ``body_too_large`` past :data:`MAX_BODY`), and a JSON body's nesting (422
``invalid_request`` past :data:`MAX_DEPTH`), as a pure ASGI middleware."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi.responses import JSONResponse

from rainbridge.errors import RainbridgeError
from rainbridge.node.api_tls import is_loopback
from rainbridge.node.storage import UserRow


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message}}, headers=headers
    )


MAX_BODY = 16 << 20
#: how deeply a JSON body may nest (objects and arrays)
MAX_DEPTH = 128

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')


def json_depth(body: bytes) -> int:
    """How deeply ``body`` (JSON text) nests, counted without parsing it."""
    a = np.frombuffer(_JSON_STRING.sub(b'""', body), np.uint8)
    if not len(a):
        return 0
    step = (a == ord("[")).astype(np.int64) + (a == ord("{")) - (a == ord("]")) - (a == ord("}"))
    return int(np.cumsum(step).max())


_Scope = MutableMapping[str, Any]


def in_clear_from_afar(scope: _Scope) -> bool:
    """A plain-HTTP request from another machine: its client is an IP address off loopback
    (a Unix socket or an in-process client has no IP address: it is this machine)."""
    if scope.get("scheme") != "http":
        return False
    host = str((scope.get("client") or ("",))[0])
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not is_loopback(host)


_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestGuard:
    """Pure ASGI middleware in front of the API: a ``/v1`` request's bearer token is checked
    before its body is read; the body is then read whole, up to ``max_body`` bytes, checked
    for nesting if it is JSON, and replayed to the application."""

    def __init__(
        self, app: Any, authenticate: Callable[[str], UserRow], max_body: int = MAX_BODY
    ) -> None:
        self.app, self.authenticate, self.max_body = app, authenticate, max_body

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        if path == "/v1" or path.startswith("/v1/"):
            if in_clear_from_afar(scope):
                # a token that came in clear is already lost; refuse it before looking at it
                refusal = error_response(
                    403, "tls_required", "the REST API takes tokens over HTTPS only off loopback"
                )
                await refusal(scope, receive, send)
                return
            scheme, _, given = headers.get("authorization", "").partition(" ")
            user = None
            if scheme.lower() == "bearer" and given.strip():
                try:
                    user = await anyio.to_thread.run_sync(self.authenticate, given.strip())
                except RainbridgeError:
                    user = None
            if user is None:
                refusal = error_response(401, "invalid_token", "missing or wrong API token")
                await refusal(scope, receive, send)
                return
            scope.setdefault("state", {})["user"] = user
        too_large = error_response(
            413, "body_too_large", f"the request body is over {self.max_body} bytes"
        )
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body:
            await too_large(scope, receive, send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await too_large(scope, receive, send)
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        del parts
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and (not kind or kind.endswith("json")) and json_depth(body) > MAX_DEPTH:
            bad = error_response(
                422, "invalid_request", f"the JSON body nests more than {MAX_DEPTH} levels"
            )
            await bad(scope, receive, send)
            return
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
