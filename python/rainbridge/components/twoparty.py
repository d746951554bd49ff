"""What every two-party MPC component does first: find the roles (two data parties and an
optional dealer), check that the two aligned tables hold the same IDs in the same order,
and set up the engine's correlated randomness (the dealer's, or OT extension without one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc import (
    DealerClient,
    Mpc,
    Provider,
    SeedProvider,
    receive_seed,
    run_dealer,
)
from rainbridge.protocols.mpc.ot import OtProvider


class AlignedParams(BaseModel):
    """Parameters every two-party component over a PSI intersection has."""

    model_config = ConfigDict(extra="forbid")

    id: str | dict[str, str] | None = Field(
        default=None,
        description="the aligned ID column (or one per data party); default: its input's "
        "(the PSI's ID column)",
    )

    ot: Literal["iknp", "silent"] = Field(
        default="iknp",
        description="without a dealer, the source of the two parties' correlated randomness: "
        "iknp (OT extension: the faster on fast links) or silent (silent OT from LPN: a "
        "fraction of the traffic, the faster below about 450 Mbit/s); ignored with a dealer",
    )

    def id_of(self, party: str) -> str:
        # the job's completion fills ``id`` from the input (:mod:`rainbridge.jobs.complete`);
        # "customer_id" only where no input names one
        if self.id is None:
            return "customer_id"
        return self.id if isinstance(self.id, str) else self.id.get(party, "customer_id")


class LabelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    party: str
    column: str


class LabelledParams(AlignedParams):
    """Parameters of a component over features of both parties and one party's label."""

    label: LabelRef = Field(description="the label party and its label column")
    features: dict[str, list[str]] = Field(description="each data party's numeric features")

    def check_parties(self, data: list[str]) -> None:
        if self.label.party not in data:
            raise ComponentParamError("label.party must be a data party", ("params", "label"))
        for p in self.features:
            if p not in data:
                raise ComponentParamError(
                    f"features are given for {p!r}, which is not a data party",
                    ("params", "features"),
                )
        if not any(self.features.values()):
            raise ComponentParamError("give some features", ("params", "features"))
        for p, cols in self.features.items():
            twice = sorted({c for c in cols if cols.count(c) > 1})
            if twice:
                raise ComponentParamError(
                    f"feature {twice[0]!r} of {p!r} is named twice", ("params", "features")
                )
        if self.label.column in self.features.get(self.label.party, []):
            raise ComponentParamError(
                f"the label column {self.label.column!r} is not a feature too: the model would "
                "learn the label from itself",
                ("params", "features"),
            )

    def uses(self, party: str) -> dict[str, set[str]]:
        """Column uses (``Component.column_uses``): features and the label only inside
        aggregates (gradients, weights, counts per bin), the ID as the join key."""
        uses: dict[str, set[str]] = {self.id_of(party): {"join"}}
        for c in self.features.get(party, []):
            uses.setdefault(c, set()).add("aggregate")
        if self.label.party == party:
            uses.setdefault(self.label.column, set()).add("aggregate")
        return uses

    def used(self, party: str) -> list[str]:
        return [c for c in self.uses(party) if c != self.id_of(party)]


def roles(spec: ComponentSpec) -> tuple[list[str], str | None]:
    """(the two data parties, sorted; the dealer or None)."""
    dealer = next((p for p, ref in spec.inputs.items() if ref.role == "dealer"), None)
    return sorted(p for p in spec.inputs if p != dealer), dealer


def check_roles(spec: ComponentSpec, what: str) -> list[str]:
    """Refuse anything but two data parties and at most one dealer; the data parties."""
    dealers = [p for p, ref in spec.inputs.items() if ref.role == "dealer"]
    data = [p for p, ref in spec.inputs.items() if ref.role is None]
    if len(dealers) + len(data) != len(spec.inputs) or len(dealers) > 1 or len(data) != 2:
        raise ComponentParamError(
            f"{what} needs exactly two data parties and at most one party with "
            "'role: dealer' (none: the two make their randomness by OT extension)",
            ("inputs",),
        )
    return data


async def serve_dealer(ctx: ComponentContext) -> dict[str, Any] | None:
    """Run the dealer's role if this party is the dealer (its summary), else None."""
    (p0, p1), dealer = roles(ctx.spec)
    if ctx.party != dealer:
        return None
    served = await run_dealer(ctx.channels[p0], ctx.channels[p1])
    ctx.progress(1.0)
    return {"role": "dealer", "requests_served": served}


