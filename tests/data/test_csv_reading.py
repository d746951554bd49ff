"""CSV files read exactly as written: quoted newlines at any block size, NULL rules, text kept
as written, declared types, encodings; checked against Python's csv module."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.data import (
    DatasetRef,
    inspect_dataset,
    iter_dataset,
    read_columns,
    read_ids,
    reading,
    write_table_atomic,
)
from rainbridge.errors import ConfigError, DataError
from rainbridge.protocols.psi.records import RecordLayout

BLOCKS = (256, 301, 1024, 4099)

# text that CSV must carry: delimiters, quotes, both line ends, non-ASCII (no surrogates)
TRICKY = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",\"\n\r\t ;'")),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=24,
)


def write_rows(path: Path, header: list[str], rows: list[list[str]], crlf: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n" if crlf else "\n").writerows([header, *rows])


def python_read(path: Path) -> list[list[str]]:
    """Python's reading of the rows (blank lines skipped, as Arrow skips them)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.reader(f) if r][1:]


def rfc4180(path: Path, header: list[str], rows: list[list[str]], crlf: bool) -> None:
    """Quote a value that holds a delimiter, a quote, CR or LF (Python's writer leaves a lone
    CR unquoted when lines end in LF, which no reader can tell from a line end)."""

    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v

    end = "\r\n" if crlf else "\n"
    text = "".join(",".join(map(cell, r)) + end for r in [header, *rows])
    path.write_bytes(text.encode())


def as_null(values: list[str]) -> list[str | None]:
    return [v if v != "" else None for v in values]  # an empty cell is NULL


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(TRICKY, min_size=1, max_size=80),
    crlf=st.booleans(),
)
def test_ids_read_back_as_pythons_csv_reads_them_at_any_block_size(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str], crlf: bool
) -> None:
    path = tmp_path_factory.mktemp("csv") / "ids.csv"
    write_rows(path, ["id", "n"], [[x, str(i)] for i, x in enumerate(ids)], crlf)
    expected = python_read(path)
    if any(len(r) != 2 for r in expected):  # a lone CR left unquoted: not two columns a row
        with pytest.raises(DataError, match="dataset 'd'"):
            inspect_dataset("d", path, "id")
        return
    ref = inspect_dataset("d", path, "id")
    assert ref.num_rows == len(expected)
    for block in BLOCKS:
        got = {"id": [], "n": []}  # type: ignore[var-annotated]
        for b in iter_dataset(ref, ["id", "n"], block_size=block):
            got["id"] += b.column("id").to_pylist()
            got["n"] += b.column("n").to_pylist()
        assert got["id"] == as_null([r[0] for r in expected]), block
        assert got["n"] == [int(r[1]) for r in expected]


def test_quoted_newlines_commas_quotes_and_crlf_across_small_blocks(tmp_path: Path) -> None:
    values = ["a\nb", "c,d", 'e"f', "g\r\nh", "身份\n证", "plain", ' "x" ', "z\r"]
    rows = [[v * (1 + i % 5), f"{i:03d}"] for i, v in enumerate(values * 40)]
    for crlf in (False, True):
        path = tmp_path / f"t{crlf}.csv"
        rfc4180(path, ["id", "code"], rows, crlf)
        ref = inspect_dataset("t", path, "id")
        for block in BLOCKS:
            ids: list[str] = []
            codes: list[str] = []
            for b in iter_dataset(ref, ["id", "code"], text=True, block_size=block):
                ids += b.column("id").to_pylist()
                codes += b.column("code").to_pylist()
            assert ids == [r[0] for r in rows] and codes == [r[1] for r in rows]


def test_the_module_block_size_applies_to_every_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.csv"
    rows = [[f"id\n{i}", str(i)] for i in range(500)]
    write_rows(path, ["id", "v"], rows)
    monkeypatch.setattr(reading, "CSV_BLOCK_SIZE", 97)
    ref = inspect_dataset("t", path, "id")
    assert ref.num_rows == 500
    assert read_ids(ref).to_pylist() == [r[0] for r in rows]
    assert read_columns(ref, ["v"]).column("v").to_pylist() == list(range(500))


