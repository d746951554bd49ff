"""How a node reads peers' answers: services (PIR, multi-lender) turn a refusal into the
typed error its code names, while the end of a job keeps a refusal as an answer (a party
that will not countersign must not stop the others' record)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config

from rainbridge.errors import AuthorizationError, DataError, RateLimitError
from rainbridge.node.service import NodeService


def service_with_answer(tmp_path: Path, answer: dict[str, Any]) -> NodeService:
    svc = NodeService(make_config(tmp_path / "bank", "bank"))

    async def request(peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        return answer

    svc.dataplane.request = request  # type: ignore[method-assign]
    return svc


@pytest.mark.parametrize(
    ("code", "error"),
    [("rate_limited", RateLimitError), ("unauthorized", AuthorizationError), ("data", DataError)],
)
def test_a_service_refusal_is_a_typed_error(tmp_path: Path, code: str, error: type) -> None:
    svc = service_with_answer(tmp_path, {"ok": False, "code": code, "reason": "no"})
    with pytest.raises(error, match="no"):
        asyncio.run(svc.dataplane.call("telecom", {"type": "pir_query"}))


def test_closing_keeps_a_refusal_as_an_answer(tmp_path: Path) -> None:
    svc = service_with_answer(tmp_path, {"ok": False, "reason": "will not sign"})
    reply = asyncio.run(svc.dataplane.ask("telecom", {"type": "countersign"}))
    assert reply == {"ok": False, "reason": "will not sign"}