@dataclass
class Session:
    mpc: Mpc
    me: int
    other: str
    their_hello: dict[str, Any]


async def check_aligned(
    ctx: ComponentContext, table: pa.Table, id_column: str, hello: dict[str, Any], tag: str
) -> tuple[str, dict[str, Any]]:
    """Swap ``hello`` with the other data party after checking the alignment (row count and
    SHA-256 of the ordered IDs); (the other party, its hello). Raises ParameterMismatchError
    when the tables are not aligned."""
    (p0, p1), _dealer = roles(ctx.spec)
    other = p1 if ctx.party == p0 else p0
    ch = ctx.channels[other]
    n = table.num_rows
    digest = ids_digest(table, id_column)
    await ch.send_json(f"{tag}/hello", {"rows": n, "ids": digest, **hello})
    theirs = await ch.recv_json(f"{tag}/hello")
    if not isinstance(theirs, dict) or theirs.get("rows") != n or theirs.get("ids") != digest:
        raise ParameterMismatchError(
            "the two parties' tables are not aligned (different IDs or order); "
            "feed both from the same PSI intersection"
        )
    return other, theirs


async def open_session(
    ctx: ComponentContext,
    table: pa.Table,
    id_column: str,
    hello: dict[str, Any],
    tag: str,
    ot: str = "iknp",
) -> Session:
    """:func:`check_aligned`, then start the engine (the dealer's randomness, or OT from
    the ``ot`` source: ``iknp`` or ``silent``)."""
    (p0, _p1), dealer = roles(ctx.spec)
    me = 0 if ctx.party == p0 else 1
    other, theirs = await check_aligned(ctx, table, id_column, hello, tag)
    ch = ctx.channels[other]
    provider: Provider
    if dealer is None:
        provider = OtProvider(me, ch, source=ot)
        await provider.setup()
    else:
        seed = await receive_seed(ctx.channels[dealer])
        provider = SeedProvider(seed) if me == 0 else DealerClient(seed, ctx.channels[dealer])
    return Session(Mpc(me, ch, provider), me, other, theirs)


def numeric(table: pa.Table, column: str) -> Any:
    """A numeric column without missing values, as float64."""
    col = table.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"column {column!r} is not numeric ({col.type})")
    if col.null_count:
        raise DataError(f"column {column!r} has {col.null_count} missing values")
    return pc.cast(col, pa.float64()).to_numpy()


def matrix(table: pa.Table, columns: list[str]) -> Any:
    n = table.num_rows
    return np.column_stack([numeric(table, c) for c in columns]) if columns else np.zeros((n, 0))


def ids_digest(table: pa.Table, id_column: str) -> str:
    return hashlib.sha256(
        "\n".join(table.column(id_column).cast(pa.string()).to_pylist()).encode()
    ).hexdigest()


async def check_aligned_star(
    ctx: ComponentContext, table: pa.Table, id_column: str, hub: str, parties: list[str], tag: str
) -> None:
    """The multi-party form of :func:`check_aligned`: every party sends its row count and ID
    digest to ``hub``, which compares them with its own and answers each; raises
    ParameterMismatchError at every party when any table differs."""
    mine = {"rows": table.num_rows, "ids": ids_digest(table, id_column)}
    if ctx.party != hub:
        ch = ctx.channels[hub]
        await ch.send_json(f"{tag}/hello", mine)
        verdict = await ch.recv_json(f"{tag}/aligned")
        if not isinstance(verdict, dict) or verdict.get("ok") is not True:
            raise ParameterMismatchError(
                "the parties' tables are not aligned (different IDs or order); "
                "feed every party from the same PSI intersection"
            )
        return
    others = [p for p in parties if p != hub]
    theirs = [await ctx.channels[p].recv_json(f"{tag}/hello") for p in others]
    bad = [p for p, t in zip(others, theirs, strict=True) if t != mine]
    for p in others:
        await ctx.channels[p].send_json(f"{tag}/aligned", {"ok": not bad})
    if bad:
        raise ParameterMismatchError(
            f"the tables of {', '.join(map(repr, bad))} are not aligned with {hub!r}'s "
            "(different IDs or order); feed every party from the same PSI intersection"
        )
