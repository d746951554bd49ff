"""HTTPS for the REST API and the console: the server's TLS context and the client's pin.

A bearer token is a password: whoever reads it controls the node. So the API speaks TLS
whenever it can be reached from another machine, and nothing sends or accepts a token in
plain HTTP off loopback:

* ``api.tls`` in ``node.toml``: ``auto`` (the default) serves HTTPS when ``api.host`` is not a
  loopback address or an operator certificate is configured; ``on`` always; ``off`` only on
  loopback (a non-loopback bind with ``off`` is a configuration error).
* The certificate is the node's own (``node.crt``, the one peers pin; self-signed, so clients
  pin it) or the operator's (``api_cert``/``api_key``, e.g. issued by the bank's CA so that
  browsers trust it; an encrypted key's password comes from ``$RAINBRIDGE_API_KEY_PASSWORD``).
* Clients pin: the CLI with the node's directory trusts exactly that node's API certificate
  (no name checks: the pin is stronger); without the directory, ``$RAINBRIDGE_API_FINGERPRINT``
  pins a SHA-256 fingerprint (checked before the token is sent), ``$RAINBRIDGE_API_CA`` names
  a CA bundle (ordinary name checks), else the system's trust store is used.
* Server side, :class:`~rainbridge.node.api_guard.RequestGuard` refuses a ``/v1`` request that
  came in plain HTTP from a non-loopback address before it looks at the token.

TLS 1.2 or 1.3 with ECDHE and AEAD ciphers only (browsers still connect with TLS 1.2).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from rainbridge.crypto.certs import TlsIdentity, fingerprint_pem, same_fingerprint
from rainbridge.errors import AuthenticationError, ConfigError, PeerDisconnectedError

API_TLS_MODES = ("auto", "on", "off")
KEY_PASSWORD_ENV = "RAINBRIDGE_API_KEY_PASSWORD"
FINGERPRINT_ENV = "RAINBRIDGE_API_FINGERPRINT"
CA_ENV = "RAINBRIDGE_API_CA"
#: TLS 1.2 suites (1.3's are all AEAD): forward secrecy and AEAD only
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback only (a name other than ``localhost``
    is not resolved: it counts as reachable from outside, the safe answer)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_tls(api_tls: str, api_host: str, api_cert: str = "") -> bool:
    """Whether the API serves HTTPS under this configuration (see the module docstring)."""
    if api_tls == "on":
        return True
    if api_tls == "off":
        return False
    return bool(api_cert) or not is_loopback(api_host)


def check_settings(api_tls: str, api_host: str, api_cert: str, api_key: str) -> None:
    """Refuse an API configuration that would send tokens in plain HTTP off loopback."""
    if api_tls not in API_TLS_MODES:
        raise ConfigError(f"api_tls {api_tls!r}: expected one of {', '.join(API_TLS_MODES)}")
    if bool(api_cert) != bool(api_key):
        raise ConfigError("api_cert and api_key go together: give both files or neither")
    if api_tls == "off" and not is_loopback(api_host):
        raise ConfigError(
            f"api_tls is off but the REST API listens on {api_host}: bearer tokens would cross "
            "the network in plain text. Use api_tls auto or on (HTTPS with the node's "
            "certificate, or api_cert/api_key), or listen on 127.0.0.1 behind a TLS proxy"
        )
    if api_tls == "off" and api_cert:
        raise ConfigError("api_cert is set but api_tls is off: remove one of them")


def server_context(identity: TlsIdentity, api_cert: str = "", api_key: str = "") -> ssl.SSLContext:
    """The API's TLS context: the operator's certificate if configured, else the node's.

    Raises
    ------
    ConfigError
        A file is missing or unreadable, or the key does not open or does not match.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    load_certificate(ctx, identity, api_cert, api_key)
    return ctx


def load_certificate(
    ctx: ssl.SSLContext, identity: TlsIdentity, api_cert: str = "", api_key: str = ""
) -> None:
    """Put the API's certificate into ``ctx`` (again after a key rotation: new connections
    get the new one, open ones keep theirs)."""
    if api_cert:
        cert, key = Path(api_cert), Path(api_key)
        password: bytes | None = os.environ.get(KEY_PASSWORD_ENV, "").encode() or None
    else:
        cert, key, password = identity.cert_path, identity.key_path, identity.key_password
    for what, p in (("api_cert", cert), ("api_key", key)):
        if not p.is_file():
            raise ConfigError(f"{what} {p}: no such file (the REST API's TLS certificate/key)")
    try:
        ctx.load_cert_chain(cert, key, password=password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        hint = f" (an encrypted key needs ${KEY_PASSWORD_ENV})" if api_cert else ""
        raise ConfigError(
            f"cannot use {cert} and {key} for the REST API's TLS: {exc}{hint}"
        ) from None


def api_certificate_pem(directory: Path, api_cert: str = "") -> str:
    """The certificate (PEM) the API at ``directory``'s node presents: what a client pins."""
    p = Path(api_cert) if api_cert else directory / "node.crt"
    try:
        return p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the REST API's certificate: {exc}") from None


def pinned_context(pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate(s) in ``pem`` and nothing else.

    Names are not checked: the certificate itself is the pin (the node's self-signed
    certificate names the node, not the address an operator reaches it by).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    # the pinned certificate is the trust anchor even when a CA issued it
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=pem)
    return ctx


def fetch_api_certificate(host: str, port: int, timeout: float = 10.0) -> str:
    """The PEM certificate an HTTPS server presents (unverified: compare it with a pin!)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise PeerDisconnectedError(f"no HTTPS server answers at {host}:{port}: {exc}") from None
    if not der:
        raise AuthenticationError(f"{host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def client_verify(url: str, pinned_pem: str | None = None) -> ssl.SSLContext | None:
    """How a client of the API at ``url`` checks the server, before any token is sent.

    ``pinned_pem``: the certificate the node's directory says its API presents. ``None``
    for a plain-HTTP URL (allowed on loopback only).

    Raises
    ------
    ConfigError
        A plain-HTTP URL off loopback (the token would cross the network in clear).
    AuthenticationError
        ``$RAINBRIDGE_API_FINGERPRINT`` is set and the server's certificate differs.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http":
        if not is_loopback(host):
            raise ConfigError(
                f"refusing to send the API token in plain HTTP to {host}: use https:// "
                "(the node serves HTTPS on any address but loopback)"
            )
        return None
    if parts.scheme != "https":
        raise ConfigError(f"{url}: expected an http:// or https:// address")
    fingerprint = os.environ.get(FINGERPRINT_ENV, "").strip()
    if fingerprint:
        pem = fetch_api_certificate(host, parts.port or 443)
        if not same_fingerprint(fingerprint_pem(pem), fingerprint):
            raise AuthenticationError(
                f"the REST API at {host}:{parts.port or 443} presented a certificate with "
                f"fingerprint {fingerprint_pem(pem)}, not the pinned {fingerprint}; "
                "the token was not sent"
            )
        return pinned_context(pem)
    if pinned_pem is not None:
        return pinned_context(pinned_pem)
    ca = os.environ.get(CA_ENV, "").strip()
    try:
        return ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"${CA_ENV} {ca}: cannot read the CA bundle: {exc}") from None
