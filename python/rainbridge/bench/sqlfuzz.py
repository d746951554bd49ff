"""``python -m rainbridge.bench sqlfuzz``: Rainbridge's SQL against DuckDB on generated data.

Each case draws two parties' tables (NULLs in keys and values, NaN-free reals of every
magnitude from 1e-6 to 1e15, int64 up to 2^62, constants, skew, many small groups, empty
filters, non-ASCII keys, Parquet or CSV) and a query (aggregates, WHERE, GROUP BY, HAVING,
ORDER BY, LIMIT), runs it through Rainbridge (every party in one process, a dealer or the
dealer-free setup) and through DuckDB on the plaintext, and classifies the outcome:

* ``match`` — every cell equal (integers exactly; reals within the documented bounds);
* ``refused`` — Rainbridge refused with a typed error, counted by reason;
* ``mismatch`` — an answer that differs: the one outcome that must never happen;
* ``crash`` — an error that is not one of Rainbridge's typed errors (a defect too).

JSON out: cases tried, matches, refusals by reason, mismatches (with the seed to replay).
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.bench.common import machine
from rainbridge.errors import RainbridgeError

_KEY_ALPHABET = "abcxyz019_é中-"


@dataclass
class Case:
    """One generated case: two tables, a query, the setup."""

    seed: int
    bank: pa.Table
    tel: pa.Table
    query: str
    dealer: bool
    fmt: str
    ints: set[str] = field(default_factory=set)


def _keys(rng: random.Random, n: int, pool: int) -> list[str | None]:
    chosen = rng.sample(range(pool), n)
    style = rng.choice(["plain", "padded", "unicode"])
    out: list[str | None] = []
    for k in chosen:
        if style == "plain":
            out.append(str(k))
        elif style == "padded":
            out.append(f"{k:07d}")
        else:
            out.append(
                "".join(_KEY_ALPHABET[(k >> (3 * i)) % len(_KEY_ALPHABET)] for i in range(4))
                + str(k)
            )
    for i in range(len(out)):
        if rng.random() < 0.03:
            out[i] = None  # a NULL key joins nothing
    return out


def _int_column(rng: random.Random, n: int) -> list[int | None]:
    kind = rng.choice(["small", "small", "large", "huge", "constant", "skew"])
    if kind == "small":
        vals = [rng.randint(-1000, 1000) for _ in range(n)]
    elif kind == "large":
        vals = [rng.randint(-(10**15), 10**15) for _ in range(n)]
    elif kind == "huge":
        vals = [rng.randint(-(2**62), 2**62) for _ in range(n)]
    elif kind == "constant":
        vals = [rng.randint(-(10**12), 10**12)] * n
    else:
        vals = [rng.choice([0, 1, 2, 10**9]) for _ in range(n)]
    p_null = rng.choice([0.0, 0.0, 0.1, 0.5, 1.0])
    return [None if rng.random() < p_null else v for v in vals]


def _real_column(rng: random.Random, n: int) -> list[float | None]:
    kind = rng.choice(["money", "money", "tiny", "large", "wide", "arbitrary", "constant", "near"])
    if kind == "money":
        vals = [round(rng.gauss(5000, 3000), 2) for _ in range(n)]
    elif kind == "tiny":
        vals = [rng.uniform(-1, 1) * 1e-6 for _ in range(n)]
    elif kind == "large":
        vals = [round(rng.uniform(-1, 1) * 1e15, 1) for _ in range(n)]
    elif kind == "wide":
        vals = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-6, 12) for _ in range(n)]
    elif kind == "arbitrary":
        vals = [rng.gauss(0, 1) / 3 for _ in range(n)]
    elif kind == "constant":
        vals = [2.5] * n
    else:
        base = 1e12
        vals = [base + rng.uniform(0, 1000) for _ in range(n)]
    p_null = rng.choice([0.0, 0.0, 0.1, 0.5])
    return [None if rng.random() < p_null else v for v in vals]


def _text_column(rng: random.Random, n: int) -> list[str | None]:
    groups = rng.choice([1, 2, 3, 5, 40])
    labels = [
        rng.choice(["basic", "plus", "max", "企业", "ß", "u", "x y"]) + str(i)
        for i in range(groups)
    ]
    p_null = rng.choice([0.0, 0.1, 0.3])
    return [None if rng.random() < p_null else rng.choice(labels) for _ in range(n)]


def generate(seed: int) -> Case:
    """The case for ``seed`` (deterministic)."""
    rng = random.Random(seed)
    pool = rng.choice([60, 200, 400])
    nb, nt = rng.randint(0, min(pool, 150)), rng.randint(0, min(pool, 150))
    if rng.random() < 0.1:
        nb = rng.randint(0, 3)  # tiny and empty joins
    ints: set[str] = set()
    bank: dict[str, Any] = {"id": _keys(rng, nb, pool)}
    tel: dict[str, Any] = {"uid": _keys(random.Random(seed + 1), nt, pool)}
    for name in ("bi1", "bi2"):
        bank[name] = _int_column(rng, nb)
        ints.add(name)
    for name in ("br1", "br2"):
        bank[name] = _real_column(rng, nb)
    bank["bg"] = _text_column(rng, nb)
    tel["ti1"] = _int_column(rng, nt)
    ints.add("ti1")
    tel["tr1"] = _real_column(rng, nt)
    tel["tg"] = _text_column(rng, nt)
    tel["tk"] = [None if v is None else v % 7 for v in _int_column(rng, nt)]
    ints.add("tk")
    schema_b = pa.schema(
        [("id", pa.string()), ("bi1", pa.int64()), ("bi2", pa.int64()), ("br1", pa.float64()),
         ("br2", pa.float64()), ("bg", pa.string())]
    )  # fmt: skip
    schema_t = pa.schema(
        [("uid", pa.string()), ("ti1", pa.int64()), ("tr1", pa.float64()), ("tg", pa.string()),
         ("tk", pa.int64())]
    )  # fmt: skip
    return Case(
        seed,
        pa.Table.from_pydict(bank, schema=schema_b),
        pa.Table.from_pydict(tel, schema=schema_t),
        _query(rng),
        dealer=rng.random() < 0.75,
        fmt="parquet" if rng.random() < 0.7 else "csv",
        ints=ints,
    )


_BANK_NUM = ["b.bi1", "b.bi2", "b.br1", "b.br2"]
_TEL_NUM = ["t.ti1", "t.tr1"]
_AGGS = ["SUM", "AVG", "MIN", "MAX", "STDDEV", "VARIANCE", "COUNT"]


def _where(rng: random.Random) -> list[str]:
    conds: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 2])):
        col = rng.choice([*_BANK_NUM, *_TEL_NUM, "b.bg", "t.tg"])
        op = rng.choice(["=", "!=", "<", "<=", ">", ">="])
        if col in ("b.bg", "t.tg"):
            lit = "'" + rng.choice(["basic0", "plus1", "u0", "企业0", "zzz"]) + "'"
        elif rng.random() < 0.5:
            lit = str(rng.randint(-1000, 1000))
        else:
            lit = repr(round(rng.uniform(-5000, 5000), rng.choice([1, 2, 3])))
        conds.append(f"{col} {op} {lit}")
    return conds


def _query(rng: random.Random) -> str:
    frm = "FROM bank.loans b JOIN telecom.users t ON b.id = t.uid"
    where = _where(rng)
    w = (" WHERE " + " AND ".join(where)) if where else ""
    if rng.random() < 0.45:
        items: list[str] = []
        for _ in range(rng.randint(1, 5)):
            r = rng.random()
            if r < 0.15:
                items.append("COUNT(*)")
            elif r < 0.3:
                a, c = rng.choice(_BANK_NUM), rng.choice(_TEL_NUM)
                items.append(f"{rng.choice(['CORR', 'COVAR_SAMP'])}({a}, {c})")
            else:
                agg = rng.choice([*_AGGS, "MEDIAN"])
                items.append(f"{agg}({rng.choice(_BANK_NUM + _TEL_NUM)})")
        return f"SELECT {', '.join(dict.fromkeys(items))} {frm}{w}"
    gcol, values = (
        ("t.tg", _BANK_NUM) if rng.random() < 0.4 else
        ("t.tk", _BANK_NUM) if rng.random() < 0.5 else ("b.bg", _TEL_NUM)
    )  # fmt: skip
    items = [gcol, "COUNT(*)"]
    for _ in range(rng.randint(1, 4)):
        items.append(f"{rng.choice(_AGGS)}({rng.choice(values)})")
    q = f"SELECT {', '.join(dict.fromkeys(items))} {frm}{w} GROUP BY {gcol}"
    if rng.random() < 0.2:
        q += f" HAVING COUNT(*) >= {rng.randint(1, 5)}"
    if rng.random() < 0.3:
        q += f" ORDER BY {gcol} {rng.choice(['ASC', 'DESC'])}"
        if rng.random() < 0.5:
            q += f" LIMIT {rng.randint(0, 5)}"
    return q


def reference(case: Case) -> list[tuple[Any, ...]]:
    """The query's answer from DuckDB over the plaintext tables."""
    return [tuple(r) for r in _duckdb(case).execute(case.query).fetchall()]


