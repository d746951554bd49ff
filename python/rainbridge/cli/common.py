"""What every command shares: exit codes, output, options and the REST API client."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from rainbridge.errors import RainbridgeError

#: exit code of each error code (``RainbridgeError.code``, as the API returns it); any other
#: code exits 1. docs/NODE.md has the same table: change both together.
EXIT_CODES = {
    "config": 2,
    "job_spec": 2,
    "parameter_mismatch": 2,
    "invalid_request": 2,
    "data": 3,
    "unauthorized": 4,
    "invalid_token": 4,
    "tls_required": 4,
    "job_refused": 4,
    "authentication": 4,
    "channel": 5,
    "peer_disconnected": 5,
    "protocol_violation": 5,
    "timeout": 5,
    "invalid_element": 5,
    "job_failed": 6,
    "not_found": 7,
    "rate_limited": 9,
}
#: exit code of ``ledger verify`` (and of the bundle's own ``verify_ledger.py``) when the
#: ledger does not verify
EXIT_TAMPERED = 8
#: exit code when no node answers at the API's address
EXIT_UNREACHABLE = 5
#: statuses a job never leaves, and those of them that mean it did not succeed
FINAL = ("succeeded", "failed", "refused", "aborted", "cancelled")
UNSUCCESSFUL = ("failed", "refused", "aborted", "cancelled")
#: the reason a node records for a party whose data owner has yet to approve the job
PENDING_APPROVAL = "pending approval"


def decision_text(decision: dict[str, Any]) -> str:
    """A party's decision on a job as ``job status`` shows it."""
    if decision.get("accept"):
        return "accepted"
    if decision.get("reason") == PENDING_APPROVAL:
        return "pending approval"
    return f"refused: {decision.get('reason') or 'no reason given'}"


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code(code: str) -> int:
    return EXIT_CODES.get(code, 1)


def fail_with(exc: RainbridgeError) -> NoReturn:
    fail(str(exc), exit_code(exc.code))


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text)


class Api:
    """A thin client of a running node's REST API.

    Over HTTPS it pins the server's certificate before the token leaves this machine: the
    one the node's directory names, else ``$RAINBRIDGE_API_FINGERPRINT`` (see
    :mod:`rainbridge.node.api_tls`); it never sends the token in plain HTTP off loopback.

    Parameters
    ----------
    directory : str
        The node's directory (its configuration gives the API address and the token).
    url : str or None
        The API's address; overrides the directory's configuration.
    """

    def __init__(self, directory: str, url: str | None = None) -> None:
        from rainbridge.node.api_tls import api_certificate_pem, client_verify
        from rainbridge.node.config import NodeConfig

        self.config: NodeConfig | None = None
        token = os.environ.get("RAINBRIDGE_TOKEN", "").strip()
        try:
            if url is None or not token:
                self.config = NodeConfig.load(directory)
            self.url = (url or (self.config.api_url if self.config else "")).rstrip("/")
            self.token = token or (self.config.token() if self.config else "")
        except RainbridgeError as exc:
            if url is not None:
                fail(f"{exc}; or set RAINBRIDGE_TOKEN to the node's API token", 2)
            fail_with(exc)
        try:
            pinned = None
            if self.config is not None and self.url.startswith("https:"):
                pinned = api_certificate_pem(self.config.path, self.config.api_cert)
            self.verify = client_verify(self.url, pinned)
        except RainbridgeError as exc:
            fail_with(exc)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            return httpx.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=120,
                verify=self.verify if self.verify is not None else True,
            )
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
                pin = (
                    f"the certificate {self.config.api_cert or self.config.path / 'node.crt'}"
                    if self.config is not None
                    else "a certificate the client trusts"
                )
                fail(
                    f"the server at {self.url} did not present {pin}; the token was not sent",
                    exit_code("authentication"),
                )
            self._unreachable()
        except httpx.HTTPError:
            self._unreachable()

    def _unreachable(self) -> NoReturn:
        hint = (
            f" (start it with `rainbridge node start --dir {self.config.dir}`)"
            if self.config is not None
            else ""
        )
        fail(f"no node answers at {self.url}{hint}", EXIT_UNREACHABLE)

    def raw(self, method: str, path: str) -> bytes:
        """A response body as bytes (a file); an error answer fails as :meth:`call` does."""
        r = self._request(method, path)
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
            except ValueError:
                err = {}
            fail(str(err.get("message", r.text)), exit_code(str(err.get("code", ""))))
        return bytes(r.content)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self._request(method, path, body)
        try:
            data = r.json()
        except ValueError:
            fail(f"the node answered {r.status_code} without JSON", 1)
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            code = str(err.get("code", ""))
            fail(str(err.get("message", r.text)), exit_code(code))
        return data


dir_option = click.option(
    "--dir",
    "directory",
    default=lambda: os.environ.get("RAINBRIDGE_DIR", "."),
    show_default="$RAINBRIDGE_DIR or .",
    help="The node's directory.",
)
api_option = click.option(
    "--api",
    "api_url",
    default=lambda: os.environ.get("RAINBRIDGE_API") or None,
    show_default="$RAINBRIDGE_API, else from --dir",
    help="The node's REST API, e.g. https://bank.example:8700 (pinned to the certificate in "
    "--dir, else $RAINBRIDGE_API_FINGERPRINT).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def api_command(f: Any) -> Any:
    """Options of every command that talks to a running node."""
    return dir_option(api_option(json_option(f)))
