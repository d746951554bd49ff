"""PSI over inputs read exactly as written: IDs with quotes, commas and newlines at any block
size, empty IDs refused or dropped, Unicode normalisation on request, encodings, and the
receiver's own columns passed through as the owner wrote them. Checked against Python sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.data import DatasetRef, inspect_dataset, read_columns, reading
from rainbridge.errors import DataError, JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

PROTOCOLS = ("ecdh", "rr22")


def psi_job(
    protocol: str = "ecdh",
    params: dict[str, Any] | None = None,
    columns: dict[str, list[str]] | None = None,
    receivers: tuple[str, ...] = ("bank", "telecom"),
    fmt: str = "parquet",
    bank_id: str = "cid",
) -> str:
    out: dict[str, Any] = {"receivers": list(receivers), "format": fmt}
    if columns:
        out["columns"] = columns
    spec = {
        "name": "t",
        "parties": ["bank", "telecom"],
        "components": [
            {
                "id": "psi",
                "type": "psi",
                "inputs": {
                    "bank": {"dataset": "customers", "id": bank_id},
                    "telecom": {"dataset": "subs", "id": "cid"},
                },
                "params": {"protocol": protocol, **(params or {})},
                "outputs": {"intersection": out},
            }
        ],
    }
    return json.dumps(spec)


def write_csv(path: Path, header: list[str], rows: list[list[str]], crlf: bool = True) -> Path:
    # "\r\n" line ends: Python's writer then quotes every value holding CR or LF
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n" if crlf else "\n").writerows([header, *rows])
    return path


def run(
    tmp: Path, job: str, bank: DatasetRef, tel: DatasetRef, name: str = "out"
) -> dict[str, dict[str, Any]]:
    data = {"bank": {"customers": bank}, "telecom": {"subs": tel}}
    return run_local(parse_job(job), data, tmp / name)


def output(res: dict[str, Any], party: str) -> Any:
    path = res[party]["components"]["psi"]["outputs"]["intersection"]["path"]
    return pq.read_table(path) if path.endswith(".parquet") else pacsv.read_csv(path)


IDS = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",\"\n\r\t' é")),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    min_size=1,
    max_size=16,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    common=st.sets(IDS, max_size=25),
    only_bank=st.sets(IDS, max_size=25),
    only_tel=st.sets(IDS, max_size=25),
    protocol=st.sampled_from(PROTOCOLS),
    block=st.sampled_from([256, 333, 1024]),
)
def test_intersection_is_the_set_intersection_at_any_block_size(
    tmp_path_factory: pytest.TempPathFactory,
    common: set[str],
    only_bank: set[str],
    only_tel: set[str],
    protocol: str,
    block: int,
) -> None:
    tmp = tmp_path_factory.mktemp("psi")
    bank_ids = sorted(common | only_bank)
    tel_ids = sorted(common | only_tel)
    if not bank_ids or not tel_ids:
        return
    b = write_csv(tmp / "b.csv", ["cid", "v"], [[x, "0"] for x in bank_ids])
    t = write_csv(tmp / "t.csv", ["cid", "v"], [[x, "1"] for x in tel_ids])
    old = reading.CSV_BLOCK_SIZE
    reading.CSV_BLOCK_SIZE = block
    try:
        res = run(
            tmp,
            psi_job(protocol),
            inspect_dataset("customers", b, "cid"),
            inspect_dataset("subs", t, "cid"),
        )
    finally:
        reading.CSV_BLOCK_SIZE = old
    expected = set(bank_ids) & set(tel_ids)
    assert res["bank"]["components"]["psi"]["intersection_size"] == len(expected)
    assert set(output(res, "bank").column("cid").to_pylist()) == expected
    assert output(res, "telecom").column("cid").to_pylist() == sorted(
        expected, key=lambda s: s.encode()
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_quoted_newline_across_the_default_block_boundary(tmp_path: Path, protocol: str) -> None:
    """A one-column file over 4 MiB whose last quoted IDs straddle the first block's end:
    read line by line, "\nEva" became two IDs and the intersection lost it, silently."""
    tail = b'"Fay\nGee\nHoe"\n"Carol ""CJ"" King"\n"\nEve"\n"\nEva"\n'
    start = reading.CSV_BLOCK_SIZE - 42
    row = b"x" * 190 + b"\n"  # long rows: fewer IDs to intersect
    body = b"cid\nf0000001\n" + row * ((start - 13) // len(row))
    if len(body) < start:
        body += b"g" * (start - len(body) - 1) + b"\n"
    assert len(body) == start
    b = tmp_path / "b.csv"
    b.write_bytes(body + tail)
    t = tmp_path / "t.csv"
    t.write_bytes(b'cid\n"\nEva"\nf0000001\nnobody\n')
    res = run(
        tmp_path,
        psi_job(protocol),
        inspect_dataset("customers", b, "cid"),
        inspect_dataset("subs", t, "cid"),
    )
    assert res["bank"]["components"]["psi"]["intersection_size"] == 2
    assert output(res, "bank").column("cid").to_pylist() == ["\nEva", "f0000001"]


def test_a_block_that_ends_between_cr_and_lf_inside_a_quoted_id(tmp_path: Path) -> None:
    """The reader's first block would end on the CR of a quoted CRLF: the ID stays whole."""
    head, value = b"cid,v\r\n", b'"a\r\nb",1\r\n'
    k = reading.CSV_BLOCK_SIZE - 1 - len(head) - len(b"x,\r\n") - 2
    data = head + b"x," + b"f" * k + b"\r\n" + value
    assert data.index(b'"a\r') + 2 == reading.CSV_BLOCK_SIZE - 1
    b = tmp_path / "b.csv"
    b.write_bytes(data)
    t = write_csv(tmp_path / "t.csv", ["cid"], [["a\r\nb"]])
    res = run(
        tmp_path,
        psi_job("ecdh"),
        inspect_dataset("customers", b, "cid"),
        inspect_dataset("subs", t, "cid"),
    )
    assert output(res, "bank").column("cid").to_pylist() == ["a\r\nb"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_receivers_own_columns_are_kept_as_written(tmp_path: Path, protocol: str) -> None:
    b = write_csv(
        tmp_path / "b.csv",
        ["cid", "code", "card", "amount", "note"],
        [
            ["c1", "007", "12345678901234567890", "1.50", "NA"],
            ["c2", "010", "00000000000000000042", "2", ""],
            ["c3", "3", "9", "3.0", "x"],
        ],
    )
    t = write_csv(tmp_path / "t.csv", ["cid", "fee"], [["c1", "001.5"], ["c2", "2"]])
    cols = {"bank": ["code", "card", "amount", "note"]}
    params = {"payload": {"telecom": ["fee"]}} if protocol == "rr22" else {}
    receivers = ("bank",) if protocol == "rr22" else ("bank", "telecom")
    for fmt in ("parquet", "csv"):
        res = run(
            tmp_path,
            psi_job(protocol, params, cols, receivers, fmt),
            inspect_dataset("customers", b, "cid"),
            inspect_dataset("subs", t, "cid"),
            name=fmt,
        )
        path = res["bank"]["components"]["psi"]["outputs"]["intersection"]["path"]
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        else:
            rows = pq.read_table(path).to_pylist()
        assert [r["code"] for r in rows] == ["007", "010"]
        assert [r["card"] for r in rows] == ["12345678901234567890", "00000000000000000042"]
        assert [r["amount"] for r in rows] == ["1.50", "2"]
        assert [r["note"] for r in rows] == ["NA", "" if fmt == "csv" else None]
        if protocol == "rr22":
            assert [r["fee"] for r in rows] == ["001.5", "2"]
        if fmt == "parquet":
            # a later component computing on the output reads it typed, as from the CSV
            typed = read_columns(inspect_dataset("o", path, "cid"), ["code", "amount"])
            assert typed.to_pydict() == {"code": [7, 10], "amount": [1.5, 2.0]}


def test_a_declared_type_applies_to_passed_through_columns(tmp_path: Path) -> None:
    b = write_csv(tmp_path / "b.csv", ["cid", "code", "zip"], [["c1", "007", "01234"]])
    t = write_csv(tmp_path / "t.csv", ["cid"], [["c1"]])
    bank = inspect_dataset("customers", b, "cid", column_types={"code": "int64", "zip": "string"})
    res = run(
        tmp_path,
        psi_job(columns={"bank": ["code", "zip"]}),
        bank,
        inspect_dataset("subs", t, "cid"),
    )
    out = output(res, "bank")
    assert out.column("code").to_pylist() == [7] and out.column("zip").to_pylist() == ["01234"]
    typed = read_columns(
        inspect_dataset(
            "o", res["bank"]["components"]["psi"]["outputs"]["intersection"]["path"], "cid"
        ),
        ["zip"],
    )
    assert typed.column("zip").to_pylist() == ["01234"]  # declared text stays text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_ids_are_refused_with_their_count_or_dropped(tmp_path: Path, protocol: str) -> None:
    b = tmp_path / "b.csv"
    b.write_text('cid,v\nc1,1\n,2\n"",3\nc2,4\n')
    t = tmp_path / "t.csv"
    t.write_text("cid,w\nc1,1\n,2\nc3,3\n")
    clean = tmp_path / "clean.csv"
    clean.write_text("cid,w\nc1,1\nc3,3\n")
    bank = inspect_dataset("customers", b, "cid")
    tel = inspect_dataset("subs", t, "cid")
    with pytest.raises(DataError) as exc:
        run(tmp_path, psi_job(protocol), bank, inspect_dataset("subs", clean, "cid"))
    msg = str(exc.value)
    assert "dataset 'customers' column 'cid': 2 empty IDs" in msg and "missing_ids: drop" in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))
    res = run(tmp_path, psi_job(protocol, {"missing_ids": "drop"}, {"bank": ["v"]}), bank, tel)
    assert res["bank"]["components"]["psi"]["missing_ids_dropped"] == 2
    assert res["telecom"]["components"]["psi"]["missing_ids_dropped"] == 1
    assert res["bank"]["components"]["psi"]["intersection_size"] == 1  # empty IDs never meet
    assert output(res, "bank").to_pydict() == {"cid": ["c1"], "v": ["1"]}