def _duckdb(case: Case) -> Any:
    """A DuckDB connection holding the case's two tables as bank.loans and telecom.users."""
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE SCHEMA bank; CREATE SCHEMA telecom;")
    con.register("bank_src", case.bank)
    con.register("tel_src", case.tel)
    con.execute("CREATE TABLE bank.loans AS SELECT * FROM bank_src")
    con.execute("CREATE TABLE telecom.users AS SELECT * FROM tel_src")
    return con


def ours(case: Case, work: Path) -> list[tuple[Any, ...]]:
    """The query's answer from Rainbridge, every party in this process."""
    from rainbridge.data import inspect_dataset
    from rainbridge.jobs import parse_job
    from rainbridge.jobs.local import run_local
    from rainbridge.jobs.sql import plan_sql, result_table

    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in (("bank", case.bank), ("tel", case.tel)):
        p = work / f"{name}.{case.fmt}"
        if case.fmt == "parquet":
            pq.write_table(table, p)
        else:
            pacsv.write_csv(table, p)
        paths[name] = p
    plan = plan_sql(case.query, dealer="tax" if case.dealer else None, receiver="bank")
    ds = {
        "bank": {"loans": inspect_dataset("loans", paths["bank"], "id")},
        "telecom": {"users": inspect_dataset("users", paths["tel"], "uid")},
    }
    res = run_local(parse_job(json.dumps(plan.job)), ds, work / "out", timeout=120)
    _, rows = result_table(plan, res["bank"]["components"]["stats"]["result"])
    return [tuple(r) for r in rows]


