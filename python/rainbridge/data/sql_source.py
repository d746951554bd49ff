"""Datasets read in place from SQL databases: a table or a single SELECT, streamed as Arrow.

PostgreSQL (``postgresql://`` or ``postgresql+psycopg://``) and MySQL/MariaDB (``mysql://`` or
``mysql+pymysql://``); servers that speak one of these protocols (openGauss, Kingbase and
GaussDB; Doris, OceanBase and PolarDB) connect the same way. Registration
(:func:`inspect_sql`) uses the servers' ordinary DB-API drivers (psycopg, pymysql): it
connects, reads the schema of the relation with no rows, maps every column to an Arrow type
(exact, or the column is refused and named), checks the ID column and counts the rows, all in
a read-only transaction. Reads (:func:`iter_sql`) stream record batches through the
columnar drivers that measured fastest (BENCHMARKS.md): ADBC's PostgreSQL driver and
ConnectorX for MySQL, never holding more than a batch; every column is cast to the Arrow
type recorded at registration, so a value the type cannot hold exactly is refused.

Credentials never sit in a :class:`~rainbridge.data.DatasetRef`: its ``source`` holds the
URL with the password masked and a random ``credential`` key, and the clear URL lives only
in this process's memory (:func:`provide_url`), put there by whoever may hold it (the node,
which keeps it sealed under its master key; a job's worker, to which its node hands it on
a pipe). Error messages show the masked URL and never the password.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from rainbridge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rainbridge.data.dataset import DatasetRef

#: seconds a connection attempt may take before the server counts as unreachable
CONNECT_TIMEOUT = 10
#: URL schemes accepted, by the protocol they speak
SCHEMES = {
    "postgresql": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mysql+pymysql": "mysql",
}
_MYSQL_PARAMS = frozenset({"charset"})

# the clear URL of each registered source, by its credential key (this process only)
_URLS: dict[str, str] = {}


def provide_url(key: str, url: str) -> None:
    """Make the clear URL of the source with credential ``key`` known to this process."""
    _URLS[key] = url


def urls_for(refs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The clear URLs this process knows for the SQL datasets among ``refs`` (as dicts)."""
    out: dict[str, str] = {}
    for d in refs:
        key = (d.get("source") or {}).get("credential")
        if key and key in _URLS:
            out[str(key)] = _URLS[key]
    return out


# -- URLs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlUrl:
    """A parsed database URL; ``str()`` and ``repr()`` never show the password."""

    dialect: str
    host: str
    port: int | None
    database: str
    user: str
    password: str = field(repr=False)
    params: dict[str, str] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.masked

    @property
    def masked(self) -> str:
        """The URL as shown anywhere: the password (if any) as ``***``, no parameters."""
        who = quote(self.user, safe="") + (":***" if self.password else "")
        at = f"{who}@" if who else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.dialect}://{at}{self.host}{port}/{quote(self.database, safe='')}"

    def libpq(self) -> str:
        """A libpq URI (psycopg and ADBC), the session read-only by default."""
        who = quote(self.user, safe="")
        if self.password:
            who += ":" + quote(self.password, safe="")
        port = f":{self.port}" if self.port else ""
        # every transaction read-only, after the owner's own options: a query cannot write,
        # whatever it calls
        options = f"{self.params.get('options', '')} -c default_transaction_read_only=on"
        params = {
            "connect_timeout": str(CONNECT_TIMEOUT),
            **self.params,
            "options": options.strip(),
        }
        q = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
        host = f"[{self.host}]" if ":" in self.host else quote(self.host, safe="")
        return f"postgresql://{who}@{host}{port}/{quote(self.database, safe='')}?{q}"

    def mysql_uri(self) -> str:
        """The URI ConnectorX reads MySQL from."""
        who = quote(self.user, safe="")
        if self.password:
            who += ":" + quote(self.password, safe="")
        return (
            f"mysql://{who}@{self.host}:{self.port or 3306}/{quote(self.database, safe='')}"
            "?cxprotocol=binary"
        )

    def scrub(self, text: str) -> str:
        """``text`` with the password and the clear URL taken out (drivers may echo them)."""
        if self.password:
            text = text.replace(self.password, "***")
            text = text.replace(quote(self.password, safe=""), "***")
        return text


