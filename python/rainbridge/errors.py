"""The error family of Rainbridge.

Every error a user can see derives from :class:`RainbridgeError`. Messages name the input at
fault and say what to do; they never echo secret input (keys, raw rows). The family is flat
on purpose: callers catch by what went wrong, not by which layer noticed it.
"""

from __future__ import annotations


class RainbridgeError(Exception):
    """Base of every error Rainbridge raises on purpose."""

    #: a short machine-readable code, stable across releases (used by the REST API and CLI)
    code: str = "error"


class ConfigError(RainbridgeError):
    """A configuration, job file or parameter is invalid."""

    code = "config"


class JobSpecError(ConfigError):
    """A job file is malformed; the message names the line and field at fault."""

    code = "job_spec"


class DataError(RainbridgeError):
    """A dataset is missing, unreadable, or lacks a named column."""

    code = "data"


class CryptoError(RainbridgeError):
    """A cryptographic operation failed."""

    code = "crypto"


class InvalidElementError(CryptoError):
    """A received group element or scalar is invalid (non-canonical, identity, low order)."""

    code = "invalid_element"


class InvalidSignatureError(CryptoError):
    """A signature does not verify under the key it names."""

    code = "invalid_signature"


class ProofError(CryptoError):
    """A server's proof (RFC 9497 verifiable OPRF) does not verify, or is missing: its answer
    was not computed under the public key the client holds."""

    code = "invalid_proof"


class ChannelError(RainbridgeError):
    """The channel to a peer failed; the session is over."""

    code = "channel"


class PeerDisconnectedError(ChannelError):
    """The peer closed the connection before the session ended."""

    code = "peer_disconnected"


class ChannelTimeoutError(ChannelError):
    """No message arrived from the peer within the receive timeout."""

    code = "timeout"


class ProtocolViolationError(ChannelError):
    """The peer sent a malformed, oversized, out-of-sequence or wrong-session frame."""

    code = "protocol_violation"


class AuthenticationError(ChannelError):
    """The peer's certificate is not the one pinned for it (or it presented none)."""

    code = "authentication"


class ParameterMismatchError(RainbridgeError):
    """The parties disagree on the protocol parameters; nothing was computed."""

    code = "parameter_mismatch"


class AuthorizationError(RainbridgeError):
    """The request is not allowed: unknown peer, unregistered dataset, missing grant."""

    code = "unauthorized"


class RateLimitError(RainbridgeError):
    """A service's rate limit for this client is spent for now; the message says when to retry."""

    code = "rate_limited"


class JobRefusedError(AuthorizationError):
    """A party refused a job proposal; the message carries the party and its reason."""

    code = "job_refused"


class NotFoundError(RainbridgeError):
    """A named object (job, dataset, peer) does not exist."""

    code = "not_found"
