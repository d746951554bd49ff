"""Datasets read in place from real PostgreSQL and MariaDB servers: the rows read equal a
plaintext reference (pyarrow reading a CSV of the same generated rows), and every refusal is
typed, names what is wrong and never shows the password."""

from __future__ import annotations

import datetime as dt
import decimal
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from rainbridge.data import inspect_dataset, iter_dataset, read_columns, read_ids, sql_source
from rainbridge.data.sql_source import inspect_sql, mask_url, parse_url
from rainbridge.errors import ConfigError, DataError

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

#: the generated table, as Arrow types; MariaDB's BOOLEAN is a TINYINT (int8)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("n", pa.int64()),
        ("amount", pa.decimal128(38, 10)),
        ("x", pa.float64()),
        ("name", pa.string()),
        ("d", pa.date32()),
        ("flag", pa.bool_()),
    ]
)
PG_DDL = (
    "CREATE TABLE {t} (id text, n int8, amount numeric(38,10), x float8, name text, d date, "
    "flag bool)"
)
MY_DDL = (
    "CREATE TABLE {t} (id varchar(64), n bigint, amount decimal(38,10), x double, name text, "
    "d date, flag boolean) CHARACTER SET utf8mb4"
)


def generated_rows(n: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """Rows with NULLs, int64 bounds, 28-digit decimals, unicode, '' and duplicate IDs."""
    rng = random.Random(seed)
    names = ["Zoë", "客户 甲", "🙂 emoji", "a,b", 'say "hi"', "two\nlines", "", "x" * 300]
    rows = []
    for i in range(n):
        rows.append(
            {
                # every tenth ID is an earlier one: duplicates, as a file may hold them
                "id": f"c{rng.randrange(i):05d}" if i and i % 10 == 0 else f"c{i:05d}",
                "n": rng.choice([I64_MIN, I64_MAX, 0, -1, None, rng.randrange(-(10**15), 10**15)]),
                "amount": rng.choice(
                    [
                        None,
                        decimal.Decimal("9999999999999999999999999999.9999999999"),
                        decimal.Decimal("-9999999999999999999999999999.9999999999"),
                        decimal.Decimal(rng.randrange(-(10**20), 10**20)).scaleb(-10),
                    ]
                ),
                "x": rng.choice([None, 0.1, -2.5e-300, 1.7976931348623157e308, rng.random()]),
                "name": rng.choice([*names, None]),
                "d": rng.choice(
                    [None, dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29)]
                ),
                "flag": rng.choice([True, False, None]),
            }
        )
    rows[1]["id"] = "客户-0001"
    rows[2]["id"] = "émile"
    return rows


def reference(rows: list[dict[str, Any]], schema: pa.Schema, tmp: Path) -> pa.Table:
    """The plaintext reference: the rows written to CSV and read back by pyarrow."""
    path = tmp / "reference.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), path)
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # "" is the empty string, a bare empty is NULL
        ),
    )


def load_pg(url: str, table: str, rows: list[dict[str, Any]], ddl: str = PG_DDL) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(ddl.format(t=table))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(SCHEMA))})",
                [tuple(r.values()) for r in rows],
            )


def load_mysql(server: Any, db: str, table: str, rows: list[dict[str, Any]]) -> None:
    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        database=db,
        charset="utf8mb4",
    )
    with conn.cursor() as cur:
        cur.execute(MY_DDL.format(t=table))
        cur.executemany(
            f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(SCHEMA))})",
            [tuple(r.values()) for r in rows],
        )
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def pg_db(pg_server: Any) -> Iterator[str]:
    db = pg_server.create_database("sqlsrc")
    load_pg(pg_server.url(db), "customers", generated_rows())
    pg_server.psql("CREATE TABLE empty_t (id text, v int4)", db)
    yield db


@pytest.fixture(scope="module")
def my_db(mariadb_server: Any) -> Iterator[str]:
    db = mariadb_server.create_database("sqlsrc")
    load_mysql(mariadb_server, db, "customers", generated_rows())
    mariadb_server.sql("CREATE TABLE empty_t (id varchar(10), v int)", db)
    yield db


def _equal(got: pa.Table, want: pa.Table) -> None:
    """Equal as multisets of rows (a table has no order)."""
    assert got.schema == want.schema, (got.schema, want.schema)
    assert got.num_rows == want.num_rows
    keys = [(c, "ascending") for c in want.column_names]
    got, want = got.sort_by(keys), want.sort_by(keys)
    for name in want.column_names:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