def parse_url(url: str) -> SqlUrl:
    """Parse a PostgreSQL or MySQL URL.

    Raises
    ------
    ConfigError
        The URL is malformed, of another scheme, or lacks a host or a database; the message
        never holds the password.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url.strip())
        scheme = u.drivername
        port = u.port
    except (ArgumentError, ValueError, TypeError):
        raise ConfigError(
            "the SQL URL is malformed; expected e.g. postgresql://USER:PASSWORD@HOST:5432/DB "
            "or mysql://USER:PASSWORD@HOST:3306/DB"
        ) from None
    dialect = SCHEMES.get(scheme)
    if dialect is None:
        raise ConfigError(
            f"SQL URL scheme {scheme!r} is not supported; use postgresql:// (or "
            "postgresql+psycopg://) or mysql:// (or mysql+pymysql://)"
        )
    params: dict[str, str] = {}
    for k, v in u.query.items():
        if not isinstance(v, str):
            raise ConfigError(f"SQL URL parameter {k!r} is given more than once")
        params[k] = v
    password = u.password if isinstance(u.password, str) else ""
    password = params.pop("password", password)
    out = SqlUrl(dialect, u.host or "", port, u.database or "", u.username or "", password, params)
    if not out.host:
        # a malformed URL is not echoed: its parts may not be where they were meant to be
        raise ConfigError(f"the {dialect} URL has no host (unix sockets are not supported)")
    if not out.database:
        raise ConfigError(f"the {dialect} URL names no database after the host")
    if "@" in out.database or "@" in out.host:
        raise ConfigError(f"the {dialect} URL is malformed (an '@' after the host)")
    if dialect == "mysql" and set(params) - _MYSQL_PARAMS:
        raise ConfigError("the mysql URL has a parameter other than charset, which is all it takes")
    return out


def mask_url(url: str) -> str:
    """The URL as it may be shown (password masked); a malformed one as ``<malformed URL>``."""
    try:
        return parse_url(url).masked
    except ConfigError:
        return "<malformed URL>"


# -- what is read --------------------------------------------------------------------------


def quote_ident(name: str, dialect: str) -> str:
    if "\x00" in name or not name:
        raise ConfigError(f"{name!r} is not a valid SQL identifier")
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def table_ident(table: str, dialect: str) -> str:
    """``SCHEMA.TABLE`` or ``TABLE``, each part quoted (a name is never spliced raw)."""
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise ConfigError(f"table {table!r}: expected TABLE or SCHEMA.TABLE")
    return ".".join(quote_ident(p, dialect) for p in parts)


def check_query(query: str, dialect: str) -> str:
    """The query, if it is one SELECT that reads only; its trailing semicolons removed.

    Raises
    ------
    ConfigError
        It is empty, not parsable, more than one statement, or anything but a query (an
        INSERT, a SELECT … INTO, a data-modifying WITH, a locking SELECT … FOR UPDATE).
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    text = query.strip().rstrip(";").strip()
    if not text:
        raise ConfigError("the SQL query is empty")
    read = "postgres" if dialect == "postgresql" else "mysql"
    try:
        # a ';' followed by nothing but comments (and more ';') is no second statement
        statements = [
            s
            for s in sqlglot.parse(text, read=read)
            if s is not None and not isinstance(s, exp.Semicolon)
        ]
        if len(statements) == 1:
            # the query starts at its first token past any leading ';' (empty statements) and
            # ends at the first ';' after it: what follows would end the derived table
            tokens = sqlglot.tokenize(text, read=read)
            begin = next(t.start for t in tokens if t.token_type.name != "SEMICOLON")
            ends = [t.start for t in tokens if t.token_type.name == "SEMICOLON" and t.start > begin]
            text = text[begin : ends[0]].rstrip() if ends else text[begin:]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else "parse error"
        raise ConfigError(
            f"the SQL query is not a single SELECT that can be parsed: {first}"
        ) from None
    if len(statements) != 1:
        raise ConfigError(f"the SQL query holds {len(statements)} statements; give one SELECT")
    stmt = statements[0]
    if not isinstance(stmt, exp.Query):
        raise ConfigError(f"the SQL query is a {stmt.key.upper()}, not a SELECT: it must only read")
    writes = (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.Create,
        exp.Drop,
        exp.Into,
        exp.Lock,
        exp.Command,
        exp.Alter,
        exp.TruncateTable,
    )
    bad = next(iter(stmt.find_all(*writes)), None)
    if bad is not None:
        raise ConfigError(
            f"the SQL query holds {bad.key.upper()}: a dataset's query must only read"
        )
    return text


