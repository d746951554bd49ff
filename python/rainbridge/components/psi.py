"""The ``psi`` component: align the parties' rows on a common ID column.

Runs :mod:`rainbridge.protocols.psi.ecdh` (``protocol: ecdh``, two or more parties) or
:mod:`rainbridge.protocols.psi.rr22` (``protocol: rr22``, two parties, OT-based and much faster
on large sets, its working memory bounded by ``memory_limit_mb``). Its output ``intersection``
holds, at each named receiver, the common IDs (sorted, one row per row of the receiver's
dataset whose ID is common) followed by the columns of the receiver's own dataset that the job
names. Receivers' outputs are sorted by ID, so that two receivers' files align row by row when
IDs are unique.

Inputs are read exactly as written (see "PSI input rules" in docs/JOBS.md): IDs are text,
compared byte for byte unless ``normalize`` names a Unicode normal form (applied by every
party, before hashing); a row whose ID is empty or NULL is refused, or with
``missing_ids: drop`` left out and counted; the receiver's own columns and the payload columns
pass through as the owner wrote them (a declared type applies).

Variants: ``cardinality_only: true`` (ECDH) tells every party the intersection's size and
nobody its members (the component then has no output); ``payload: {party: [columns]}``
(RR22) delivers those columns of the one party that does not receive the intersection to
the one that does, aligned to its rows, and nothing to anyone else.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.compute.engine import scratch_dir
from rainbridge.compute.psi import BucketedPsiParams, parquet_chunks, run_bucketed_psi
from rainbridge.data import read_columns, read_ids
from rainbridge.data.dataset import (
    DatasetRef,
    as_ids,
    check_id_lengths,
    count_missing,
    iter_dataset,
    missing_ids,
)
from rainbridge.errors import DataError, ProtocolViolationError
from rainbridge.protocols.psi import (
    EcdhPsiParams,
    IdBatches,
    Rr22PsiParams,
    run_role,
    run_rr22,
)


class RowFilter(BaseModel):
    """Keep a party's rows where ``column op value`` (applied by that party, before PSI)."""

    model_config = ConfigDict(extra="forbid")

    column: str
    op: Literal["=", "!=", "<", "<=", ">", ">="]
    value: float | int | str | bool


