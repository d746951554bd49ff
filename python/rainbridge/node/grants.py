"""Grants: an owner's permission for a peer to use one of its datasets, and their checks.

A grant says that ``peer`` may take part in jobs that use ``dataset`` at this node:

- ``columns``: which of its columns may enter a joint computation (for PSI, the id column
  it joins on; columns a party appends to its *own* copy of an output never leave it and
  need no grant), ``["*"]`` for all;
- ``components``: which component types (purposes), e.g. ``["psi"]``, ``["*"]`` for all;
- ``receivers``: which parties may receive outputs derived from it (this node always may);
- ``max_calls`` / ``max_rows``: a quota, counted when a job starts (a call reads every row of
  the dataset);
- ``expires_at``: after it, the grant allows nothing;
- ``approval``: ``auto``, or ``manual`` to hold every job under it for the owner's approval.

Every job proposal (a peer's, or this node's own submission) is checked against the grants
of every dataset of this node it touches, for every other party of the component that reads
it. A refusal names the dataset, the peer and the grant at fault and says what is missing or
exceeded; it never echoes other grants' content to the proposer. Revoking a grant takes
effect at once: new proposals are refused and running jobs under it are stopped.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from rainbridge.data import DatasetRef
from rainbridge.errors import AuthorizationError, ConfigError
from rainbridge.jobs.spec import ComponentSpec, JobSpec
from rainbridge.node.storage import DatasetRow, GrantRow, JobRow, Storage, utc

APPROVAL_MODES = ("auto", "manual")
#: purposes a grant may name besides the job components: long-running services
#: (``pir``: queries of a PIR service built from the dataset)
SERVICE_PURPOSES = ("pir",)
ALL = "*"


#: the classes of a refused use of this node's data, as the metrics and the log name them
#: (a class, never the refusal's text: that names datasets, peers and grants)
REFUSAL_CLASSES = (
    "no_grant",
    "revoked",
    "expired",
    "component",
    "columns",
    "receivers",
    "quota",
    "group_size",
    "column_policy",
    "privacy_budget",
    "declined",
    "not_allowed",
    "invalid",
    "data",
    "other",
)


class GrantError(AuthorizationError):
    """No grant allows what a job asks of a dataset; the message says which and why, and
    :attr:`reason` its class (one of :data:`REFUSAL_CLASSES`)."""

    code = "unauthorized"

    def __init__(self, message: str, reason: str = "no_grant") -> None:
        super().__init__(message)
        self.reason = reason


def refusal_class(exc: BaseException) -> str:
    """The class of a refusal (:data:`REFUSAL_CLASSES`), for metrics and the log."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, GrantError) and reason in REFUSAL_CLASSES:
        return str(reason)
    if isinstance(exc, AuthorizationError):
        return "not_allowed"  # not a party, an unknown peer, an unregistered dataset
    code = getattr(exc, "code", None)
    if code in ("config", "job_spec", "invalid_request", "parameter_mismatch"):
        return "invalid"
    if code == "data":
        return "data"
    return "other"


def new_grant_id() -> str:
    return "g-" + secrets.token_hex(6)


@dataclass
class GrantCheck:
    """The outcome of checking a job: which grant covers each (dataset, peer)."""

    #: ``{dataset: {peer: grant id}}``
    grants: dict[str, dict[str, str]] = field(default_factory=dict)
    #: datasets whose grant asks the owner to approve each job by hand
    manual: list[str] = field(default_factory=list)
    #: rows each dataset contributes per call (for the quota)
    rows: dict[str, int] = field(default_factory=dict)

    def grant_ids(self) -> list[str]:
        return sorted({g for per in self.grants.values() for g in per.values()})


def _allows(allowed: Sequence[str], wanted: str) -> bool:
    return ALL in allowed or wanted in allowed


def why_not(
    g: GrantRow,
    *,
    component_type: str,
    columns: Sequence[str],
    receivers: Sequence[str],
    rows: int,
    now: dt.datetime,
) -> str | None:
    """None if ``g`` allows the use, else what it does not allow (for the refusal)."""
    why = why_not_classed(
        g, component_type=component_type, columns=columns, receivers=receivers, rows=rows, now=now
    )
    return None if why is None else why[1]