def relation(source: Mapping[str, Any]) -> str:
    """What a read selects from: the quoted table, or the query as a derived table."""
    dialect = str(source["dialect"])
    if source.get("table"):
        return table_ident(str(source["table"]), dialect)
    # the closing parenthesis on a line of its own: a query's trailing -- or # comment
    # would otherwise take it
    return f"({source['query']}\n) AS rb_query"


# -- types ------------------------------------------------------------------------------------

#: PostgreSQL types by name: the Arrow type, and whether it is read through its text form
_PG_TYPES: dict[str, tuple[pa.DataType, bool]] = {
    "bool": (pa.bool_(), False),
    "int2": (pa.int16(), False),
    "int4": (pa.int32(), False),
    "int8": (pa.int64(), False),
    "float4": (pa.float32(), False),
    "float8": (pa.float64(), False),
    "text": (pa.string(), False),
    "varchar": (pa.string(), False),
    "bpchar": (pa.string(), False),
    "name": (pa.string(), False),
    "uuid": (pa.string(), True),
    "json": (pa.string(), True),
    "jsonb": (pa.string(), True),
    "date": (pa.date32(), False),
    "timestamp": (pa.timestamp("us"), False),
    "timestamptz": (pa.timestamp("us", tz="UTC"), False),
    "bytea": (pa.binary(), False),
}