def _close(a: Any, b: Any, label: str) -> bool:
    if isinstance(b, float) and math.isnan(b):
        b = None  # DuckDB's NaN for a correlation with a constant; SQL's NULL here
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    if isinstance(a, int) and isinstance(b, int) and not isinstance(b, bool):
        return a == b
    a, b = float(a), float(b)
    up = label.upper()
    if up.startswith(("CORR", "COVAR", "STDDEV", "VARIANCE")):
        rel, absolute = 1e-6, 1e-6 if up.startswith("CORR") else 0.0
    else:
        rel, absolute = 1e-9, 0.0
    return abs(a - b) <= max(absolute, rel * max(abs(a), abs(b)), 1e-300)


def compare(
    got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], labels: list[str], ordered: bool
) -> str | None:
    """None when equal within the bounds, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} rows, DuckDB {len(want)}"
    if not ordered:

        def key(r: tuple[Any, ...]) -> str:
            return repr(r[0]) if r else ""

        got, want = sorted(got, key=key), sorted(want, key=key)
    for g, w in zip(got, want, strict=True):
        for i, (a, b) in enumerate(zip(g, w, strict=True)):
            if not _close(a, b, labels[i]):
                return f"{labels[i]}: {a!r}, DuckDB {b!r}"
    return None


def refereed(case: Case, want: list[tuple[Any, ...]], labels: list[str]) -> list[tuple[Any, ...]]:
    """DuckDB's answer with every second-moment cell replaced by its exact value."""
    grouped = "GROUP BY" in case.query.upper()
    out = []
    for r in want:
        cells = list(r)
        for i, lab in enumerate(labels):
            if lab.upper().startswith(_MOMENTS):
                cells[i] = exact_moment(case, lab, r[0] if grouped else None)
        out.append(tuple(cells))
    return out


def reason_of(exc: BaseException) -> str:
    """A short, stable name for a refusal's reason."""
    text = str(exc)
    for needle, name in (
        ("error bound", "precision bound"),
        ("exact range", "integer range"),
        ("2^60", "integer range"),
        ("not supported", "unsupported construct"),
        ("not numeric", "non-numeric column"),
        ("distinct values", "too many groups"),
        ("NULL values; differential", "nulls with dp"),
    ):
        if needle in text:
            return name
    return f"{type(exc).__name__}: {text[:80]}"


