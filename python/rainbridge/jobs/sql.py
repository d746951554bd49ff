"""SQL front end: a query over two parties' tables, planned into a PSI + ``stats`` job.

::

    SELECT t.prepaid, COUNT(*), AVG(b.monthly_income)
    FROM bank.customers b JOIN telecom.subscribers t ON b.customer_id = t.customer_id
    WHERE b.age >= 30
    GROUP BY t.prepaid

Tables are ``party.dataset``. Parsed with sqlglot; what this release plans:

* exactly two tables of two parties, an inner ``JOIN … ON a.key = b.key`` (the PSI);
* ``WHERE``: comparisons of one party's column with a constant, joined by ``AND`` — each
  party filters its own rows before the join: the other party never sees the column's
  values, but the rows that pass (their IDs, through the join) become visible to the join's
  receivers, which is why a column policy must be ``compare`` or ``plaintext`` for it;
* aggregates ``COUNT(*)``, ``COUNT(col)``, ``SUM``, ``AVG``, ``STDDEV``/``STDDEV_SAMP``,
  ``VARIANCE``/``VAR_SAMP``, ``MIN``, ``MAX``, ``MEDIAN`` of a column, ``CORR(a, b)`` and
  ``COVAR_SAMP(a, b)``; with ``GROUP BY`` one column of one party, ``COUNT(*)``,
  ``COUNT(col)``, ``SUM``, ``AVG``, ``STDDEV``, ``VARIANCE``, ``MIN`` and ``MAX`` of the
  other party's columns;
* ``HAVING`` (comparisons of aggregates with constants, joined by AND), ``ORDER BY`` (select
  items by name, position or expression; NULLs last unless told) and ``LIMIT``/``OFFSET``:
  applied by the receiver to the answer it receives, so they reveal nothing more.

SQL's semantics throughout (PostgreSQL and DuckDB are the reference): aggregates skip NULLs;
``COUNT(*)`` counts rows and ``COUNT(col)`` present values; SUM, AVG, MIN and MAX over no
value are NULL, VARIANCE and STDDEV over fewer than two are NULL, CORR with a constant is
NULL; NULL group keys form one group; a comparison with NULL is unknown (the row is not
kept); numbers compare across integer and real; NULL join keys join nothing.

The grammar is an allow-list over sqlglot's tree: anything else — DISTINCT, expressions
inside aggregates, subqueries, window functions, OR, outer joins — is refused with a reason
that names the clause or column (``SqlError``); grants
and column policies (join / aggregate / compare / plaintext, set by each data owner) at each
party then decide whether the planned job may run, and a refusal names the column. A third
party may serve as the MPC dealer (fast); without one the two parties make their randomness
by OT extension (no third party to trust, much slower). The result goes to one of the two
data parties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from rainbridge.errors import DataError, JobSpecError

_AGGS: dict[type[exp.Expression], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "mean",
    exp.Stddev: "std",
    exp.StddevSamp: "std",
    exp.Variance: "var",
    exp.Corr: "corr",
    exp.CovarSamp: "cov",
    exp.Min: "min",
    exp.Max: "max",
    exp.Median: "median",
}
#: the clauses of a SELECT this planner understands; any other one present is refused
_CLAUSES = {"expressions", "from", "from_", "joins", "where", "group", "having", "order",
            "limit", "offset"}  # fmt: skip
#: every planned PSI drops rows whose join key is NULL or empty: SQL's NULL joins nothing
_SQL_MISSING_IDS = "drop"
_CMP: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


class SqlError(JobSpecError):
    """The query cannot be planned; the message names the clause or column at fault."""

    code = "job_spec"


@dataclass
class Item:
    """One SELECT item: a group column or an aggregate, with its label; ``hidden`` items
    are computed for HAVING or ORDER BY only and not shown."""

    label: str
    stat: str  # "group", "count", "sum", "mean", "std", "var", "corr", "cov", ...
    column: str = ""
    column2: str = ""
    hidden: bool = False
    sql: str = ""


@dataclass
class Having:
    """``item op value``: one condition of the HAVING clause."""

    item: int
    op: str
    value: float | int | str | bool


@dataclass
class OrderKey:
    item: int
    desc: bool = False
    nulls_first: bool = False


@dataclass
class SqlPlan:
    job: dict[str, Any]
    items: list[Item]
    receiver: str
    grouped: bool
    parties: tuple[str, str] = ("", "")
    notes: list[str] = field(default_factory=list)
    having: list[Having] = field(default_factory=list)
    order: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


def _col(node: Any, tables: dict[str, tuple[str, str]], where: str) -> tuple[str, str]:
    if not isinstance(node, exp.Column) or not node.table:
        raise SqlError(f"{where}: expected a column written alias.column, got {node.sql()!r}")
    alias = node.table
    if alias not in tables:
        raise SqlError(f"{where}: unknown table alias {alias!r}")
    return tables[alias][0], node.name


def _literal(node: Any, where: str = "WHERE") -> float | int | str | bool:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        v = _literal(node.this, where)
        if isinstance(v, int | float):
            return -v
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        text = str(node.this)
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Null):
        raise SqlError(
            f"{where}: a comparison with NULL is never true; use IS NULL or leave it out"
        )
    raise SqlError(f"{where}: expected a constant, got {node.sql()!r}")


def _conjuncts(node: Any) -> list[Any]:
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    return [node]


def plan_sql(
    query: str,
    *,
    dealer: str | None,
    receiver: str,
    name: str = "sql-query",
    decimals: int = 2,
    min_group_size: int = 1,
) -> SqlPlan:
    """Plan ``query`` into a job (see the module docstring for what is supported).

    Raises
    ------
    SqlError
        The query cannot be parsed or planned; the message names the clause or column.
    """
    try:
        tree = sqlglot.parse_one(query, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise SqlError(f"cannot parse the query: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(tree, exp.Select):
        raise SqlError("only SELECT queries are supported")
    for clause, value in tree.args.items():
        if value and clause not in _CLAUSES:
            raise SqlError(f"{clause.upper()} is not supported")
    from_ = tree.args.get("from") or tree.args.get("from_")
    joins = tree.args.get("joins") or []
    if from_ is None or len(joins) != 1:
        raise SqlError("FROM must join exactly two tables: party.dataset a JOIN party.dataset b")
    join = joins[0]
    if join.args.get("side") or (join.args.get("kind") or "").upper() not in ("", "INNER"):
        raise SqlError("only an inner JOIN is supported (the rows common to both parties)")
    tables: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for t in (from_.this, join.this):
        if not isinstance(t, exp.Table) or not t.db:
            raise SqlError(f"FROM: name tables as party.dataset, got {t.sql()!r}")
        alias = t.alias or t.name
        tables[alias] = (t.db, t.name)
        order.append(t.db)
    pa_, pb = order
    if pa_ == pb:
        raise SqlError("FROM: the two tables must belong to two different parties")
    if dealer is not None and dealer in (pa_, pb):
        raise SqlError(f"the dealer {dealer!r} must be a third party, not a data owner")
    if receiver not in (pa_, pb):
        raise SqlError(f"the result goes to a data party ({pa_} or {pb}), not {receiver!r}")
    on = join.args.get("on")
    if not isinstance(on, exp.EQ):
        raise SqlError("JOIN … ON must be one equality of the two tables' key columns")
    (p1, k1), (p2, k2) = _col(on.left, tables, "ON"), _col(on.right, tables, "ON")
    if p1 == p2:
        raise SqlError("ON must compare a column of each table")
    keys = {p1: k1, p2: k2}
    datasets = {party: ds for party, ds in tables.values()}

    filters: dict[str, list[dict[str, Any]]] = {}
    where = tree.args.get("where")
    if where is not None:
        for cond in _conjuncts(where.this):
            op = _CMP.get(type(cond))
            if op is None:
                raise SqlError(
                    f"WHERE: only comparisons joined by AND are supported, got {cond.sql()!r}"
                )
            left, right = cond.args.get("this"), cond.args.get("expression")
            if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
                left, right, op = right, left, _FLIP[op]
            party, column = _col(left, tables, "WHERE")
            filters.setdefault(party, []).append(
                {"column": column, "op": op, "value": _literal(right)}
            )

    group = tree.args.get("group")
    group_col: tuple[str, str] | None = None
    if group is not None:
        if len(group.expressions) != 1:
            raise SqlError("GROUP BY one column")
        group_col = _col(group.expressions[0], tables, "GROUP BY")

    items: list[Item] = []
    columns: dict[str, list[str]] = {pa_: [], pb: []}
    stats: set[str] = set()

    per_column: dict[str, set[str]] = {}

    def use(party: str, column: str, stat: str) -> None:
        if column not in columns[party]:
            columns[party].append(column)
        per_column.setdefault(column, set()).add(stat)

    def aggregate(node: Any, label: str, where: str, hidden: bool = False) -> Item:
        """The item of one aggregate (or the group column), its columns marked as used."""
        sql = node.sql(dialect="duckdb")
        if isinstance(node, exp.Column):
            if group_col is None or _col(node, tables, where) != group_col:
                raise SqlError(f"{where} {sql}: a plain column must be the GROUP BY column")
            return Item(label, "group", hidden=hidden, sql=sql)
        stat = _AGGS.get(type(node))
        if stat is None:
            raise SqlError(
                f"{where} {sql}: unsupported (use COUNT, SUM, AVG, STDDEV, VARIANCE, CORR, "
                "COVAR_SAMP, MIN, MAX or MEDIAN of a column)"
            )
        arg = node.this
        if isinstance(arg, exp.Distinct):
            raise SqlError(
                f"{where} {sql}: DISTINCT inside an aggregate is not supported (a distinct "
                "count across parties would reveal the values)"
            )
        if stat == "count" and isinstance(arg, exp.Star):
            stats.add("count")
            return Item(label, "count", hidden=hidden, sql=sql)
        if stat in ("corr", "cov"):
            (qa, ca), (qb, cb) = (
                _col(arg, tables, f"{where} {sql}"),
                _col(node.expression, tables, f"{where} {sql}"),
            )
            if group_col is not None:
                raise SqlError(f"{where} {sql}: CORR and COVAR_SAMP per group are not supported")
            use(qa, ca, stat)
            use(qb, cb, stat)
            stats.add(stat)
            return Item(label, stat, ca, cb, hidden=hidden, sql=sql)
        party, column = _col(arg, tables, f"{where} {sql}")
        if group_col is not None:
            if stat not in ("count", "sum", "mean", "var", "std", "min", "max"):
                raise SqlError(
                    f"{where} {sql}: with GROUP BY, use COUNT, SUM, AVG, STDDEV, "
                    "VARIANCE, MIN or MAX"
                )
            if party == group_col[0]:
                raise SqlError(
                    f"{where} {sql}: with GROUP BY {group_col[0]}'s column, aggregate "
                    f"the other party's columns"
                )
        use(party, column, stat)
        stats.add(stat)
        return Item(label, stat, column, hidden=hidden, sql=sql)

    for sel in tree.expressions:
        label = sel.alias_or_name if isinstance(sel, exp.Alias) else sel.sql()
        node = sel.this if isinstance(sel, exp.Alias) else sel
        items.append(aggregate(node, label, "SELECT"))

    def item_of(node: Any, where: str) -> int:
        """The index of the item ``node`` names (a label, a position, or the same
        expression), added as a hidden item if the SELECT list lacks it."""
        if isinstance(node, exp.Literal) and not node.is_string and where == "ORDER BY":
            pos = int(str(node.this)) if str(node.this).isdigit() else 0
            if not 1 <= pos <= len(tree.expressions):
                raise SqlError(f"ORDER BY {node.sql()}: no such SELECT position")
            return pos - 1
        if isinstance(node, exp.Column) and not node.table:
            for i, it in enumerate(items):
                if not it.hidden and it.label == node.name:
                    return i
            raise SqlError(f"{where} {node.sql()}: no SELECT item is called {node.name!r}")
        sql = node.sql(dialect="duckdb")
        for i, it in enumerate(items):
            if it.sql == sql:
                return i
        items.append(aggregate(node, sql, where, hidden=True))
        return len(items) - 1

    having: list[Having] = []
    if tree.args.get("having") is not None:
        for cond in _conjuncts(tree.args["having"].this):
            op = _CMP.get(type(cond))
            if op is None:
                raise SqlError(
                    f"HAVING: only comparisons joined by AND are supported, got {cond.sql()!r}"
                )
            left, right = cond.args.get("this"), cond.args.get("expression")
            if _is_constant(left) and not _is_constant(right):
                left, right, op = right, left, _FLIP[op]
            having.append(Having(item_of(left, "HAVING"), op, _literal(right, "HAVING")))
    sort_keys: list[OrderKey] = []
    if tree.args.get("order") is not None:
        for o in tree.args["order"].expressions:
            desc = bool(o.args.get("desc"))
            nulls_first = bool(o.args.get("nulls_first"))
            sort_keys.append(OrderKey(item_of(o.this, "ORDER BY"), desc, nulls_first))
    limit = _count_clause(tree.args.get("limit"), "LIMIT")
    offset = _count_clause(tree.args.get("offset"), "OFFSET") or 0
    both = set(columns[pa_]) & set(columns[pb])
    if both:
        raise SqlError(f"column {sorted(both)[0]!r} is used at both parties; rename one")
    # what each party appends to its copy of the intersection: the columns it computes on
    # and its group-by column (filters were applied at the data's owner, in the PSI step)
    psi_outputs = {p: [c for c in columns[p] if c != keys[p]] for p in (pa_, pb)}
    if group_col is not None and group_col[1] not in psi_outputs[group_col[0]]:
        psi_outputs[group_col[0]].append(group_col[1])
    job = {
        "name": name,
        "description": f"planned from SQL: {' '.join(query.split())[:300]}",
        "parties": [pa_, pb, *([dealer] if dealer else [])],
        "components": [
            {
                "id": "psi",
                "type": "psi",
                "inputs": {p: {"dataset": datasets[p], "id": keys[p]} for p in (pa_, pb)},
                "params": {
                    "missing_ids": _SQL_MISSING_IDS,
                    **({"filters": filters} if filters else {}),
                },
                "outputs": {
                    "intersection": {
                        "receivers": [pa_, pb],
                        "columns": {p: cols for p, cols in psi_outputs.items() if cols},
                    }
                },
            },
            {
                "id": "stats",
                "type": "stats",
                "inputs": {
                    pa_: {"from": "psi.intersection"},
                    pb: {"from": "psi.intersection"},
                    **({dealer: {"role": "dealer"}} if dealer else {}),
                },
                "params": {
                    "columns": {p: c for p, c in columns.items() if c},
                    "statistics": sorted(stats | {"count"}),
                    "column_statistics": {c: sorted(v) for c, v in per_column.items()},
                    "decimals": decimals,
                    "min_group_size": min_group_size,
                    "id": keys[pa_] if keys[pa_] == keys[pb] else dict(keys),
                    **(
                        {"group_by": {"party": group_col[0], "column": group_col[1]}}
                        if group_col
                        else {}
                    ),
                },
                "outputs": {"result": {"receivers": [receiver], "format": "parquet"}},
            },
        ],
    }
    return SqlPlan(
        job,
        items,
        receiver,
        group_col is not None,
        (pa_, pb),
        having=having,
        order=sort_keys,
        limit=limit,
        offset=offset,
    )


def _is_constant(node: Any) -> bool:
    return isinstance(node, exp.Literal | exp.Boolean | exp.Null) or (
        isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal)
    )


def _count_clause(node: Any, where: str) -> int | None:
    """The row count of a LIMIT or OFFSET clause."""
    if node is None:
        return None
    value = node.args.get("expression")
    if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
        raise SqlError(f"{where}: expected a whole number of rows, got {node.sql()!r}")
    return int(value.this)


def result_table(plan: SqlPlan, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The query's answer from the stats rows: headers and rows in SELECT order, with
    HAVING, ORDER BY and LIMIT/OFFSET applied. None is SQL's NULL."""
    ungrouped: dict[tuple[str, str, str], Any] = {}
    grouped: dict[tuple[str, str, Any], Any] = {}
    groups: list[Any] = []
    notes: dict[tuple[Any, ...], str] = {}
    for r in rows:
        if r.get("grouped") or (r["group"] not in ("", None) and "grouped" not in r):
            g = r["group"]
            key: tuple[Any, ...] = (r["statistic"], r["column"], _key(g))
            grouped[key] = r["value"]  # type: ignore[index]
            if r["statistic"] == "count" and not r["column"]:
                groups.append(g)
        else:
            key = (r["statistic"], r["column"], r["column2"])
            ungrouped[key] = r["value"]  # type: ignore[index]
        if r.get("note"):
            notes[key] = str(r["note"])
    # a value the engine withheld (its error bound exceeds the stated precision) refuses
    # the query, when the query asks for it
    for i in plan.items:
        for key in notes:
            if key[:2] == (i.stat, i.column) and (plan.grouped or key[2] == i.column2):
                raise DataError(notes[key])
    table: list[list[Any]] = []
    if not plan.grouped:
        table.append(
            [
                ungrouped.get(("count", "", ""))
                if i.stat == "count" and not i.column
                else ungrouped.get((i.stat, i.column, i.column2))
                for i in plan.items
            ]
        )
    else:
        for g in groups:
            table.append(
                [
                    g if i.stat == "group" else grouped.get((i.stat, i.column, _key(g)))
                    for i in plan.items
                ]
            )
    table = [r for r in table if all(_holds(r[h.item], h.op, h.value) for h in plan.having)]
    for ok in reversed(plan.order):  # a stable sort per key, the last key first
        k = ok.item
        present = [r for r in table if r[k] is not None]
        missing = [r for r in table if r[k] is None]
        present.sort(key=lambda r: _sortable(r[k]), reverse=ok.desc)
        table = missing + present if ok.nulls_first else present + missing
    end = None if plan.limit is None else plan.offset + plan.limit
    table = table[plan.offset : end]
    shown = [k for k, i in enumerate(plan.items) if not i.hidden]
    return [plan.items[k].label for k in shown], [[r[k] for k in shown] for r in table]


def _key(group: Any) -> tuple[str, Any]:
    # 1, 1.0 and True hash alike; a group key's type is part of it
    return (type(group).__name__, group)


def _sortable(v: Any) -> Any:
    return (0, v) if isinstance(v, int | float) else (1, str(v))


def _holds(v: Any, op: str, value: Any) -> bool:
    """``v op value`` as SQL has it: a comparison with NULL is unknown, so not kept."""
    if v is None:
        return False
    if isinstance(v, int | float) != isinstance(value, int | float):
        v, value = str(v), str(value)
    if op == "=":
        return bool(v == value)
    if op == "!=":
        return bool(v != value)
    if op == "<":
        return bool(v < value)
    if op == "<=":
        return bool(v <= value)
    if op == ">":
        return bool(v > value)
    return bool(v >= value)
