"""API users, roles and what each role may do.

Roles, after the separation of duties banks ask for:

- ``admin``: runs the node (peers, users, keys) and may do everything below;
- ``owner``: a data owner: registers and publishes datasets, grants and revokes their use,
  approves jobs held for approval;
- ``analyst``: submits and cancels jobs, reads jobs and their results, browses catalogues;
- ``auditor``: reads everything that proves what happened (ledger, verification, metering,
  grants, jobs) and changes nothing.

A user authenticates with a bearer token; the node stores only its SHA-256, so a copy of
the database does not hand out tokens. Every write is attributed to its user in the ledger
(``actor = "user:NAME"``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select

from rainbridge.errors import AuthorizationError, ConfigError, NotFoundError, RainbridgeError
from rainbridge.node.storage import Storage, UserRow

ROLES = ("admin", "owner", "analyst", "auditor")
_ALL = frozenset(ROLES)

#: action -> the roles allowed to do it
PERMISSIONS: dict[str, frozenset[str]] = {
    "node.read": _ALL,
    "peers.read": _ALL,
    "peers.write": frozenset({"admin"}),
    "datasets.read": _ALL,
    "datasets.write": frozenset({"admin", "owner"}),
    "catalogue.read": _ALL,
    "grants.read": frozenset({"admin", "owner", "auditor"}),
    "grants.write": frozenset({"admin", "owner"}),
    "jobs.read": _ALL,
    "jobs.submit": frozenset({"admin", "analyst"}),
    "jobs.cancel": frozenset({"admin", "analyst", "owner"}),
    "jobs.approve": frozenset({"admin", "owner"}),
    "ledger.read": frozenset({"admin", "auditor"}),
    "metering.read": frozenset({"admin", "owner", "auditor"}),
    "users.read": frozenset({"admin"}),
    "users.write": frozenset({"admin"}),
    "keys.rotate": frozenset({"admin"}),
    "models.read": _ALL,
    "models.predict": frozenset({"admin", "analyst"}),
    "models.write": frozenset({"admin", "owner"}),
    "pir.read": _ALL,
    "pir.publish": frozenset({"admin", "owner"}),
    "pir.query": frozenset({"admin", "analyst"}),
    "mlq.admin": frozenset({"admin", "owner"}),
    "mlq.query": frozenset({"admin", "analyst"}),
    "interop.write": frozenset({"admin"}),
    "interop.run": frozenset({"admin", "analyst"}),
}
_USER = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class InvalidTokenError(RainbridgeError):
    """The API token is missing, unknown or disabled (one error for all, on purpose)."""

    code = "invalid_token"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def allowed(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


def require(user: UserRow, action: str) -> None:
    """Raise ``AuthorizationError`` unless ``user``'s role may do ``action``."""
    if not allowed(user.role, action):
        raise AuthorizationError(
            f"user {user.name!r} ({user.role}) may not {action.replace('.', ' ')}; "
            f"roles allowed: {', '.join(sorted(PERMISSIONS.get(action, ())))}"
        )


class Users:
    """The node's users in ``storage``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def authenticate(self, token: str) -> UserRow:
        """The user holding ``token``; the comparison is constant time on the hash."""
        if not token:
            raise InvalidTokenError("missing or wrong API token")
        want = token_hash(token)
        with self.storage.session() as s:
            rows = list(s.scalars(select(UserRow).where(UserRow.token_hash == want)))
        for row in rows:
            if hmac.compare_digest(row.token_hash, want) and not row.disabled:
                return row
        raise InvalidTokenError("missing or wrong API token")

    def add(self, name: str, role: str, token: str | None = None) -> tuple[UserRow, str]:
        """Create ``name`` with ``role``; returns the user and its token (shown once)."""
        if not _USER.match(name or ""):
            raise ConfigError(f"user name {name!r}: letters, digits, '_', '.', '-'")
        if role not in ROLES:
            raise ConfigError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        token = token or secrets.token_urlsafe(32)
        with self.storage.session() as s:
            if s.get(UserRow, name) is not None:
                raise ConfigError(f"user {name!r} already exists")
            row = UserRow(name=name, role=role, token_hash=token_hash(token))
            s.add(row)
        return row, token

    def ensure(self, name: str, role: str, token: str) -> None:
        """Create ``name`` with ``role`` and ``token`` unless it exists (the bootstrap admin:
        once created, disabling it or changing it is not undone by a restart)."""
        with self.storage.session() as s:
            if s.get(UserRow, name) is None:
                s.add(UserRow(name=name, role=role, token_hash=token_hash(token)))

    def disable(self, name: str) -> UserRow:
        with self.storage.session() as s:
            row = s.get(UserRow, name)
            if row is None:
                raise NotFoundError(f"no user {name!r}")
            row.disabled = True
        return row

    def list(self) -> list[UserRow]:
        with self.storage.session() as s:
            return list(s.scalars(select(UserRow).order_by(UserRow.name)))