# -- the rows read equal the reference ----------------------------------------------------------


def test_postgres_table_equals_reference(pg_server: Any, pg_db: str, tmp_path: Path) -> None:
    rows = generated_rows()
    ref = inspect_sql("customers", pg_server.url(pg_db), "id", table="customers")
    assert ref.format == "sql" and ref.num_rows == len(rows)
    assert ref.columns == {f.name: str(f.type) for f in SCHEMA}
    _equal(read_columns(ref, SCHEMA.names), reference(rows, SCHEMA, tmp_path))
    # streamed in batches of the size asked for, never the whole table at once
    sizes = [b.num_rows for b in iter_dataset(ref, ["id"], batch_rows=64)]
    assert max(sizes) <= 64 and sum(sizes) == len(rows)


def test_mariadb_table_equals_reference(mariadb_server: Any, my_db: str, tmp_path: Path) -> None:
    rows = generated_rows()
    schema = SCHEMA.set(SCHEMA.get_field_index("flag"), pa.field("flag", pa.int8()))
    my_rows = [{**r, "flag": None if r["flag"] is None else int(r["flag"])} for r in rows]
    ref = inspect_sql("customers", mariadb_server.url(my_db), "id", table="customers")
    assert ref.num_rows == len(rows)
    assert ref.columns == {f.name: str(f.type) for f in schema}
    _equal(read_columns(ref, schema.names), reference(my_rows, schema, tmp_path))