def test_a_file_over_the_default_block_with_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    n = 60_000
    rows = [[f"customer\n{i:08d}", "x" * 60] for i in range(n)]  # > 4 MiB
    write_rows(path, ["id", "pad"], rows)
    assert path.stat().st_size > reading.CSV_BLOCK_SIZE
    ref = inspect_dataset("big", path, "id")
    assert ref.num_rows == n
    assert read_ids(ref).to_pylist() == [r[0] for r in rows]


def test_text_kept_as_written_and_typed_reads_for_computing(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "id,code,card,amount,flag\n"
        "a,007,12345678901234567890,1.50,TRUE\n"
        "b,010,00000000000000000001,2,false\n"
    )
    ref = inspect_dataset("c", path, "id")
    text = read_columns(ref, ["code", "card", "amount", "flag"], text=True)
    assert text.to_pydict() == {
        "code": ["007", "010"],
        "card": ["12345678901234567890", "00000000000000000001"],
        "amount": ["1.50", "2"],
        "flag": ["TRUE", "false"],
    }
    assert all(reading.is_marked_text(f) for f in text.schema)
    typed = read_columns(ref, ["code", "amount", "flag"])
    assert typed.to_pydict() == {"code": [7, 10], "amount": [1.5, 2.0], "flag": [True, False]}
    # written out and read back: the text stays; computing on it types it as the CSV would
    out = write_table_atomic(text, tmp_path / "o.parquet", "parquet")
    assert pq.read_table(out).column("code").to_pylist() == ["007", "010"]
    again = inspect_dataset("o", out, None)
    assert (
        read_columns(again, ["code", "amount"]).to_pydict()
        == typed.select(["code", "amount"]).to_pydict()
    )
    assert read_columns(again, ["card"], text=True).column("card").to_pylist()[0] == (
        "12345678901234567890"
    )