def why_not_classed(
    g: GrantRow,
    *,
    component_type: str,
    columns: Sequence[str],
    receivers: Sequence[str],
    rows: int,
    now: dt.datetime,
    calls: int = 1,
) -> tuple[str, str] | None:
    """:func:`why_not` with the refusal's class first (one of :data:`REFUSAL_CLASSES`);
    ``calls``: the calls the use needs left in the quota (0: part of one counted already)."""
    if g.revoked_at is not None:
        return "revoked", f"grant {g.id} was revoked on {utc(g.revoked_at):%Y-%m-%d %H:%M} UTC"
    if g.expires_at is not None and now >= utc(g.expires_at):
        return "expired", f"grant {g.id} expired on {utc(g.expires_at):%Y-%m-%d %H:%M} UTC"
    if not _allows(g.components, component_type):
        return "component", f"grant {g.id} does not allow component {component_type!r}"
    bad_cols = [c for c in columns if not _allows(g.columns, c)]
    if bad_cols:
        return "columns", f"grant {g.id} does not allow column {', '.join(map(repr, bad_cols))}"
    bad_recv = [r for r in receivers if not _allows(g.receivers, r)]
    if bad_recv:
        who = ", ".join(map(repr, bad_recv))
        return "receivers", f"grant {g.id} does not allow {who} to receive outputs"
    if g.max_calls is not None and g.calls_used + calls > g.max_calls:
        return "quota", f"grant {g.id} quota exceeded: {g.calls_used} of {g.max_calls} calls used"
    if g.max_rows is not None and g.rows_used + rows > g.max_rows:
        return "quota", (
            f"grant {g.id} quota exceeded: {g.rows_used} of {g.max_rows} rows used, "
            f"this job reads {rows}"
        )
    return None


def use_grant(
    storage: Any,
    *,
    dataset: str,
    peer: str,
    component_type: str,
    columns: Sequence[str],
    receivers: Sequence[str],
    rows: int,
    what: str,
    count: bool = True,
    counted: bool = False,
) -> GrantRow:
    """The first grant that lets ``peer`` use ``dataset`` this way — for one request of a
    service (a PIR query, an interconnection run) rather than a job. With ``count``, one
    call and ``rows`` rows are added to its usage in the same transaction. ``counted``: the
    request belongs to a call counted already (a page of a PIR answer), so the grant must
    hold but need not have a call left: a quota's last call is not refused its pages.

    Raises
    ------
    AuthorizationError
        No grant allows it; ``what`` names the use, every grant's reason follows.
    """
    from sqlalchemy import select

    now = dt.datetime.now(dt.UTC)
    reasons: list[str] = []
    first = "no_grant"
    with storage.session() as s:
        q = select(GrantRow).where(GrantRow.dataset == dataset, GrantRow.peer == peer)
        calls = 0 if counted and not count else 1
        for g in s.scalars(q):
            why = why_not_classed(
                g,
                component_type=component_type,
                columns=columns,
                receivers=receivers,
                rows=rows,
                now=now,
                calls=calls,
            )
            if why is None and count and not count_use(s, g, rows):
                # another request took the quota's last call (or revoked it) meanwhile
                why = why_not_classed(
                    g,
                    component_type=component_type,
                    columns=columns,
                    receivers=receivers,
                    rows=rows,
                    now=now,
                ) or ("quota", f"grant {g.id} quota exceeded")
            if why is None:
                s.expunge(g)
                return g
            if not reasons:
                first = why[0]
            reasons.append(why[1])
    raise GrantError(
        f"no grant lets {peer!r} {what}" + (f": {'; '.join(reasons)}" if reasons else ""),
        first,
    )


