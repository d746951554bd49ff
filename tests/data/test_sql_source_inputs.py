"""URLs and queries from outside: any text is parsed or refused with a ConfigError, never an
untyped error, and a refusal never holds the password."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.data.sql_source import check_query, parse_url
from rainbridge.errors import ConfigError

SQLISH = st.lists(
    st.sampled_from(
        ["SELECT", "a", "FROM", "t", "(", ")", ",", ";", "WITH", "x", "AS", "INTO", "DELETE",
         "'", '"', "--", "/*", "*/", "UNION", "*", "1", "FOR", "UPDATE", " ", "\n", "\x00"]
    ),
    max_size=40,
).map(" ".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), SQLISH), st.sampled_from(["postgresql", "mysql"]))
def test_any_query_is_accepted_or_refused_typed(query: str, dialect: str) -> None:
    try:
        out = check_query(query, dialect)
    except ConfigError:
        return
    assert out and ";" not in out[-1:]


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("; SELECT 1", "SELECT 1"),
        (" ;;SELECT a FROM t; -- done", "SELECT a FROM t"),
        ("SELECT 1;", "SELECT 1"),
        (";SELECT", "SELECT"),
    ],
)
def test_leading_semicolons_are_empty_statements(query: str, want: str) -> None:
    # a query after empty statements is that query, never the empty text before it
    assert check_query(query, "postgresql") == want


URLISH = st.builds(
    lambda scheme, user, host, rest: f"{scheme}://{user}:hunter2-pw@{host}{rest}",
    st.sampled_from(["postgresql", "postgresql+psycopg", "mysql", "mysql+pymysql", "sqlite", ""]),
    st.text("abcxyz019._-", max_size=10),  # a user and a host as a URL spells them
    st.text("abcxyz019._-", max_size=20),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_any_text_is_parsed_or_refused_typed(url: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_url(url)


@settings(max_examples=300, deadline=None)
@given(URLISH)
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    try:
        u = parse_url(url)
    except ConfigError as exc:
        assert "hunter2-pw" not in str(exc)
        return
    assert "hunter2-pw" not in u.masked and "hunter2-pw" not in repr(u)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "select a from t;",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT a FROM t UNION SELECT b FROM u",
    ],
)
def test_plain_queries_pass(query: str) -> None:
    assert check_query(query, "postgresql") == query.rstrip(";")


@pytest.mark.parametrize(
    ("query", "dialect"),
    [
        ("SELECT a FROM t; -- the customers", "postgresql"),
        ("SELECT a FROM t;\n/* done */ ;", "mysql"),
        ("SELECT a FROM t ; # done", "mysql"),
    ],
)
def test_a_comment_after_the_semicolon_is_no_statement(query: str, dialect: str) -> None:
    assert check_query(query, dialect) == "SELECT a FROM t"


def test_a_semicolon_in_a_string_is_kept() -> None:
    q = "SELECT 'a;b' AS x, $$c;d$$ AS y FROM t"
    assert check_query(q + ";  -- end", "postgresql") == q
    with pytest.raises(ConfigError, match="2 statements"):
        check_query("SELECT 1; SELECT 2 -- two", "postgresql")