@pytest.mark.parametrize("server", ["pg", "maria"])
def test_query_equals_reference(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if server == "pg":
        url = request.getfixturevalue("pg_server").url(request.getfixturevalue("pg_db"))
    else:
        url = request.getfixturevalue("mariadb_server").url(request.getfixturevalue("my_db"))
    rows = [r for r in generated_rows() if r["n"] is not None and r["n"] > 0]
    ref = inspect_sql(
        "positive", url, "id", query="SELECT id, n, amount, name FROM customers WHERE n > 0;"
    )
    want = reference(
        rows, pa.schema([SCHEMA.field(c) for c in ("id", "n", "amount", "name")]), tmp_path
    )
    assert ref.num_rows == len(rows) and ref.source is not None
    assert ref.source["query"].endswith("n > 0")
    got = read_columns(ref, ["id", "n", "amount", "name"])
    _equal(
        got.sort_by([("id", "ascending"), ("n", "ascending")]),
        want.sort_by([("id", "ascending"), ("n", "ascending")]),
    )


@pytest.mark.parametrize("server", ["pg", "mariadb"])
def test_query_with_comments_cte_order_and_limit(
    server: str, request: pytest.FixtureRequest
) -> None:
    """A query is wrapped as a derived table whatever it ends with: a line comment, ORDER BY
    and LIMIT, a CTE."""
    if server == "pg":
        url = request.getfixturevalue("pg_server").url(request.getfixturevalue("pg_db"))
    else:
        url = request.getfixturevalue("mariadb_server").url(request.getfixturevalue("my_db"))
    want = sorted(r["id"] for r in generated_rows())[:3]
    for query in (
        "/* first three */ SELECT id FROM customers ORDER BY id LIMIT 3 -- by ID",
        "SELECT id FROM customers ORDER BY id LIMIT 3 # by ID"
        if server == "mariadb"
        else "SELECT id FROM customers ORDER BY id LIMIT 3 --",
        "WITH c AS (SELECT id FROM customers) SELECT id FROM c ORDER BY id LIMIT 3;",
    ):
        ref = inspect_sql("q", url, "id", query=query)
        assert ref.num_rows == 3, query
        assert sorted(read_columns(ref, ["id"]).column("id").to_pylist()) == want, query


def test_ids_and_duplicates_as_a_file(pg_server: Any, pg_db: str, tmp_path: Path) -> None:
    """The ID column is normalised as a file's is: text, duplicates kept for PSI to handle."""
    rows = generated_rows()
    ref = inspect_sql("customers", pg_server.url(pg_db), "id", table="customers")
    path = tmp_path / "ids.csv"
    pacsv.write_csv(pa.table({"id": [r["id"] for r in rows]}), path)
    from_file = read_ids(inspect_dataset("ids", path, "id"))
    assert sorted(read_ids(ref).to_pylist()) == sorted(from_file.to_pylist())
    assert len(set(from_file.to_pylist())) < len(rows)  # the duplicates are there
    # a numeric ID column is read as its text, as a Parquet file's is
    by_n = inspect_sql(
        "by_n", pg_server.url(pg_db), "n", query="SELECT n FROM customers WHERE n IS NOT NULL"
    )
    assert str(I64_MIN) in read_ids(by_n).to_pylist()


def test_empty_table(pg_server: Any, pg_db: str, mariadb_server: Any, my_db: str) -> None:
    for url in (pg_server.url(pg_db), mariadb_server.url(my_db)):
        ref = inspect_sql("empty", url, "id", table="empty_t")
        assert ref.num_rows == 0 and ref.columns == {"id": "string", "v": "int32"}
        t = read_columns(ref, ["id", "v"])
        assert t.num_rows == 0 and t.schema.names == ["id", "v"]
        assert read_ids(ref).to_pylist() == []


def test_null_ids_refused_as_a_files_are(pg_server: Any) -> None:
    db = pg_server.create_database("sqlsrc")
    pg_server.psql("CREATE TABLE t (id text); INSERT INTO t VALUES ('a'), (NULL), ('')", db)
    ref = inspect_sql("t", pg_server.url(db), "id", table="t")
    with pytest.raises(DataError, match="2 empty IDs"):
        read_ids(ref)


def test_big_decimals_exact_or_refused(pg_server: Any, mariadb_server: Any) -> None:
    db = pg_server.create_database("sqlsrc")
    pg_server.psql(
        "CREATE TABLE t (id text, big numeric(76,20), free numeric, huge numeric(100,2));"
        "INSERT INTO t VALUES ('a', 12345678901234567890123456789012345678901234567890123456."
        "12345678901234567890, 1, 1)",
        db,
    )
    url = pg_server.url(db)
    ref = inspect_sql("t", url, "id", query="SELECT id, big FROM t")
    assert ref.columns["big"] == "decimal256(76, 20)"
    assert str(read_columns(ref, ["big"]).column("big")[0].as_py()) == (
        "12345678901234567890123456789012345678901234567890123456.12345678901234567890"
    )
    with pytest.raises(DataError, match="column 'free' is numeric without a precision"):
        inspect_sql("t", url, "id", query="SELECT id, free FROM t")
    with pytest.raises(DataError, match="column 'huge'"):
        inspect_sql("t", url, "id", query="SELECT id, huge FROM t")
    # cast in the query, it is read exactly
    ok = inspect_sql("t", url, "id", query="SELECT id, free::numeric(38,10) AS free FROM t")
    assert read_columns(ok, ["free"]).column("free")[0].as_py() == decimal.Decimal("1")
    mdb = mariadb_server.create_database("sqlsrc")
    mariadb_server.sql(
        "CREATE TABLE t (id varchar(5), dm decimal(65,30), u bigint unsigned);"
        "INSERT INTO t VALUES ('a', -12345678901234567890123456789012345.1234567890123456789"
        "01234567891, 18446744073709551615)",
        mdb,
    )
    mref = inspect_sql("t", mariadb_server.url(mdb), "id", table="t")
    assert mref.columns == {"id": "string", "dm": "decimal256(65, 30)", "u": "uint64"}
    got = read_columns(mref, ["dm", "u"]).to_pylist()[0]
    assert got == {
        "dm": decimal.Decimal(
            "-12345678901234567890123456789012345.123456789012345678901234567891"
        ),
        "u": 2**64 - 1,
    }


def test_a_value_that_no_longer_fits_is_refused(pg_server: Any) -> None:
    db = pg_server.create_database("sqlsrc")
    pg_server.psql("CREATE TABLE t (id text, k int4); INSERT INTO t VALUES ('a', 1)", db)
    ref = inspect_sql("t", pg_server.url(db), "id", table="t")
    pg_server.psql(
        "ALTER TABLE t ALTER COLUMN k TYPE int8; INSERT INTO t VALUES ('b', 1099511627776)", db
    )
    with pytest.raises(DataError, match="column 'k' holds a value that is not int32"):
        read_columns(ref, ["k"])


def test_numeric_nan_and_infinity_refused_as_such(pg_server: Any) -> None:
    """A numeric(p, s) may hold NaN (and, unconstrained, infinity): refused, saying so, not
    blamed on a table altered since registration."""
    db = pg_server.create_database("sqlsrc")
    pg_server.psql(
        "CREATE TABLE t (id text, v numeric(10, 2)); INSERT INTO t VALUES ('a', 1.5), ('b', 'NaN')",
        db,
    )
    ref = inspect_sql("t", pg_server.url(db), "id", table="t")
    with pytest.raises(DataError, match="column 'v' holds NaN or infinity"):
        read_columns(ref, ["v"])
    ok = inspect_sql("q", pg_server.url(db), "id", query="SELECT id, v FROM t WHERE v <> 'NaN'")
    assert read_columns(ok, ["v"]).column("v").to_pylist() == [decimal.Decimal("1.50")]


def test_infinite_and_out_of_range_dates_refused(pg_server: Any) -> None:
    """PostgreSQL's infinities and its latest timestamps do not fit Arrow: refused, not
    read as wrapped dates thousands of millennia BC; its earliest dates read exactly."""
    db = pg_server.create_database("sqlsrc")
    pg_server.psql(
        "CREATE TABLE t (id text, d date, ts timestamp, tz timestamptz);"
        "INSERT INTO t VALUES ('bc', '4713-01-01 BC', '4713-01-01 BC', '4713-01-01 00:00+00 BC'),"
        "('1900', '1900-01-01', '1900-01-01 00:00:00.000001', '1900-01-01 00:00+03')",
        db,
    )
    url = pg_server.url(db)
    ref = inspect_sql("t", url, "id", table="t")
    got = read_columns(ref, ["d", "ts", "tz"])
    assert got.column("d").cast(pa.int32()).to_pylist() == [-2440550, -25567]
    assert got.column("ts").cast(pa.int64()).to_pylist() == [
        -2440550 * 86_400_000_000,
        -2208988799999999,
    ]
    assert got.column("tz").cast(pa.int64()).to_pylist() == [
        -2440550 * 86_400_000_000,
        -2208999600000000,
    ]
    for col, value in (
        ("d", "infinity"),
        ("d", "-infinity"),
        ("ts", "infinity"),
        ("ts", "-infinity"),
        ("ts", "294276-12-31 23:59:59"),
        ("tz", "infinity"),
        ("tz", "294276-12-31 23:59:59+00"),
    ):
        pg_server.psql(
            f"DELETE FROM t WHERE id = 'x'; INSERT INTO t (id, {col}) VALUES ('x', '{value}')", db
        )
        with pytest.raises(DataError, match=f"column '{col}' holds infinity"):
            read_columns(ref, [col])


def test_mysql_timestamp_is_an_instant_whatever_the_server_time_zone(mariadb_server: Any) -> None:
    """A MySQL TIMESTAMP is read as the UTC instant it holds, not as the server's local wall
    clock; a DATETIME is a wall-clock time, read as written."""
    db = mariadb_server.create_database("sqlsrc")
    mariadb_server.sql(
        "CREATE TABLE t (id varchar(5), dt datetime(6), ts timestamp(6) NULL);"
        "SET time_zone = '+00:00';"
        "INSERT INTO t VALUES ('a', '2000-01-01 00:00:00', '2000-01-01 00:00:00.000001')",
        db,
    )
    mariadb_server.sql("SET GLOBAL time_zone = '+08:00'", as_root=True)
    try:
        ref = inspect_sql("t", mariadb_server.url(db), "id", table="t")
        assert ref.columns["dt"] == "timestamp[us]"
        assert ref.columns["ts"] == "timestamp[us, tz=UTC]"
        got = read_columns(ref, ["dt", "ts"]).to_pylist()[0]
    finally:
        mariadb_server.sql("SET GLOBAL time_zone = 'SYSTEM'", as_root=True)
    assert got == {
        "dt": dt.datetime(2000, 1, 1),
        "ts": dt.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
    }


# -- refusals ----------------------------------------------------------------------------------


def test_unreachable_server_and_bad_credentials(mariadb_server: Any, my_db: str) -> None:
    secret = "S3cr3t-pa55"
    for url in (
        f"postgresql://someone:{secret}@127.0.0.1:1/db",
        f"mysql://someone:{secret}@127.0.0.1:1/db",
    ):
        with pytest.raises(DataError, match="cannot connect to") as exc:
            inspect_sql("d", url, "id", table="t")
        assert secret not in str(exc.value) and ":***@" in str(exc.value)
    wrong = (
        f"mysql+pymysql://{mariadb_server.user}:{secret}@127.0.0.1:{mariadb_server.port}/{my_db}"
    )
    with pytest.raises(DataError, match="refused the credentials") as exc:
        inspect_sql("d", wrong, "id", table="customers")
    assert secret not in str(exc.value)


def test_missing_table_and_columns(
    pg_server: Any, pg_db: str, mariadb_server: Any, my_db: str
) -> None:
    for url in (pg_server.url(pg_db), mariadb_server.url(my_db)):
        with pytest.raises(DataError, match="nope"):
            inspect_sql("d", url, "id", table="nope")
        with pytest.raises(DataError, match="has no column 'customer_id'"):
            inspect_sql("d", url, "customer_id", table="customers")
        with pytest.raises(DataError, match="missing_col"):
            inspect_sql("d", url, "id", query="SELECT id, missing_col FROM customers")
        with pytest.raises(DataError, match=r"more than once|Duplicate column name"):
            inspect_sql("d", url, "id", query="SELECT id, n, n FROM customers")
        ref = inspect_sql("d", url, "id", table="customers")
        with pytest.raises(DataError, match="no column"):
            read_columns(ref, ["id", "salary"])
        assert mariadb_server.password not in str(ref)


@pytest.mark.parametrize(
    "query, why",
    [
        ("DELETE FROM customers", "not a SELECT"),
        ("INSERT INTO customers (id) VALUES ('z')", "not a SELECT"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT 1; DROP TABLE customers", "2 statements"),
        ("SELECT * INTO copy_t FROM customers", "INTO"),
        ("WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", "DELETE"),
        ("SELECT id FROM customers FOR UPDATE", "LOCK"),
        ("", "empty"),
        ("SELEC id FRM customers", "not"),
    ],
)
def test_only_one_select_is_accepted(pg_server: Any, pg_db: str, query: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        inspect_sql("d", pg_server.url(pg_db), "id", query=query)
    assert pg_server.psql("SELECT count(*) FROM customers", pg_db).strip() == "400"


def test_read_only_transaction(pg_server: Any, pg_db: str) -> None:
    """A SELECT that would write through a function is stopped by the server itself."""
    pg_server.psql("CREATE SEQUENCE IF NOT EXISTS s", pg_db)
    with pytest.raises(DataError, match="read-only transaction"):
        inspect_sql("d", pg_server.url(pg_db), "id", query="SELECT nextval('s')::text AS id")


def test_mysql_reads_are_read_only(mariadb_server: Any) -> None:
    """A query's function redefined after registration to write cannot write at a read."""
    import pymysql

    db = mariadb_server.create_database("sqlsrc")
    conn = pymysql.connect(
        host="127.0.0.1",
        port=mariadb_server.port,
        user=mariadb_server.user,
        password=mariadb_server.password,
        database=db,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE log_t (x int)")
        cur.execute("CREATE TABLE t (id varchar(5))")
        cur.execute("INSERT INTO t VALUES ('a'), ('b')")
        cur.execute("CREATE FUNCTION f(i varchar(5)) RETURNS varchar(5) DETERMINISTIC RETURN i")
    ref = inspect_sql("q", mariadb_server.url(db), "id", query="SELECT f(id) AS id FROM t")
    with conn.cursor() as cur:
        cur.execute("DROP FUNCTION f")
        cur.execute(
            "CREATE FUNCTION f(i varchar(5)) RETURNS varchar(5) MODIFIES SQL DATA "
            "BEGIN INSERT INTO log_t VALUES (1); RETURN i; END"
        )
    try:
        with pytest.raises(DataError, match="READ ONLY"):
            read_columns(ref, ["id"])
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM log_t")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_unsupported_types_named(pg_server: Any, mariadb_server: Any) -> None:
    db = pg_server.create_database("sqlsrc")
    pg_server.psql("CREATE TABLE t (id text, span interval, tags text[])", db)
    with pytest.raises(DataError, match="column 'span' is of type interval") as exc:
        inspect_sql("t", pg_server.url(db), "id", table="t")
    assert "span::text" in str(exc.value)
    ok = inspect_sql("t", pg_server.url(db), "id", query="SELECT id, span::text AS span FROM t")
    assert ok.columns == {"id": "string", "span": "string"}
    with pytest.raises(DataError, match="column 'tags'"):
        inspect_sql("t", pg_server.url(db), "id", query="SELECT id, tags FROM t")
    mdb = mariadb_server.create_database("sqlsrc")
    mariadb_server.sql("CREATE TABLE t (id varchar(5), at time, b bit(3))", mdb)
    with pytest.raises(DataError, match="column 'at' is of type time"):
        inspect_sql("t", mariadb_server.url(mdb), "id", table="t")
    with pytest.raises(DataError, match="column 'b' is of type bit"):
        inspect_sql("t", mariadb_server.url(mdb), "id", query="SELECT id, b FROM t")


@pytest.mark.parametrize(
    "url, why",
    [
        ("sqlite:///x.db", "scheme 'sqlite' is not supported"),
        ("postgresql://u:pw-1234@/db", "no host"),
        ("mysql://u:pw-1234@host:3306", "no database"),
        ("postgresql://u:pw-1234@host:notaport/db", "malformed"),
        ("mysql://u:pw-1234@host/db?ssl_ca=x", "other than charset"),
        ("not a url at all", "malformed"),
    ],
)
def test_malformed_urls(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as exc:
        inspect_sql("d", url, "id", table="t")
    assert "pw-1234" not in str(exc.value)


def test_table_or_query_not_both() -> None:
    url = "postgresql://u:pw@127.0.0.1:1/db"
    with pytest.raises(ConfigError, match="--table or a --query"):
        inspect_sql("d", url, "id")
    with pytest.raises(ConfigError, match="--table or a --query"):
        inspect_sql("d", url, "id", table="t", query="SELECT 1")
    with pytest.raises(ConfigError, match=r"SCHEMA\.TABLE"):
        inspect_sql("d", url, "id", table="a.b.c")


def test_masked_urls() -> None:
    assert mask_url("postgresql+psycopg://bob:p%40ss@db.bank:5432/crm") == (
        "postgresql://bob:***@db.bank:5432/crm"
    )
    assert mask_url("mysql://bob@db:3306/crm") == "mysql://bob@db:3306/crm"
    u = parse_url("postgresql://bob@db/crm?password=hunter2&sslmode=require")
    assert u.password == "hunter2" and "hunter2" not in f"{u} {u!r} {u.masked}"
    assert "sslmode=require" in u.libpq() and "default_transaction_read_only" in u.libpq()


def test_credentials_only_in_memory(pg_server: Any, pg_db: str) -> None:
    """A ref carries a credential key, not the URL: a process without the URL cannot read."""
    ref = inspect_sql("customers", pg_server.url(pg_db), "id", table="customers")
    assert ref.source is not None and "credential" in ref.source
    assert "url" not in {k for k, v in ref.to_dict().items() if v == pg_server.url(pg_db)}
    key = ref.source["credential"]
    url = sql_source._URLS.pop(key)
    try:
        with pytest.raises(DataError, match="credentials of its database are not available"):
            read_ids(ref)
    finally:
        sql_source.provide_url(key, url)
    assert read_ids(ref).to_pylist()


def test_a_password_with_url_characters(mariadb_server: Any, my_db: str) -> None:
    """A password holding @ : / ? # % and spaces, percent-encoded in the URL, reaches both the
    registering driver and the reading one intact."""
    from urllib.parse import quote

    password = "p@ss:w/rd?#% x"
    mariadb_server.sql(
        "CREATE USER 'odd'@'127.0.0.1' IDENTIFIED BY 'p@ss:w/rd?#% x';"
        f"GRANT SELECT ON `{my_db}`.* TO 'odd'@'127.0.0.1';",
        as_root=True,
    )
    url = f"mysql://odd:{quote(password, safe='')}@127.0.0.1:{mariadb_server.port}/{my_db}"
    ref = inspect_sql("odd", url, "id", table="customers")
    assert read_ids(ref).to_pylist()
    assert ref.path == f"mysql://odd:***@127.0.0.1:{mariadb_server.port}/{my_db}"
    # a user that may only read: the table is read, and nothing the node does needs more
    with pytest.raises(DataError, match="refused the credentials"):
        inspect_sql("odd", url.replace("p%40ss", "p%40sss"), "id", table="customers")


def test_a_postgres_url_with_url_characters(pg_server: Any, pg_db: str) -> None:
    """libpq gets the percent-encoded password intact (the test cluster trusts loopback, so
    the URL's parsing is what is checked: a mangled URI would not connect)."""
    from urllib.parse import quote

    secret = quote("p@ss:w/rd?#% x", safe="")
    url = f"postgresql://{pg_server.user}:{secret}@127.0.0.1:{pg_server.port}/{pg_db}"
    ref = inspect_sql("odd", url, "id", query="SELECT id FROM customers")
    assert len(read_ids(ref)) == 400 and ":***@" in ref.path