def check_grants(
    job: JobSpec,
    *,
    node: str,
    datasets: Mapping[str, DatasetRef],
    grants: Sequence[GrantRow],
    now: dt.datetime | None = None,
) -> GrantCheck:
    """Find the grant that covers each use of this node's datasets by ``job``.

    Raises
    ------
    GrantError
        A dataset is used with a party no grant covers; the message names the dataset, the
        peer and the closest grant's reason (or that there is none).
    """
    now = now or dt.datetime.now(dt.UTC)
    out = GrantCheck()
    by_key: dict[tuple[str, str], list[GrantRow]] = {}
    for g in grants:
        by_key.setdefault((g.dataset, g.peer), []).append(g)
    # what the job needs of each (dataset, peer): every component that reads the dataset here,
    # directly or through an earlier component's output, with its columns and receivers
    needs: dict[tuple[str, str], _Need] = {}
    for c in job.components:
        if node not in c.inputs:
            continue
        ds = datasets.get(source_dataset(job, c.id, node) or "")
        if ds is None:
            continue  # no dataset of this node (a dealer), or check_job refuses it
        receivers = sorted({r for o in c.outputs.values() for r in o.receivers} - {node})
        # a party with a role and no data (the dealer) sees nothing derived from the data
        users = {p for p, r in c.inputs.items() if r.role is None}
        others = sorted((users | set(receivers)) - {node})
        columns = columns_used(c, node, ds)
        out.rows[ds.name] = ds.num_rows
        for peer in others:
            need = needs.setdefault((ds.name, peer), _Need(first=c.id))
            need.types.add(c.type)
            need.columns.update(columns)
            need.receivers.update(receivers)
    for (name, peer), need in needs.items():
        rows = datasets[name].num_rows
        reasons: list[str] = []
        first = "no_grant"  # the class of the closest grant's reason
        chosen: GrantRow | None = None
        # a grant that needs no approval is preferred; then the oldest
        for g in sorted(
            by_key.get((name, peer), []), key=lambda g: (g.approval == "manual", g.created_at)
        ):
            types = sorted(need.types)
            why = None
            for t in types:  # validity and every purpose first, then columns, receivers, quota
                why = why or why_not_classed(
                    g, component_type=t, columns=[], receivers=[], rows=0, now=now
                )
            why = why or why_not_classed(
                g,
                component_type=types[0],
                columns=sorted(need.columns),
                receivers=sorted(need.receivers),
                rows=rows,
                now=now,
            )
            if why is None:
                chosen = g
                break
            if not reasons:
                first = why[0]
            reasons.append(why[1])
        if chosen is None:
            detail = "; ".join(reasons) if reasons else "there is no grant"
            kinds = ", ".join(sorted(need.types))
            raise GrantError(
                f"{node!r} does not allow {peer!r} to use dataset {name!r} in component "
                f"{need.first!r} ({kinds}): {detail}",
                first,
            )
        out.grants.setdefault(name, {})[peer] = chosen.id
        if chosen.approval == "manual" and name not in out.manual:
            out.manual.append(name)
    return out


@dataclass
class _Need:
    first: str
    types: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    receivers: set[str] = field(default_factory=set)


def check_group_thresholds(job: JobSpec, *, node: str, thresholds: Mapping[str, int]) -> None:
    """Refuse a grouped result over this node's data with groups smaller than its owner
    allows (the dataset's ``min_group_size``, a k-anonymity threshold)."""
    for c in job.components:
        if node not in c.inputs or "group_by" not in c.params:
            continue
        ds = source_dataset(job, c.id, node)
        need = thresholds.get(ds or "", 1)
        asked = int(c.params.get("min_group_size", 1))
        if asked < need:
            raise GrantError(
                f"dataset {ds!r} at {node!r} requires groups of at least {need} rows; "
                f"component {c.id!r} asks min_group_size {asked}",
                "group_size",
            )


#: a column policy's levels and the uses each allows (see ``Component.column_uses``), like
#: SCQL's column control lists: from "only matched as a join key" up to "may leave as is"
COLUMN_LEVELS: dict[str, frozenset[str]] = {
    "join": frozenset({"join"}),
    "aggregate": frozenset({"aggregate"}),
    "compare": frozenset({"aggregate", "filter"}),
    "plaintext": frozenset({"join", "aggregate", "filter", "group", "reveal"}),
}
_USE_WORDS = {
    "join": "as a join key",
    "aggregate": "inside an aggregate",
    "filter": "in a WHERE condition (the rows that pass become visible to the join's receivers)",
    "group": "as a GROUP BY key (its values label the released groups)",
    "reveal": "as it is, in an output other parties receive",
}


def check_column_policies(
    job: JobSpec,
    *,
    node: str,
    datasets: Mapping[str, DatasetRef],
    policies: Mapping[str, Mapping[str, str]],
) -> None:
    """Refuse a job that would use a column of this node's data beyond its owner's column
    policy. A dataset without a policy is governed by its grants alone; a dataset with one
    denies the columns the policy does not list. Only components that involve another
    party are checked: a node may do what it likes with its own data alone."""
    for c in job.components:
        if node not in c.inputs or c.inputs[node].role is not None:
            continue
        name = source_dataset(job, c.id, node)
        policy = policies.get(name or "")
        ds = datasets.get(name or "")
        if not policy or ds is None:
            continue
        users = {p for p, r in c.inputs.items() if r.role is None}
        receivers = {r for o in c.outputs.values() for r in o.receivers}
        if not (users | receivers) - {node}:
            continue
        from rainbridge.components import get_component

        uses = get_component(c.type).column_uses(c, node, ds.id_column)
        for col, wanted in sorted(uses.items()):
            level = policy.get(col)
            if level is None:
                raise GrantError(
                    f"column {col!r} of dataset {name!r} at {node!r} has no column policy, so "
                    f"it may not be used (component {c.id!r}); the owner may allow it with "
                    f"`rainbridge dataset policy {name} --column {col}=LEVEL` (LEVEL: "
                    f"{', '.join(COLUMN_LEVELS)}; the other columns keep theirs)",
                    "column_policy",
                )
            beyond = sorted(wanted - COLUMN_LEVELS[level])
            if beyond:
                allowed = ", ".join(sorted(COLUMN_LEVELS[level]))
                raise GrantError(
                    f"column {col!r} of dataset {name!r} at {node!r} has column policy "
                    f"{level!r} (allows: {allowed}); component {c.id!r} would use it "
                    f"{_USE_WORDS[beyond[0]]}",
                    "column_policy",
                )