_MOMENTS = ("VARIANCE", "STDDEV", "CORR", "COVAR_SAMP")


def exact_moment(case: Case, label: str, group: Any) -> float | None:
    """A second-moment aggregate recomputed in exact rational arithmetic over the joined
    plaintext rows DuckDB selects (DuckDB's own floating-point VARIANCE and CORR lose digits
    when the values sit far from zero; this is the referee)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(case.query, read="duckdb")
    node = next(
        (
            s
            for s in tree.expressions
            if (s.alias_or_name if isinstance(s, exp.Alias) else s.sql()) == label
        ),
        None,
    )
    if node is None:
        return None
    node = node.this if isinstance(node, exp.Alias) else node
    args = [node.this] + ([node.expression] if node.args.get("expression") else [])
    group_by = tree.args.get("group")
    key = group_by.expressions[0] if group_by else exp.Literal.number(1)
    raw = tree.copy()
    for clause in ("group", "having", "order", "limit", "offset"):
        raw.set(clause, None)
    raw.set("expressions", [key.copy(), *(a.copy() for a in args)])
    rows = _duckdb(case).execute(raw.sql(dialect="duckdb")).fetchall()
    if group_by:
        rows = [r for r in rows if r[0] == group]
    vals = [r[1:] for r in rows if all(v is not None for v in r[1:])]
    n = len(vals)
    if n < 2:
        return None
    xs = [Fraction(v[0]) for v in vals]
    mx = sum(xs) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    name = type(node).__name__.upper()
    if len(args) == 1:
        var = sxx / (n - 1)
        return math.sqrt(var) if name.startswith("STDDEV") else float(var)
    ys = [Fraction(v[1]) for v in vals]
    my = sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    if name == "CORR":
        return None if sxx == 0 or syy == 0 else float(sxy) / math.sqrt(float(sxx) * float(syy))
    return float(sxy / (n - 1))


def run_case(case: Case, work: Path) -> dict[str, Any]:
    try:
        want = reference(case)
    except Exception as exc:
        return {"outcome": "skipped", "reason": f"duckdb: {str(exc)[:80]}"}
    try:
        got = ours(case, work)
    except RainbridgeError as exc:
        return {"outcome": "refused", "reason": reason_of(exc)}
    except Exception as exc:
        return {"outcome": "crash", "seed": case.seed, "query": case.query, "diff": repr(exc)[:300]}
    from rainbridge.jobs.sql import plan_sql

    plan = plan_sql(case.query, dealer=None, receiver="bank")
    labels = [i.label for i in plan.items if not i.hidden]
    diff = compare(got, want, labels, ordered=bool(plan.order))
    if diff is not None and any(lab.upper().startswith(_MOMENTS) for lab in labels):
        want = refereed(case, want, labels)
        diff = compare(got, want, labels, ordered=bool(plan.order))
    if diff is None:
        return {"outcome": "match"}
    return {"outcome": "mismatch", "seed": case.seed, "query": case.query, "diff": diff}


def bench(args: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    counts = {"match": 0, "refused": 0, "mismatch": 0, "crash": 0, "skipped": 0}
    reasons: dict[str, int] = {}
    mismatches: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rb-sqlfuzz-") as tmp:
        for i in range(args.queries):
            seed = args.seed + i
            out = run_case(generate(seed), Path(tmp) / str(i))
            counts[out["outcome"]] += 1
            if out["outcome"] in ("refused", "skipped"):
                reasons[out["reason"]] = reasons.get(out["reason"], 0) + 1
            if out["outcome"] in ("mismatch", "crash"):
                mismatches.append(out)
            if args.progress and (i + 1) % 100 == 0:
                print(json.dumps({"done": i + 1, **counts}), flush=True)
    return {
        "benchmark": "sqlfuzz",
        "machine": machine(),
        "queries": args.queries,
        "first_seed": args.seed,
        **counts,
        "refusals_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "mismatch_cases": mismatches[:50],
        "seconds": round(time.perf_counter() - t0, 1),
        "ok": counts["mismatch"] == 0 and counts["crash"] == 0,
    }
