"""Identifiers that become parts of file paths at a node, and the paths built from them.

Model, dataset, service, component, output and job IDs arrive from users (REST bodies and
paths, the CLI) and from peers' messages; any of them may end up in a file name under the
node directory. :func:`check_id` is the one rule every such ID passes before it is used, and
:func:`under` checks that a path built from one stays below its root once resolved
(symlinks included), so that neither ``..`` nor a link can lead a write elsewhere.
Datasets are read in place, only under the node's data roots (:func:`check_data_path`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from rainbridge.errors import AuthorizationError, ConfigError

#: letters, digits, '.', '_', '-', starting with a letter or digit, at most 128 characters
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)


class InvalidIdError(ConfigError):
    """An identifier that could leave its folder, or a path outside where it must be."""

    code = "invalid_request"


def check_id(value: object, what: str = "ID") -> str:
    """``value`` if it is a safe identifier (:data:`ID_PATTERN`, no ``..``), else raise
    :class:`InvalidIdError` naming ``what``."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidIdError(
            f"{what} {shown}: use letters, digits, '.', '_', '-' "
            "(starting with a letter or digit, at most 128, no '..')"
        )
    return value


def under(root: Path, *parts: str) -> Path:
    """``root / parts…``, refused unless it resolves to a path strictly inside ``root``."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise InvalidIdError(f"{'/'.join(parts)!r} would leave its folder")
    return target


class DataPathError(AuthorizationError):
    """A dataset path outside the node's data roots (or inside the node directory)."""


#: what a node keeps in its directory (keys, token, configuration, database, certificates,
#: job folders, services' state): never a dataset, whatever the data roots say
NODE_ENTRIES = frozenset(
    {"certs", "run", "jobs", "models", "pir", "pir-replicas", "mlq", "interop", "staging"}
)
_NODE_PREFIXES = ("node.", "ledger.", "master.", "api.", ".")


def _node_owned(p: Path, node_dir: Path) -> bool:
    if not p.is_relative_to(node_dir):
        return False
    rel = p.relative_to(node_dir).parts
    if not rel:
        return True  # the directory itself
    first = rel[0]
    return first in NODE_ENTRIES or first.startswith(_NODE_PREFIXES) or first.endswith(".key")


def check_data_path(
    path: str, node_dir: Path, roots: Sequence[str], extra: Sequence[str] = ()
) -> Path:
    """The resolved ``path`` of a dataset, refused by location before anything is said about
    the file itself: it must lie under one of ``roots`` (any path when there are none) and
    never be one of the node's own files (:data:`NODE_ENTRIES`, ``node.*``, ``ledger.*``,
    ``master.*``, ``api.*``, ``*.key``) nor an ``extra`` file (a master key kept elsewhere).
    Symbolic links are resolved first. A refused path gets the same message whether or not it
    exists, so that the answer reveals nothing about the machine's files."""
    p = Path(path).expanduser().resolve()
    refused = f"dataset path {path!r} is not under a data root of this node"
    if _node_owned(p, Path(node_dir).resolve()):
        raise DataPathError(refused)
    if any(e and p == Path(e).expanduser().resolve() for e in extra):
        raise DataPathError(refused)
    if roots:
        allowed = [Path(r).expanduser().resolve() for r in roots]
        if not any(p.is_relative_to(r) for r in allowed):
            raise DataPathError(refused)
    return p