def dp_costs(job: JobSpec, *, node: str) -> list[tuple[str, str, float | None]]:
    """(dataset, component, epsilon spent or None) for every statistics release over this
    node's data whose result goes to another party (a grouped release counts twice)."""
    out = []
    for c in job.components:
        if c.type != "stats" or node not in c.inputs or c.inputs[node].role is not None:
            continue
        receivers = {r for o in c.outputs.values() for r in o.receivers}
        if receivers <= {node}:
            continue  # the result stays with this node: its own data
        ds = source_dataset(job, c.id, node)
        dp = c.params.get("dp")
        eps = float(dp["epsilon"]) if isinstance(dp, dict) and "epsilon" in dp else None
        if eps is not None and "group_by" in c.params:
            eps *= 2  # the moments and the grouped sums are two releases
        if ds is not None:
            out.append((ds, c.id, eps))
    return out


def check_privacy_budgets(
    job: JobSpec, *, node: str, budgets: Mapping[str, tuple[float | None, float]]
) -> None:
    """Refuse a release over a dataset whose owner requires differential privacy, without
    it or beyond the budget left (``budgets``: dataset -> (budget or None, spent))."""
    spend: dict[str, float] = {}
    for ds, cid, eps in dp_costs(job, node=node):
        budget, spent = budgets.get(ds, (None, 0.0))
        if budget is None:
            continue
        if eps is None:
            raise GrantError(
                f"dataset {ds!r} at {node!r} requires differential privacy: give component "
                f"{cid!r} a dp epsilon (budget left {budget - spent:g})",
                "privacy_budget",
            )
        spend[ds] = spend.get(ds, 0.0) + eps
        if spent + spend[ds] > budget + 1e-12:
            raise GrantError(
                f"privacy budget of dataset {ds!r} at {node!r}: {spent:g} of {budget:g} spent, "
                f"this job needs {spend[ds]:g}",
                "privacy_budget",
            )


def source_dataset(job: JobSpec, component_id: str, node: str) -> str | None:
    """The registered dataset of ``node`` that a component's input there derives from."""
    by_id = {c.id: c for c in job.components}
    seen: set[str] = set()
    cid: str | None = component_id
    while cid is not None and cid not in seen:
        seen.add(cid)
        ref = by_id[cid].inputs.get(node)
        if ref is None or ref.role is not None:
            return None
        if ref.dataset is not None:
            return ref.dataset
        cid = (ref.from_ or "").partition(".")[0] or None
    return None


def columns_used(c: ComponentSpec, node: str, ds: DatasetRef) -> list[str]:
    """The columns of ``node``'s data that enter component ``c``'s joint computation."""
    from rainbridge.components import get_component

    return get_component(c.type).columns_used(c, node, ds.id_column)


def validate_grant(
    *,
    dataset: DatasetRef,
    peer: str,
    columns: Sequence[str],
    components: Sequence[str],
    receivers: Sequence[str],
    max_calls: int | None,
    max_rows: int | None,
    expires_at: dt.datetime | None,
    approval: str,
    known_components: Sequence[str],
) -> None:
    """Refuse a grant that names what does not exist (ConfigError, naming it)."""
    if not columns:
        raise ConfigError("a grant must name its columns (or '*' for all)")
    unknown = [c for c in columns if c != ALL and c not in dataset.columns]
    if unknown:
        raise ConfigError(f"dataset {dataset.name!r} has no column {', '.join(map(repr, unknown))}")
    if not components:
        raise ConfigError("a grant must name its components (purposes), or '*' for all")
    bad = [c for c in components if c != ALL and c not in known_components]
    if bad:
        raise ConfigError(
            f"unknown component {', '.join(map(repr, bad))}; known: {', '.join(known_components)}"
        )
    if not receivers:
        raise ConfigError("a grant must name who may receive outputs (e.g. the peer itself)")
    for what, q in (("max_calls", max_calls), ("max_rows", max_rows)):
        if q is not None and q < 0:
            raise ConfigError(f"{what} must be zero or more")
    if approval not in APPROVAL_MODES:
        raise ConfigError(f"approval {approval!r}: expected auto or manual")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise ConfigError("expires_at is in the past")
    _ = peer


