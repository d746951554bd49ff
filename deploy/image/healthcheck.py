"""The image's health check: the node's /healthz on its own API, over HTTPS pinned to the
node's certificate where the API is served over TLS. Exit 0 when it answers 200, else 1."""

from __future__ import annotations

import os
import sys

import httpx

from rainbridge.node.config import NodeConfig


def main() -> int:
    try:
        cfg = NodeConfig.load(os.environ.get("RAINBRIDGE_DIR", "/var/lib/rainbridge"))
        # a wildcard listen address is reached on loopback from inside the container
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            cfg.api_host, cfg.api_host
        )
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if cfg.api_uses_tls else "http"
        r = httpx.get(
            f"{scheme}://{host}:{cfg.api_port}/healthz", verify=cfg.api_verify(), timeout=5
        )
    except Exception as exc:  # any failure is "unhealthy", said in one line
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if r.status_code != 200:
        print(f"unhealthy: /healthz answered {r.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