def test_dropped_ids_and_filters_together(tmp_path: Path) -> None:
    b = tmp_path / "b.csv"
    b.write_text("cid,age\nc1,30\n,40\nc2,50\nc3,20\n")
    t = tmp_path / "t.csv"
    t.write_text("cid\nc1\nc2\nc3\n")
    params = {
        "missing_ids": "drop",
        "filters": {"bank": [{"column": "age", "op": ">=", "value": 25}]},
    }
    res = run(
        tmp_path,
        psi_job("ecdh", params, {"bank": ["age"]}),
        inspect_dataset("customers", b, "cid"),
        inspect_dataset("subs", t, "cid"),
    )
    s = res["bank"]["components"]["psi"]
    assert s["missing_ids_dropped"] == 1 and s["rows_after_filter"] == 2
    assert output(res, "bank").to_pydict() == {"cid": ["c1", "c2"], "age": ["30", "50"]}


def test_parquet_empty_strings_are_missing_ids(tmp_path: Path) -> None:
    import pyarrow as pa

    p = tmp_path / "b.parquet"
    pq.write_table(pa.table({"cid": ["c1", "", None, "c2"]}), p)
    t = tmp_path / "t.parquet"
    pq.write_table(pa.table({"cid": ["", "c1"]}), t)
    bank, tel = inspect_dataset("customers", p, "cid"), inspect_dataset("subs", t, "cid")
    with pytest.raises(DataError, match="2 empty IDs"):
        run(tmp_path, psi_job(), bank, tel)
    res = run(tmp_path, psi_job("rr22", {"missing_ids": "drop"}), bank, tel)
    assert res["bank"]["components"]["psi"]["intersection_size"] == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unicode_normalisation_on_request(tmp_path: Path, protocol: str) -> None:
    nfc, nfd = "Zo\u00eb Ren\u00e9e", "Zoe\u0308 Rene\u0301e"
    b = write_csv(tmp_path / "b.csv", ["cid", "v"], [[nfc, "1"], ["\ufb01sh", "2"], ["a", "3"]])
    t = write_csv(tmp_path / "t.csv", ["cid"], [[nfd], ["fish"], ["a"]])
    bank, tel = inspect_dataset("customers", b, "cid"), inspect_dataset("subs", t, "cid")
    exact = run(tmp_path, psi_job(protocol), bank, tel, "exact")
    assert exact["bank"]["components"]["psi"]["intersection_size"] == 1
    res = run(tmp_path, psi_job(protocol, {"normalize": "nfc"}, {"bank": ["v"]}), bank, tel, "nfc")
    assert res["bank"]["components"]["psi"]["intersection_size"] == 2
    # both parties' outputs hold the normal form, so they sort (and align) alike
    assert output(res, "bank").column("cid").to_pylist() == [nfc, "a"]
    assert output(res, "telecom").column("cid").to_pylist() == [nfc, "a"]
    res = run(tmp_path, psi_job(protocol, {"normalize": "nfkc"}), bank, tel, "nfkc")
    assert res["bank"]["components"]["psi"]["intersection_size"] == 3


def test_unknown_normal_forms_and_missing_id_modes_are_refused() -> None:
    with pytest.raises(JobSpecError, match="normalize"):
        parse_job(psi_job(params={"normalize": "nfd"}))
    with pytest.raises(JobSpecError, match="missing_ids"):
        parse_job(psi_job(params={"missing_ids": "keep"}))


def test_a_gbk_dataset_joins_a_utf8_one(tmp_path: Path) -> None:
    names = ["张三", "李四", "王五"]
    b = tmp_path / "b.csv"
    b.write_bytes(
        ("客户,年龄\n" + "".join(f"{n},{30 + i}\n" for i, n in enumerate(names))).encode("gbk")
    )
    t = write_csv(tmp_path / "t.csv", ["cid"], [["李四"], ["赵六"]])
    with pytest.raises(DataError, match=r"dataset 'customers'.*--encoding gb18030"):
        inspect_dataset("customers", b, "客户")
    bank = inspect_dataset("customers", b, "客户", encoding="gbk")
    job = psi_job(columns={"bank": ["年龄"]}, bank_id="客户")
    res = run(tmp_path, job, bank, inspect_dataset("subs", t, "cid"))
    assert output(res, "bank").to_pydict() == {"客户": ["李四"], "年龄": ["31"]}