def _compare(col: pa.ChunkedArray, op: str, value: Any) -> Any:
    """``col op value`` as SQL has it: NULL compares unknown (the row is not kept), an
    all-NULL column keeps no row, and an integer column compares with a real literal by
    value (``n > 2.5`` keeps 3 and up; ``n = 2.5`` keeps nothing), exactly at any size."""
    if pa.types.is_null(col.type):
        return pa.chunked_array([pa.nulls(len(col), pa.bool_())])
    if (
        pa.types.is_integer(col.type)
        and isinstance(value, float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and not value.is_integer()
    ):
        if op in ("=", "!="):
            # never equal: = keeps no row, != keeps every present value
            return pc.is_valid(col) if op == "!=" else pc.and_(pc.is_valid(col), False)
        bound = math.floor(value) if op in ("<", "<=") else math.ceil(value)
        op = {"<": "<=", "<=": "<=", ">": ">=", ">=": ">="}[op]
        value = bound
    elif pa.types.is_integer(col.type) and isinstance(value, float) and value.is_integer():
        value = int(value)
    return _OPS[op](col, pa.scalar(value).cast(col.type))


class PsiParams(BaseModel):
    """Parameters of the ``psi`` component."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["ecdh", "rr22"] = Field(
        default="ecdh",
        description="ecdh: two or more parties; rr22: two parties, OT-based, far faster on "
        "large sets",
    )
    curve: Literal["curve25519", "ristretto255"] = Field(
        default="curve25519", description="ecdh: the group the IDs are blinded in"
    )
    truncate: bool = Field(
        default=True,
        description="ecdh: truncate fully blinded values to the standard's bound "
        "(false: keep all 32 bytes)",
    )
    batch_size: int = Field(
        default=1 << 16, ge=1, le=1 << 22, description="ecdh: IDs per message (memory in flight)"
    )
    #: rr22: bound on the protocol's working memory; larger inputs are bucketed on disk
    memory_limit_mb: int = Field(
        default=2048,
        ge=16,
        le=1 << 20,
        description="rr22: working memory; larger inputs are bucketed on disk",
    )
    #: per party, conditions (all must hold) on its own rows: a local WHERE before the join
    filters: dict[str, list[RowFilter]] = Field(
        default_factory=dict,
        description="per party, conditions on its own rows (all must hold), applied before "
        "the join",
    )
    #: ecdh: every party learns the size only; nobody learns which IDs are common
    cardinality_only: bool = Field(
        default=False,
        description="ecdh: every party learns the size only; no output",
    )
    #: rr22: {party: [columns]}, that party's columns delivered to the intersection's one
    #: receiver, aligned to its rows (the party must not be a receiver)
    payload: dict[str, list[str]] = Field(
        default_factory=dict,
        description="rr22: a party's columns delivered to the one receiver, aligned to its rows",
    )
    #: rows whose ID is empty or NULL: refused (default, with their count) or left out
    missing_ids: Literal["refuse", "drop"] = Field(
        default="refuse", description="rows with an empty or NULL ID: refused or left out"
    )
    #: Unicode normal form applied to IDs before hashing (none: compared byte for byte)
    normalize: Literal["none", "nfc", "nfkc"] = Field(
        default="none",
        description="Unicode form of the IDs before hashing (none: bytes as they are)",
    )
    #: two parties: intersect bucket pair by bucket pair, each a task of the parties'
    #: compute engines (on: always; auto: when either party runs the ray engine)
    bucket_pairs: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="two parties: intersect bucket pair by bucket pair as compute tasks "
        "(auto: when either party runs the ray engine)",
    )
    #: target IDs per bucket pair
    bucket_items: int = Field(
        default=1 << 20, ge=1024, le=1 << 26, description="target IDs per bucket pair"
    )


_OPS = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


class PsiComponent(Component):
    type_name = "psi"
    summary = "Private set intersection on an ID column (ECDH-PSI for 2+ parties, RR22 for 2)"
    Params = PsiParams
    outputs = ("intersection",)
    id_outputs = ("intersection",)

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, PsiParams)
        if params.protocol == "rr22" and len(spec.inputs) != 2:
            raise ComponentParamError(
                f"psi protocol rr22 takes exactly two parties (got {len(spec.inputs)}); "
                "use protocol: ecdh for more",
                ("params", "protocol"),
            )
        # an input without ``id`` matches on its dataset's registered ID column
        self._check_variants(spec, params)

    def _check_variants(self, spec: ComponentSpec, params: PsiParams) -> None:
        out = spec.outputs.get("intersection")
        if params.cardinality_only:
            if params.protocol != "ecdh":
                raise ComponentParamError(
                    "cardinality_only runs on protocol: ecdh (an RR22 receiver sees its members)",
                    ("params", "cardinality_only"),
                )
            if out is not None:
                raise ComponentParamError(
                    "cardinality_only reveals no members: remove the 'intersection' output",
                    ("outputs", "intersection"),
                )
        if params.bucket_pairs == "on" and (params.payload or len(spec.inputs) != 2):
            raise ComponentParamError(
                "bucket_pairs runs a two-party PSI without payload",
                ("params", "bucket_pairs"),
            )
        if not params.payload:
            return
        at = ("params", "payload")
        if params.protocol != "rr22":
            raise ComponentParamError("payload runs on protocol: rr22", at)
        if len(params.payload) != 1:
            raise ComponentParamError("payload names one party's columns", at)
        ((sender, cols),) = params.payload.items()
        if sender not in spec.inputs:
            raise ComponentParamError(f"payload party {sender!r} takes no part in the PSI", at)
        others = [p for p in spec.inputs if p != sender]
        if out is None or list(out.receivers) != others:
            raise ComponentParamError(
                f"payload goes to the one other party: the 'intersection' output must have "
                f"receivers {others} and no other",
                ("outputs", "intersection", "receivers"),
            )
        own = set(out.columns.get(others[0], [])) | {spec.inputs[others[0]].id or ""}
        clash = sorted(own & set(cols))
        if not cols or len(set(cols)) != len(cols) or clash:
            raise ComponentParamError(
                "payload columns must be named, each once, and differ from the receiver's "
                f"own output columns{f' (both have {clash})' if clash else ''}",
                (*at, sender),
            )

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, PsiParams)
        cols = super().columns_used(spec, party, id_column)
        cols += [f.column for f in params.filters.get(party, []) if f.column not in cols]
        return cols + [c for c in params.payload.get(party, []) if c not in cols]

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, PsiParams)
        ref = spec.inputs.get(party)
        key = (ref.id if ref is not None else None) or id_column
        uses: dict[str, set[str]] = {key: {"join"}} if key else {}
        for f in params.filters.get(party, []):
            uses.setdefault(f.column, set()).add("filter")
        for c in params.payload.get(party, []):
            uses.setdefault(c, set()).add("reveal")  # its values reach the receiver
        return uses

    def output_columns(
        self, spec: ComponentSpec, output: str, party: str, id_column: str | None
    ) -> list[str] | None:
        # the ID, the receiver's own named columns, then the payload party's columns
        params = self.parse_params(spec.params)
        assert isinstance(params, PsiParams)
        ref, out = spec.inputs.get(party), spec.outputs.get(output)
        id_col = (ref.id if ref is not None else None) or id_column
        if out is None or party not in out.receivers or not id_col:
            return None
        own = [c for c in out.columns.get(party, []) if c != id_col]
        payload = [c for p, cols in params.payload.items() if p != party for c in cols]
        return [id_col, *own, *payload]

    def receivers(self, spec: ComponentSpec) -> tuple[str, ...]:
        out = spec.outputs.get("intersection")
        return tuple(out.receivers) if out else tuple(sorted(spec.inputs))

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, PsiParams)
        ref = ctx.inputs[ctx.party]
        id_col = ctx.spec.inputs[ctx.party].id or ref.id_column
        if not id_col:
            raise DataError(f"dataset {ref.name!r}: no ID column named for PSI")
        filters = params.filters.get(ctx.party, [])
        form = None if params.normalize == "none" else params.normalize.upper()
        what = f"dataset {ref.name!r} column {id_col!r}"
        # RR22 without filters streams the ID column in batches (its memory bound holds for
        # the input too) after a first pass that checks every ID; otherwise (or when rows
        # without an ID are to be dropped) the column is read whole.
        dropped = 0
        if await self._bucket_pairs(ctx, params):
            return await self._run_bucketed(ctx, params, ref, id_col, form, filters)
        stream = params.protocol == "rr22" and not filters
        if stream:
            n_rows, dropped = _census(ref, id_col, form)
            _refuse_missing(params, what, dropped)
            stream = not dropped
        all_ids = None
        if stream:
            ids: Any = _streamed_ids(ref, id_col, n_rows, form)
            keep = None
        else:
            ids, keep, all_ids, dropped = self._read_ids(ref, id_col, form, params, filters, what)
        ((sender, payload_cols),) = params.payload.items() if params.payload else ((None, []),)
        if ctx.interop:
            result = await _run_interop(ctx, ids, self.receivers(ctx.spec))
        elif params.protocol == "rr22":
            payload = None
            if sender == ctx.party:
                payload = read_columns(ref, payload_cols, text=True)
                if keep is not None:
                    payload = payload.take(keep)
            result = await run_rr22(
                ctx.party,
                ctx.channels,
                ids,
                Rr22PsiParams(
                    receivers=self.receivers(ctx.spec),
                    memory_limit_mb=params.memory_limit_mb,
                    payload_from=sender,
                    payload_columns=tuple(payload_cols),
                ),
                payload=payload,
                progress=ctx.progress,
            )
        else:
            result = await run_role(
                ctx.party,
                ctx.channels,
                ids,
                EcdhPsiParams(
                    curve=params.curve,
                    receivers=self.receivers(ctx.spec),
                    truncate=params.truncate,
                    batch_size=params.batch_size,
                    cardinality_only=params.cardinality_only,
                ),
                progress=ctx.progress,
            )
        return self._summary(
            ctx, params, ref, id_col, form, result,
            rows_in=len(ids) if filters else None, keep=keep,
            all_ids=all_ids, dropped=dropped,
        )  # fmt: skip

    def _summary(
        self,
        ctx: ComponentContext,
        params: PsiParams,
        ref: DatasetRef,
        id_col: str,
        form: str | None,
        result: Any,
        *,
        rows_in: int | None,
        keep: pa.Array | None,
        all_ids: pa.Array | None,
        dropped: int,
    ) -> dict[str, Any]:
        """The component's summary, and at a receiver its output: the common rows (of
        ``all_ids`` when the column was read whole, else read back from the dataset)."""
        summary: dict[str, Any] = {"intersection_size": result.size, "stats": result.stats}
        if rows_in is not None:
            summary["rows_after_filter"] = rows_in
        if params.missing_ids == "drop":
            summary["missing_ids_dropped"] = dropped
        out_spec = ctx.spec.outputs.get("intersection")
        if out_spec is None or ctx.party not in out_spec.receivers or result.indices is None:
            return summary
        columns = [c for c in out_spec.columns.get(ctx.party, []) if c != id_col]
        rows = result.indices if keep is None else keep.to_numpy()[result.indices]
        if all_ids is None:
            picked = _rows_of(ref, [id_col, *columns], rows)
            if form is not None:
                picked = picked.set_column(0, id_col, _normalized(as_ids(picked.column(0)), form))
        else:
            idx = pa.array(rows, type=pa.int64())
            picked = pa.table({id_col: all_ids.take(idx)})
            if columns:
                own = read_columns(ref, columns, text=True).take(idx)
                for c in columns:
                    picked = picked.append_column(own.schema.field(c), own.column(c))
        table = self._output_table(picked, id_col, result.payload)
        summary["outputs"] = {"intersection": ctx.write_output("intersection", table)}
        return summary

    @staticmethod
    async def _bucket_pairs(ctx: ComponentContext, params: PsiParams) -> bool:
        """Whether this PSI runs by bucket pairs: the two parties tell each other whether
        their engine wants it (``auto``), or the job says so."""
        if ctx.interop or len(ctx.channels) != 1 or params.payload or params.bucket_pairs == "off":
            return False
        if params.bucket_pairs == "on":
            return True
        ((peer, ch),) = ctx.channels.items()
        mine = ctx.compute.name != "local"
        await ch.send_json("psi/buckets", {"want": mine})
        theirs = await ch.recv_json("psi/buckets")
        if not isinstance(theirs, dict) or not isinstance(theirs.get("want"), bool):
            raise ProtocolViolationError(f"peer {peer!r} sent a malformed PSI mode")
        return mine or bool(theirs["want"])

    async def _run_bucketed(
        self,
        ctx: ComponentContext,
        params: PsiParams,
        ref: DatasetRef,
        id_col: str,
        form: str | None,
        filters: list[RowFilter],
    ) -> dict[str, Any]:
        """The PSI by bucket pairs on this party's engine (:mod:`rainbridge.compute.psi`)."""
        what = f"dataset {ref.name!r} column {id_col!r}"
        dropped = 0
        keep = None
        all_ids: Any = None
        chunked = (
            ref.format == "parquet"
            and not filters
            and params.missing_ids == "refuse"
            and ctx.compute.name != "local"
        )
        ids: Any
        if chunked:
            n_rows, missing = _census_meta(ref, id_col)
            _refuse_missing(params, what, missing)
            target = max(1 << 18, n_rows // max(1, 4 * ctx.compute.workers))
            ids = parquet_chunks(ref.path, id_col, target_rows=target, normalize=form)
        elif not filters:
            n_rows, dropped = _census(ref, id_col, form)
            _refuse_missing(params, what, dropped)
            if dropped:
                chunked = False
                ids, keep, all_ids, dropped = self._read_ids(
                    ref, id_col, form, params, filters, what
                )
            else:
                ids = _streamed_ids(ref, id_col, n_rows, form)
        else:
            ids, keep, all_ids, dropped = self._read_ids(ref, id_col, form, params, filters, what)
        work = scratch_dir(ctx.compute.work_dir(Path(ctx.out_dir)), f"psi-{ctx.spec.id}")
        try:
            result = await run_bucketed_psi(
                ctx.party,
                ctx.channels,
                ids,
                BucketedPsiParams(
                    protocol=params.protocol,
                    receivers=self.receivers(ctx.spec),
                    bucket_items=params.bucket_items,
                    curve=params.curve,
                    truncate=params.truncate,
                    batch_size=params.batch_size,
                    cardinality_only=params.cardinality_only,
                ),
                ctx.compute,
                work,
                reconnect=ctx.reconnect,
                progress=ctx.progress,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._summary(
            ctx, params, ref, id_col, form, result,
            rows_in=len(ids) if filters else None, keep=keep, all_ids=all_ids,
            dropped=dropped,
        )  # fmt: skip

    def _read_ids(
        self,
        ref: DatasetRef,
        id_col: str,
        form: str | None,
        params: PsiParams,
        filters: list[RowFilter],
        what: str,
    ) -> tuple[pa.Array, pa.Array | None, pa.Array, int]:
        """The whole ID column, its rows that pass the filters and have an ID (``keep``,
        None for all), checked; returns (the IDs kept, keep, every ID, the rows without
        an ID)."""
        ids = read_ids(ref, id_col, missing="keep")
        absent = missing_ids(ids)
        dropped = count_missing(ids)
        _refuse_missing(params, what, dropped)
        keep = self._filtered_rows(ref, filters)
        if dropped:
            present = pc.invert(absent)
            mask = present if keep is None else _mask(len(ids), keep, present)
            keep = pc.indices_nonzero(mask)
        if form is not None:
            ids = _normalized(ids, form)
        check_id_lengths(ids if keep is None else ids.take(keep), what)
        return (ids if keep is None else ids.take(keep)), keep, ids, dropped

    @staticmethod
    def _filtered_rows(ref: Any, filters: list[RowFilter]) -> pa.Array | None:
        """Indices of the rows that pass every filter (None: no filter)."""
        if not filters:
            return None
        cols = list(dict.fromkeys(f.column for f in filters))
        missing = [c for c in cols if c not in ref.columns]
        if missing:
            raise DataError(f"dataset {ref.name!r} has no column {', '.join(map(repr, missing))}")
        table = read_columns(ref, cols)
        mask = None
        for f in filters:
            col = table.column(f.column)
            try:
                cond = _compare(col, f.op, f.value)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(
                    f"filter on {f.column!r}: cannot compare a {col.type} column with {f.value!r}"
                ) from None
            cond = pc.fill_null(cond, False)
            mask = cond if mask is None else pc.and_(mask, cond)
        return pc.indices_nonzero(mask)

    @staticmethod
    def _output_table(picked: pa.Table, id_col: str, payload: pa.Table | None) -> pa.Table:
        """The receiver's rows (in row order), the payload aligned to them, sorted by ID."""
        table = picked.set_column(0, id_col, picked.column(0).cast(pa.string()))
        if payload is not None:  # the other party's columns, aligned to these rows
            for c in payload.column_names:
                if c in table.column_names:
                    raise DataError(f"payload column {c!r} clashes with a column of the output")
                table = table.append_column(payload.schema.field(c), payload.column(c))
        order = pc.sort_indices(table, sort_keys=[(id_col, "ascending")])
        return table.take(order)


async def _run_interop(ctx: ComponentContext, ids: Any, receivers: tuple[str, ...]) -> Any:
    """The standard's ECDH-PSI with the other party, which runs another platform."""
    from rainbridge.crypto.certs import TlsIdentity
    from rainbridge.interop import IcLink, IcPsiParams, IcTls, run_ic_ecdh_psi

    ((peer, cfg),) = ctx.interop.items()
    mine = 1 - int(cfg["rank"])
    if set(receivers) == {ctx.party, peer}:
        to_rank = -1
    elif set(receivers) == {ctx.party}:
        to_rank = mine
    else:
        to_rank = int(cfg["rank"])
    tls = None
    if cfg.get("cert_pem"):
        pw = cfg.get("key_password")
        ident = TlsIdentity.load(cfg["node_dir"], pw.encode() if isinstance(pw, str) else pw)
        tls = IcTls.from_identity(ident, cfg["cert_pem"], cfg.get("tls_name"))
    link = IcLink(
        mine,
        cfg["listen"],
        {int(cfg["rank"]): cfg["url"]},
        channel=cfg["channel"],
        counter_start=int(cfg["counter_start"]),
        timeout=float(cfg["timeout"]),
        tls=tls,
    )
    try:
        await link.start()
        result = await run_ic_ecdh_psi(link, ids, IcPsiParams(result_to_rank=to_rank))
    finally:
        await link.close()
    if result.size < 0:  # the standard tells a party that does not receive nothing
        result.size = 0
        result.stats["intersection_size_known"] = False
    return result


def _refuse_missing(params: PsiParams, what: str, n: int) -> None:
    if n and params.missing_ids == "refuse":
        raise DataError(
            f"{what}: {n} empty IDs (empty text or NULL); fill them in, or set "
            "`missing_ids: drop` on the psi component to leave those rows out"
        )


def _mask(n: int, keep: pa.Array, present: pa.Array) -> pa.Array:
    """``present`` and-ed with the rows listed in ``keep``."""
    chosen = np.zeros(n, dtype=bool)
    chosen[keep.to_numpy()] = True
    return pc.and_(present, pa.array(chosen))


def _normalized(ids: pa.Array, form: str) -> pa.Array:
    """IDs in Unicode normal form ``form`` (NFC or NFKC)."""
    return pc.utf8_normalize(ids, form=form)


def _census(ref: DatasetRef, id_col: str, form: str | None) -> tuple[int, int]:
    """One pass over the ID column before any message: its rows and missing IDs, and every
    ID's length checked (after normalisation)."""
    rows = missing = 0
    what = f"dataset {ref.name!r} column {id_col!r}"
    for batch in iter_dataset(ref, [id_col], id_column=id_col, batch_rows=1 << 20):
        if id_col not in batch.schema.names:
            raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {id_col!r}")
        arr = as_ids(batch.column(id_col))
        rows += len(arr)
        missing += count_missing(arr)
        check_id_lengths(arr if form is None else _normalized(arr, form), what)
    return rows, missing


def _census_meta(ref: DatasetRef, id_col: str) -> tuple[int, int]:
    """A Parquet file's rows and missing IDs from its metadata (NULL counts per row group);
    empty IDs and lengths are checked by the tasks that read the row groups."""
    try:
        meta = pq.ParquetFile(ref.path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"dataset {ref.name!r}: cannot read {ref.path}: {exc}") from None
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if id_col not in names:
        raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {id_col!r}")
    col = names.index(id_col)
    missing = 0
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics
        if st is None or not st.has_null_count:
            return _census(ref, id_col, None)
        missing += st.null_count
    return meta.num_rows, missing


def _streamed_ids(ref: DatasetRef, id_col: str, rows: int, form: str | None) -> IdBatches:
    """The ID column as batches (checked by :func:`_census`), normalised as asked."""

    def batches() -> Iterator[pa.Array]:
        for batch in iter_dataset(ref, [id_col], id_column=id_col, batch_rows=1 << 20):
            arr = as_ids(batch.column(id_col))
            yield arr if form is None else _normalized(arr, form)

    return IdBatches(rows=rows, batches=batches())


def _rows_of(ref: DatasetRef, columns: list[str], rows: np.ndarray) -> pa.Table:
    """The given rows (ascending row numbers) of the named columns, read batch by batch
    (the ID column first; the others as written)."""
    missing = [c for c in columns if ref.columns and c not in ref.columns]
    if missing:
        raise DataError(f"dataset {ref.name!r} has no column {', '.join(map(repr, missing))}")
    parts: list[pa.Table] = []
    start = 0
    empty: pa.Table | None = None
    for batch in iter_dataset(ref, columns, id_column=columns[0], text=True, batch_rows=1 << 20):
        if empty is None:
            empty = pa.Table.from_batches([batch]).select(columns).slice(0, 0)
        end = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, end])
        if hi > lo:
            t = pa.Table.from_batches([batch]).select(columns)
            parts.append(t.take(pa.array(rows[lo:hi] - start, type=pa.int64())))
        start = end
    if not parts:
        return empty if empty is not None else read_columns(ref, columns, text=True)
    return pa.concat_tables(parts)
