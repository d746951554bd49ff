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
* aggregates ``COUNT(*)``, ``SUM``, ``AVG``, ``STDDEV``, ``VARIANCE``, ``MIN``, ``MAX``,
  ``MEDIAN`` of a column, and ``CORR(a, b)``; with ``GROUP BY`` one column of one party,
  ``COUNT(*)``, ``SUM``, ``AVG``, ``STDDEV``, ``VARIANCE``, ``MIN`` and ``MAX`` of the other
  party's columns.

Anything else is refused with a reason that names the clause or column (``SqlError``); grants
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

from rainbridge.errors import JobSpecError

_AGGS: dict[type[exp.Expression], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "mean",
    exp.Stddev: "std",
    exp.StddevSamp: "std",
    exp.Variance: "var",
    exp.Corr: "corr",
    exp.Min: "min",
    exp.Max: "max",
    exp.Median: "median",
}
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
    """One SELECT item: a group column or an aggregate, with its label."""

    label: str
    stat: str  # "group", "count", "sum", "mean", "std", "var", "corr"
    column: str = ""
    column2: str = ""


@dataclass
class SqlPlan:
    job: dict[str, Any]
    items: list[Item]
    receiver: str
    grouped: bool
    parties: tuple[str, str] = ("", "")
    notes: list[str] = field(default_factory=list)


def _col(node: Any, tables: dict[str, tuple[str, str]], where: str) -> tuple[str, str]:
    if not isinstance(node, exp.Column) or not node.table:
        raise SqlError(f"{where}: expected a column written alias.column, got {node.sql()!r}")
    alias = node.table
    if alias not in tables:
        raise SqlError(f"{where}: unknown table alias {alias!r}")
    return tables[alias][0], node.name


def _literal(node: Any) -> float | int | str | bool:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        v = _literal(node.this)
        if isinstance(v, int | float):
            return -v
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        text = str(node.this)
        return float(text) if any(c in text for c in ".eE") else int(text)
    raise SqlError(f"WHERE: expected a constant, got {node.sql()!r}")


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
        tree = sqlglot.parse_one(query)
    except sqlglot.errors.ParseError as exc:
        raise SqlError(f"cannot parse the query: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(tree, exp.Select):
        raise SqlError("only SELECT queries are supported")
    for clause in ("having", "order", "limit", "distinct", "with"):
        if tree.args.get(clause):
            raise SqlError(f"{clause.upper()} is not supported yet")
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

    def use(party: str, column: str) -> None:
        if column not in columns[party]:
            columns[party].append(column)

    for sel in tree.expressions:
        label = sel.alias_or_name if isinstance(sel, exp.Alias) else sel.sql()
        node = sel.this if isinstance(sel, exp.Alias) else sel
        if isinstance(node, exp.Column):
            if group_col is None or _col(node, tables, "SELECT") != group_col:
                raise SqlError(f"SELECT {node.sql()}: a plain column must be the GROUP BY column")
            items.append(Item(label, "group"))
            continue
        stat = _AGGS.get(type(node))
        if stat is None:
            raise SqlError(f"SELECT {node.sql()}: unsupported (use COUNT, SUM, AVG, STDDEV, "
                           "VARIANCE, CORR, MIN, MAX or MEDIAN)")  # fmt: skip
        if stat == "count":
            items.append(Item(label, "count"))
            stats.add("count")
            continue
        if stat == "corr":
            (qa, ca), (qb, cb) = (
                _col(node.this, tables, "CORR"),
                _col(node.expression, tables, "CORR"),
            )
            use(qa, ca)
            use(qb, cb)
            items.append(Item(label, "corr", ca, cb))
            stats.add("corr")
            continue
        party, column = _col(node.this, tables, f"SELECT {node.sql()}")
        if group_col is not None:
            if stat not in ("sum", "mean", "var", "std", "min", "max"):
                raise SqlError(
                    f"SELECT {node.sql()}: with GROUP BY, use COUNT(*), SUM, AVG, STDDEV, "
                    "VARIANCE, MIN or MAX"
                )
            if party == group_col[0]:
                raise SqlError(
                    f"SELECT {node.sql()}: with GROUP BY {group_col[0]}'s column, aggregate "
                    f"the other party's columns (this release)"
                )
        use(party, column)
        items.append(Item(label, stat, column))
        stats.add(stat)
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
                "params": {"filters": filters} if filters else {},
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
                    "decimals": decimals,
                    "min_group_size": min_group_size,
                    "id": keys[pa_] if keys[pa_] == keys[pb] else dict(keys),
                    **(
                        {"group_by": {"party": group_col[0], "column": group_col[1]}}
                        if group_col
                        else {}
                    ),
                },
                "outputs": {"result": {"receivers": [receiver], "format": "csv"}},
            },
        ],
    }
    return SqlPlan(job, items, receiver, group_col is not None, (pa_, pb))


def result_table(plan: SqlPlan, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The query's answer from the stats rows: headers and rows in SELECT order."""
    got = {(r["statistic"], r["column"], r["column2"], r["group"]): r["value"] for r in rows}
    headers = [i.label for i in plan.items]
    if not plan.grouped:
        count = next((v for (s, _, _, g), v in got.items() if s == "count" and not g), None)
        row = [
            count if i.stat == "count" else got.get((i.stat, i.column, i.column2, ""))
            for i in plan.items
        ]
        return headers, [row]
    groups = [g for (s, c, _, g) in got if s == "count" and g and not c]
    out = []
    for g in groups:
        out.append(
            [
                g
                if i.stat == "group"
                else got.get(("count", "", "", g))
                if i.stat == "count"
                else got.get((i.stat, i.column, "", g))
                for i in plan.items
            ]
        )
    return headers, out
