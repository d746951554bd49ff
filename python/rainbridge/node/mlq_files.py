"""Where a multi-lender service's files lie at a node (``DIR/mlq/<service>/``): the
service's configuration as joined, a lender's secret key, and the merger's record of its
latest build; and how builds and their messages are named and paged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rainbridge.errors import NotFoundError

#: elements per build message (32 bytes each; base64 and JSON stay under the control limit)
PAGE = 32_768
#: a build's name: 16 hexadecimal digits
BUILD_ID = re.compile(r"^[0-9a-f]{16}$")


class MlqFiles:
    """The multi-lender services' folders under ``root`` (``DIR/mlq``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, service: str) -> Path:
        return self.root / service

    def conf(self, service: str) -> dict[str, Any]:
        """The service as this node joined it; refused when it joined none of that name."""
        path = self.folder(service) / "service.json"
        if not path.is_file():
            raise NotFoundError(f"this node is in no multi-lender service {service!r}")
        return dict(json.loads(path.read_text()))

    def key(self, service: str) -> bytes:
        """A lender's secret key of ``service``."""
        return (self.folder(service) / "key").read_bytes()

    def latest(self, service: str) -> dict[str, Any] | None:
        """The merger's record of its latest build of ``service``, if any."""
        path = self.folder(service) / "build.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None