_DECIMAL = re.compile(r"decimal(128|256)\((\d+), (-?\d+)\)")
_SIMPLE_TYPES = {
    str(t): t
    for t in (
        pa.bool_(),
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.binary(),
        pa.date32(),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
    )
}


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a registered column type name stands for."""
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    m = _DECIMAL.fullmatch(name)
    if m:
        width, p, s = m.groups()
        return (pa.decimal128 if width == "128" else pa.decimal256)(int(p), int(s))
    raise DataError(f"column type {name!r} is not one a SQL dataset is read as")


def _decimal(precision: int | None, scale: int | None) -> pa.DataType | None:
    if precision is None or scale is None or not 0 < precision <= 76 or not 0 <= scale <= precision:
        return None
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


@dataclass(frozen=True)
class _Column:
    name: str
    type: pa.DataType
    as_text: bool  # read through its text form (exact: decimals, UUIDs, JSON, unsigned 64-bit)


def _pg_column(name: str, typname: str, precision: int | None, scale: int | None) -> _Column:
    if typname == "numeric":
        t = _decimal(precision, scale)
        if t is None:
            raise DataError(
                f"column {name!r} is numeric without a precision of at most 76 digits, which "
                f"no Arrow decimal holds exactly; register a --query that casts it, e.g. "
                f"{name}::numeric(38, 10) (or ::text to pass it through)"
            )
        return _Column(name, t, True)
    known = _PG_TYPES.get(typname)
    if known is None:
        raise DataError(
            f"column {name!r} is of type {typname}, which is not read; register a --query that "
            f"casts it (e.g. {name}::text) or leaves it out"
        )
    return _Column(name, known[0], known[1])


# MySQL field type codes (pymysql.constants.FIELD_TYPE), their flags and the binary charset
_MY_UNSIGNED, _MY_BINARY_CHARSET = 32, 63
_MY_INTS = {
    1: (pa.int8(), pa.uint8()),
    2: (pa.int16(), pa.uint16()),
    9: (pa.int32(), pa.uint32()),
    3: (pa.int32(), pa.uint32()),
    8: (pa.int64(), pa.uint64()),
}
_MY_TEXT = {15, 247, 248, 249, 250, 251, 252, 253, 254, 245}
_MY_NAMES = {
    0: "decimal",
    6: "null",
    7: "timestamp",
    11: "time",
    16: "bit",
    255: "geometry",
    246: "decimal",
}


def _my_column(name: str, code: int, flags: int, charset: int, length: int, scale: int) -> _Column:
    unsigned = bool(flags & _MY_UNSIGNED)
    if code in _MY_INTS:
        signed_t, unsigned_t = _MY_INTS[code]
        # a BIGINT UNSIGNED above 2^63 would not survive a signed read: read it as text
        return _Column(name, unsigned_t if unsigned else signed_t, code == 8 and unsigned)
    if code == 4:
        return _Column(name, pa.float32(), False)
    if code == 5:
        return _Column(name, pa.float64(), False)
    if code in (0, 246):
        precision = length - (1 if scale > 0 else 0) - (0 if unsigned else 1)
        t = _decimal(precision, scale)
        if t is None:
            raise DataError(f"column {name!r} is a decimal of {precision} digits, not read")
        return _Column(name, t, True)
    if code in (10, 14):
        return _Column(name, pa.date32(), False)
    if code == 7:  # TIMESTAMP: an instant, read in a UTC session (see _mysql_batches)
        return _Column(name, pa.timestamp("us", tz="UTC"), False)
    if code == 12:  # DATETIME: a wall-clock time, whatever the session's time zone
        return _Column(name, pa.timestamp("us"), False)
    if code == 13:
        return _Column(name, pa.int16(), False)
    if code == 245:  # JSON: text, though MySQL reports it in the binary character set
        return _Column(name, pa.string(), False)
    if code in _MY_TEXT:
        return _Column(name, pa.binary() if charset == _MY_BINARY_CHARSET else pa.string(), False)
    what = _MY_NAMES.get(code, f"field type {code}")
    raise DataError(
        f"column {name!r} is of type {what}, which is not read; register a --query that casts "
        f"it (e.g. CAST({name} AS CHAR)) or leaves it out"
    )


# -- registration --------------------------------------------------------------------------


def _missing_driver(dialect: str, exc: ImportError) -> ConfigError:
    extra = "postgres" if dialect == "postgresql" else "mysql"
    return ConfigError(
        f"reading {dialect} needs its driver ({exc.name}): pip install 'rainbridge[{extra}]'"
    )


def _describe_pg(u: SqlUrl, rel: str, what: str) -> tuple[list[_Column], int]:
    try:
        import psycopg
    except ImportError as exc:
        raise _missing_driver(u.dialect, exc) from None
    try:
        with psycopg.connect(u.libpq(), autocommit=False) as conn:
            cur = conn.execute(f"SELECT * FROM {rel} LIMIT 0")
            desc = cur.description or []
            cols = []
            for d in desc:
                info = conn.adapters.types.get(d.type_code)
                typname = info.name if info is not None else f"oid {d.type_code}"
                if info is not None and info.oid != d.type_code:
                    typname += "[]"  # found by its array's OID: an array of it
                try:
                    cols.append(_pg_column(d.name, typname, d.precision, d.scale))
                except DataError as exc:
                    raise DataError(f"{what}: {u.masked}: {exc}") from None
            row = conn.execute(f"SELECT count(*) FROM {rel}").fetchone()
            conn.rollback()
    except psycopg.Error as exc:
        raise _pg_error(exc, u, what) from None
    return cols, int(row[0]) if row else 0


def _pg_error(exc: Exception, u: SqlUrl, what: str) -> DataError:
    state = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    lines = [x.strip() for x in str(exc).splitlines() if x.strip() and x.strip() != "^"]
    text = u.scrub(primary or " ".join(lines[:2]) or type(exc).__name__)
    if state.startswith("28") or "password authentication failed" in str(exc):
        return DataError(f"{what}: {u.masked} refused the credentials ({text[:200]})")
    if state in ("", "08001", "08006") and "connect" in str(exc).lower():
        return DataError(f"{what}: cannot connect to {u.masked}: {text[:200]}")
    return DataError(f"{what}: {u.masked}: {text[:300]}")


def _describe_mysql(u: SqlUrl, rel: str, what: str) -> tuple[list[_Column], int]:
    try:
        import pymysql
    except ImportError as exc:
        raise _missing_driver(u.dialect, exc) from None
    try:
        conn = pymysql.connect(
            host=u.host,
            port=u.port or 3306,
            user=u.user,
            password=u.password,
            database=u.database,
            charset=u.params.get("charset", "utf8mb4"),
            connect_timeout=CONNECT_TIMEOUT,
        )
    except pymysql.Error as exc:
        raise _mysql_error(exc, u, what) from None
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY")
            cur.execute(f"SELECT * FROM {rel} LIMIT 0")
            fields = cur._result.fields if cur._result is not None else []
            try:
                cols = [
                    _my_column(f.name, f.type_code, f.flags, f.charsetnr, f.length, f.scale)
                    for f in fields
                ]
            except DataError as exc:
                raise DataError(f"{what}: {u.masked}: {exc}") from None
            cur.execute(f"SELECT COUNT(*) FROM {rel}")
            row = cur.fetchone()
            cur.execute("ROLLBACK")
    except pymysql.Error as exc:
        raise _mysql_error(exc, u, what) from None
    finally:
        conn.close()
    return cols, int(row[0]) if row else 0


def _mysql_error(exc: Exception, u: SqlUrl, what: str) -> DataError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = u.scrub(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    if code in (1044, 1045, 1698):
        return DataError(f"{what}: {u.masked} refused the credentials ({text[:200]})")
    if code in (2002, 2003, 2005, 2006, 2013):
        return DataError(f"{what}: cannot connect to {u.masked}: {text[:200]}")
    return DataError(f"{what}: {u.masked}: {text[:300]}")


def inspect_sql(
    name: str,
    url: str,
    id_column: str | None,
    *,
    table: str | None = None,
    query: str | None = None,
) -> DatasetRef:
    """Register a table or a query of a SQL database in place: its schema and row count.

    Returns a :class:`~rainbridge.data.DatasetRef` of format ``"sql"`` whose ``source`` holds
    the masked URL, the table or query and a new ``credential`` key; the clear URL is
    provided to this process under that key.

    Raises
    ------
    ConfigError
        A malformed URL, neither or both of ``table`` and ``query``, a query that is not one
        SELECT, or the server's driver is not installed.
    DataError
        The server cannot be reached or refuses the credentials, the table or a column is
        missing, a column's type is not read exactly, a column is named twice, or
        ``id_column`` is missing; each is named, the password never.
    """
    from rainbridge.data.dataset import DatasetRef

    u = parse_url(url)
    if (table is None) == (query is None) or (table is not None and not table.strip()):
        raise ConfigError(f"dataset {name!r}: give a --table or a --query of {u.masked}")
    source: dict[str, Any] = {"kind": "sql", "dialect": u.dialect, "url": u.masked}
    if table is not None:
        table_ident(table.strip(), u.dialect)
        source["table"] = table.strip()
    else:
        assert query is not None
        source["query"] = check_query(query, u.dialect)
    what = f"dataset {name!r}"
    describe = _describe_pg if u.dialect == "postgresql" else _describe_mysql
    cols, num_rows = describe(u, relation(source), what)
    names = [c.name for c in cols]
    twice = sorted({c for i, c in enumerate(names) if c in names[:i]})
    if twice:
        raise DataError(
            f"{what}: the {'query' if query is not None else 'table'} names column "
            f"{', '.join(map(repr, twice[:5]))} more than once; give every column a name"
        )
    if id_column is not None and id_column not in names:
        raise DataError(
            f"{what}: {u.masked} {_what_of(source)} has no column {id_column!r} "
            f"(columns: {', '.join(names[:20])})"
        )
    source["text_columns"] = [c.name for c in cols if c.as_text]
    source["credential"] = secrets.token_hex(16)
    provide_url(source["credential"], url.strip())
    return DatasetRef(
        name=name,
        path=u.masked,
        format="sql",
        id_column=id_column,
        columns={c.name: str(c.type) for c in cols},
        num_rows=num_rows,
        source=source,
    )


def _what_of(source: Mapping[str, Any]) -> str:
    return f"table {source['table']!r}" if source.get("table") else "query"


# -- reading ----------------------------------------------------------------------------------


def _url_of(ref: DatasetRef) -> SqlUrl:
    key = (ref.source or {}).get("credential")
    url = _URLS.get(key) if key else None
    if url is None:
        raise DataError(
            f"dataset {ref.name!r}: the credentials of its database are not available in this "
            "process (the node could not unseal them: was the master key changed?)"
        )
    return parse_url(url)


def iter_sql(
    ref: DatasetRef, columns: Sequence[str] | None = None, *, batch_rows: int = 1 << 18
) -> Iterator[pa.RecordBatch]:
    """Stream the named columns of a SQL dataset as record batches of its registered types.

    At least one batch is yielded (an empty one when there are no rows), so a reader always
    gets the schema.

    Raises
    ------
    DataError
        A column is not registered, the server cannot be reached or refuses, or a value does
        not fit its column's registered type exactly.
    """
    source = ref.source or {}
    names = list(columns) if columns else list(ref.columns)
    missing = [c for c in names if c not in ref.columns]
    if missing:
        raise DataError(
            f"dataset {ref.name!r}: {ref.path} {_what_of(source)} has no column(s) "
            f"{', '.join(map(repr, missing))}"
        )
    u = _url_of(ref)
    dialect = u.dialect
    as_text = set(source.get("text_columns") or ())
    cast = "::text" if dialect == "postgresql" else ""
    items = []
    for c in names:
        q = quote_ident(c, dialect)
        if c in as_text:
            q = f"{q}{cast}" if cast else f"CAST({q} AS CHAR)"
        items.append(f"{q} AS {quote_ident(c, dialect)}")
    sql = f"SELECT {', '.join(items) or '1 AS rb_none'} FROM {relation(source)}"
    schema = pa.schema([pa.field(c, arrow_type(ref.columns[c])) for c in names])
    what = f"dataset {ref.name!r}: {ref.path}"
    batches = (
        _pg_batches(u, sql, what)
        if dialect == "postgresql"
        else _mysql_batches(u, sql, what, batch_rows)
    )
    sent = False
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            out = _conform(batch.slice(start, batch_rows), schema, names, what)
            sent = True
            yield out
    if not sent:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _conform(
    batch: pa.RecordBatch, schema: pa.Schema, names: Sequence[str], what: str
) -> pa.RecordBatch:
    arrays = []
    for i, f in enumerate(schema):
        arr = batch.column(i)
        if arr.type != f.type:
            if isinstance(arr.type, pa.ExtensionType):
                arr = arr.storage
            try:
                arr = pc.cast(arr, f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                first = str(exc).splitlines()[0][:200]
                if pa.types.is_decimal(f.type) and pa.types.is_string(arr.type):
                    special = pc.is_in(arr, pa.array(["NaN", "Infinity", "-Infinity"]))
                    if pc.any(special).as_py():
                        raise DataError(
                            f"{what}: column {f.name!r} holds NaN or infinity, which no "
                            f"{f.type} holds; register a --query that filters or casts it"
                        ) from None
                raise DataError(
                    f"{what}: column {f.name!r} holds a value that is not {f.type} "
                    f"exactly ({first}); the table changed since it was registered"
                ) from None
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _pg_batches(u: SqlUrl, sql: str, what: str) -> Iterator[pa.RecordBatch]:
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError as exc:
        raise _missing_driver(u.dialect, exc) from None
    try:
        with adbc.connect(u.libpq()) as conn, conn.cursor() as cur:
            cur.execute(sql)
            for batch in cur.fetch_record_batch():
                _check_pg_range(batch, what)
                yield batch
    except adbc_driver_manager.Error as exc:
        raise _pg_error(exc, u, what) from None
    except pa.ArrowException as exc:
        raise DataError(f"{what}: {u.scrub(str(exc).splitlines()[0])[:300]}") from None


#: PostgreSQL's earliest date (4714-11-24 BC), in days and microseconds since 1970: ADBC
#: reads 'infinity', '-infinity' and timestamps past Arrow's range as values wrapped below it
_PG_MIN_DAYS = -2440588
_PG_MIN_MICROS = _PG_MIN_DAYS * 86_400_000_000


def _check_pg_range(batch: pa.RecordBatch, what: str) -> None:
    """Refuse the dates and timestamps ADBC could not read exactly (they wrap, silently)."""
    for f, arr in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_date32(f.type):
            low, bound = pc.min(arr.view(pa.int32())).as_py(), _PG_MIN_DAYS
        elif pa.types.is_timestamp(f.type) and f.type.unit == "us":
            low, bound = pc.min(arr.view(pa.int64())).as_py(), _PG_MIN_MICROS
        else:
            continue
        if low is not None and low < bound:
            raise DataError(
                f"{what}: column {f.name!r} holds infinity, -infinity or a value past "
                f"{f.type}'s range, which is not read; register a --query that filters or "
                f"casts it (e.g. WHERE isfinite({f.name}))"
            )


def _mysql_batches(u: SqlUrl, sql: str, what: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        import connectorx
    except ImportError as exc:
        raise _missing_driver(u.dialect, exc) from None
    try:
        # a TIMESTAMP is sent in the session's time zone, the server's own by default: in
        # UTC, the same instant reads the same from any server, and no hour is read twice
        reader = connectorx.read_sql(
            u.mysql_uri(),
            sql,
            return_type="arrow_stream",
            batch_size=batch_rows,
            # and read-only, as a registration's transaction is: whatever a query calls (a
            # function redefined since it was registered) cannot write
            pre_execution_query=["SET time_zone = '+00:00'", "SET SESSION TRANSACTION READ ONLY"],
        )
        yield from reader
    except GeneratorExit:
        raise
    except BaseException as exc:
        # ConnectorX raises RuntimeError, and a Rust panic as PanicException (a
        # BaseException): both are a failed read, never a reason to stop the process
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise DataError(f"{what}: {u.scrub(_first_line(exc))[:300]}") from None


def _first_line(exc: BaseException) -> str:
    lines = [x for x in str(exc).splitlines() if x.strip()]
    return lines[0] if lines else type(exc).__name__