def count_use(s: Session, g: GrantRow, rows: int) -> bool:
    """Add one call and ``rows`` rows to ``g``'s usage if its quota still allows them, in
    one guarded UPDATE; ``g`` is refreshed. False: the quota is used up, or ``g`` revoked.

    Neither SQLite (through pysqlite) nor PostgreSQL at read committed locks the row a SELECT
    read, so reading the usage and writing it back would let concurrent requests overwrite
    each other's counts and pass a quota together.
    """
    done = s.connection().execute(
        update(GrantRow)
        .where(
            GrantRow.id == g.id,
            GrantRow.revoked_at.is_(None),
            or_(GrantRow.max_calls.is_(None), GrantRow.calls_used + 1 <= GrantRow.max_calls),
            or_(GrantRow.max_rows.is_(None), GrantRow.rows_used + rows <= GrantRow.max_rows),
        )
        .values(calls_used=GrantRow.calls_used + 1, rows_used=GrantRow.rows_used + rows)
    )
    s.refresh(g)
    return done.rowcount == 1


def consume_grants(storage: Storage, row: JobRow, node: str) -> None:
    """Count a job's start at ``node`` against every grant it uses, re-checking each first,
    and spend the privacy budgets it declares (a job that may not start raises
    :class:`GrantError`)."""
    job = JobSpec.model_validate(row.spec)
    datasets = storage.dataset_refs()
    now = dt.datetime.now(dt.UTC)
    # the component type each of this node's datasets is read by (what its grant allows)
    read_by = {
        c.inputs[node].dataset: c.type
        for c in job.components
        if node in c.inputs and c.inputs[node].dataset
    }
    costs = [(d, c, e) for d, c, e in dp_costs(job, node=node) if e is not None]
    # rows locked in one order (grant IDs, then dataset names): two jobs sharing grants
    # never wait on each other's locks in opposite orders (a deadlock on PostgreSQL)
    uses = sorted(
        {(grant_id, dataset) for dataset, per_peer in (row.grants or {}).items()
         for grant_id in per_peer.values()}
    )  # fmt: skip
    # one transaction: a job refused for its privacy budget leaves its grants' usage as it was
    with storage.session() as s:
        for grant_id, dataset in uses:
            rows = datasets[dataset].num_rows if dataset in datasets else 0
            g = s.get(GrantRow, grant_id)
            if g is None:
                raise GrantError(f"grant {grant_id} no longer exists", "revoked")
            why = why_not_classed(
                g,
                component_type=read_by.get(dataset, ""),
                columns=[],
                receivers=[],
                rows=rows,
                now=now,
            )
            if why is None and not count_use(s, g, rows):
                why = why_not_classed(
                    g,
                    component_type=read_by.get(dataset, ""),
                    columns=[],
                    receivers=[],
                    rows=rows,
                    now=now,
                ) or ("quota", f"grant {g.id} quota exceeded")
            if why is not None:
                raise GrantError(f"cannot start: {why[1]}", why[0])
        for d, _cid, eps in sorted(costs, key=lambda c: c[0]):
            ds_row = s.get(DatasetRow, d)
            if ds_row is None:
                continue
            # spent in one guarded UPDATE: two jobs starting at once never both spend
            # the budget's last epsilon (a read, then a write, would lose one of them)
            spent = s.connection().execute(
                update(DatasetRow)
                .where(
                    DatasetRow.name == d,
                    or_(
                        DatasetRow.dp_budget.is_(None),
                        DatasetRow.dp_spent + eps <= DatasetRow.dp_budget + 1e-12,
                    ),
                )
                .values(dp_spent=DatasetRow.dp_spent + eps)
            )
            if spent.rowcount != 1:
                s.refresh(ds_row)
                raise GrantError(
                    f"cannot start: the privacy budget of {d!r} is spent "
                    f"({ds_row.dp_spent:g} of {ds_row.dp_budget:g})",
                    "privacy_budget",
                )
    for d, cid, eps in costs:
        storage.log(
            "privacy_budget_spent", {"dataset": d, "component": cid, "epsilon": eps}, row.id
        )
    for dataset, per_peer in (row.grants or {}).items():
        rows = datasets[dataset].num_rows if dataset in datasets else 0
        storage.log(
            "dataset_read",
            {"dataset": dataset, "rows": rows, "grants": per_peer},
            row.id,
        )