def test_empty_cells_are_null_for_every_type_and_no_other_spelling_is(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text('id,s,x,q\na,,1,""\nb,NULL,,x\nc,NA,3,\nd,N/A,4,y\ne,null,5,""\n')
    ref = inspect_dataset("n", path, "id")
    t = read_columns(ref, ["s", "x", "q"])
    assert t.column("s").to_pylist() == [None, "NULL", "NA", "N/A", "null"]
    assert t.column("x").to_pylist() == [1, None, 3, 4, 5] and t.column("x").type == pa.int64()
    assert t.column("q").to_pylist() == [None, "x", None, "y", None]
    assert read_columns(ref, ["s"], text=True).column("s").null_count == 1
    # a numeric column with a NULL spelling is text: counted as written, never guessed
    path2 = tmp_path / "n2.csv"
    path2.write_text("id,v\na,1\nb,NA\n")
    assert read_columns(inspect_dataset("n2", path2, "id"), ["v"]).column("v").type == pa.string()


def test_empty_and_null_ids(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text('id,v\na,1\n,2\n"",3\nb,4\n')
    ref = inspect_dataset("e", path, "id")
    with pytest.raises(DataError, match=r"dataset 'e' column 'id': 2 empty IDs"):
        read_ids(ref)
    assert read_ids(ref, missing="keep").to_pylist() == ["a", None, None, "b"]
    p = tmp_path / "e.parquet"
    pq.write_table(pa.table({"id": ["a", "", None]}), p)
    with pytest.raises(DataError, match="2 empty IDs"):
        read_ids(inspect_dataset("p", p, "id"))


def test_tab_separated_files(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("id\tv\na,b\t1\n")
    ref = inspect_dataset("t", path, "id")
    assert read_ids(ref).to_pylist() == ["a,b"]


def test_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,zip,amount,when\na,01234,5,2024-01-02\nb,99999,,2024-02-03\n")
    ref = inspect_dataset(
        "d", path, "id", column_types=["zip=string", "amount=double", "when=date32"]
    )
    assert ref.column_types == {"zip": "string", "amount": "double", "when": "date32[day]"}
    assert ref.columns["zip"] == "string" and ref.columns["amount"] == "double"
    t = read_columns(ref, ["zip", "amount"])
    assert t.column("zip").to_pylist() == ["01234", "99999"]
    assert t.column("amount").to_pylist() == [5.0, None]
    # declared columns keep their type when passed through, and are not marked as written
    out = read_columns(ref, ["amount", "zip"], text=True)
    assert out.column("amount").type == pa.float64()
    assert not any(reading.is_marked_text(f) for f in out.schema)
    # a stored ref without the new fields still loads (UTF-8, nothing declared)
    old = {k: v for k, v in ref.to_dict().items() if k not in ("encoding", "column_types")}
    assert DatasetRef.from_dict(old).column_types == {}
    assert DatasetRef.from_dict(ref.to_dict()) == ref


def test_declared_types_are_checked_at_registration(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,n\na,1\nb,x\n")
    with pytest.raises(DataError, match="dataset 'd'"):
        inspect_dataset("d", path, "id", column_types={"n": "int64"})
    with pytest.raises(ConfigError, match="'nope'"):
        inspect_dataset("d", path, "id", column_types={"nope": "int64"})
    with pytest.raises(ConfigError, match="not one of"):
        inspect_dataset("d", path, "id", column_types={"n": "varchar"})
    with pytest.raises(ConfigError, match="COLUMN=TYPE"):
        inspect_dataset("d", path, "id", column_types=["n"])
    with pytest.raises(ConfigError, match="always text"):
        inspect_dataset("d", path, "id", column_types={"id": "int64"})
    p = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": ["a"]}), p)
    with pytest.raises(ConfigError, match="Parquet"):
        inspect_dataset("p", p, "id", encoding="gbk")


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "GBK", "big5", "latin-1"])
def test_encodings_round_trip(tmp_path: Path, encoding: str) -> None:
    names = ["Zoë", "Ñandú"] if encoding == "latin-1" else ["張三", "李四"]
    path = tmp_path / "e.csv"
    head = {"latin-1": "clé", "big5": "客戶"}.get(encoding, "客户")
    path.write_bytes(
        (f"{head},v\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names))).encode(encoding)
    )
    with pytest.raises(DataError) as exc:
        inspect_dataset("people", path, head)
    msg = str(exc.value)
    assert "dataset 'people'" in msg and "--encoding gb18030" in msg and "UTF-8" in msg
    ref = inspect_dataset("people", path, head, encoding=encoding)
    assert ref.encoding is not None and ref.num_rows == 2
    assert read_ids(ref).to_pylist() == names
    assert read_columns(ref, ["v"]).column("v").to_pylist() == [0, 1]


def test_invalid_utf8_in_a_value_column_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_bytes("id,name\n1,张三\n".encode("gbk"))
    with pytest.raises(DataError, match=r"dataset 'g'.*--encoding gb18030"):
        inspect_dataset("g", path, "id")
    # utf-8 named explicitly is the default; an unknown codec is refused by name
    with pytest.raises(ConfigError, match="'klingon'"):
        inspect_dataset("g", path, "id", encoding="klingon")
    utf8 = tmp_path / "u.csv"
    utf8.write_text("id\n身份\n", encoding="utf-8")
    assert inspect_dataset("u", utf8, "id", encoding="UTF-8").encoding is None
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"id\n\x81\n")
    with pytest.raises(DataError, match="not valid gb18030"):
        inspect_dataset("b", bad, "id", encoding="gb18030")


def test_payload_records_keep_the_as_written_mark() -> None:
    table = reading.mark_text(pa.table({"a": ["007", None], "b": ["x", "y"]}), ["a"])
    layout = RecordLayout.of(table)
    assert [f.text for f in layout.fields] == [True, False]
    back = layout.decode(layout.encode(table))
    assert back.equals(table) and reading.is_marked_text(back.schema.field("a"))
    assert not reading.is_marked_text(back.schema.field("b"))
    again = RecordLayout.from_json(layout.to_json(), layout.names, "p")
    assert again == layout


def test_csv_read_of_python_written_rows_matches_python(tmp_path: Path) -> None:
    buf = io.StringIO()
    rows = [["k", "v"], ["a,b", '1"2'], ["c\nd", ""], ["", "x"]]
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    path = tmp_path / "r.csv"
    path.write_bytes(buf.getvalue().encode())
    ref = inspect_dataset("r", path, None)
    t = read_columns(ref, ["k", "v"], text=True)
    assert t.column("k").to_pylist() == ["a,b", "c\nd", None]
    assert t.column("v").to_pylist() == ['1"2', None, "x"]
