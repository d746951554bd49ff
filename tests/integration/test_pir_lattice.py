"""Keyword PIR in lattice mode between real node processes over mutual TLS, through the CLI:
a bureau publishes a blacklist in private and lattice modes, a bank copies the hint and
queries without a replica; answers equal private mode's and a plain lookup; an update reaches
the bank by hint rows; the grant, its quota and the rate limit hold as in private mode, and
the bureau's ledger and metering count queries, never IDs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow


def test_lattice_lookup_between_nodes(tmp_path: Path) -> None:
    rng = random.Random(11)
    people = [f"{rng.randrange(10**17, 10**18)}" for _ in range(600)]
    listed = people[:400]
    reasons = ["fraud", "overdue", "identity", "court"]
    rows = {p: (i % 5, reasons[i % 4]) for i, p in enumerate(listed)}
    data = tmp_path / "blacklist.csv"
    data.write_text(
        "customer_id,risk_level,reason\n"
        + "".join(f"{p},{lvl},{why}\n" for p, (lvl, why) in rows.items())
    )
    f = Federation(tmp_path, ["bank", "bureau"], timeout=20)
    f.start()
    try:
        f.pin_all()
        f.cli("dataset", "add", "blacklist", "--path", str(data), "--id", "customer_id",
              node="bureau")  # fmt: skip
        pub = f.cli_json("pir", "publish", "blacklist", "--dataset", "blacklist", "--labels",
                         "risk_level,reason", "--modes", "private,lattice",
                         node="bureau")  # fmt: skip
        assert pub["modes"] == ["private", "lattice"]

        # no grant yet: the hint and the query are refused, with the reason
        for args in (("sync", "blacklist", "--peer", "bureau", "--mode", "lattice"),
                     ("query", "blacklist", "--peer", "bureau", "--mode", "lattice",
                      "--id", listed[0])):  # fmt: skip
            r = f.cli("pir", *args, node="bank", check=False)
            assert r.returncode == 4 and "no grant" in r.stderr, r.stderr

        grant = f.cli_json("grant", "add", "blacklist", "--peer", "bank", "--columns",
                           "customer_id,risk_level,reason", "--components", "pir",
                           "--receivers", "bank", "--max-calls", "5", node="bureau")  # fmt: skip
        hint = f.cli_json("pir", "sync", "blacklist", "--peer", "bureau", "--mode", "lattice",
                          node="bank")  # fmt: skip
        assert hint["kind"] == "full" and hint["bytes"] == hint["hint_bytes"] > 0

        def query(mode: str, ids: list[str]) -> list[dict]:
            args = [x for i in ids for x in ("--id", i)]
            out = f.cli_json("pir", "query", "blacklist", "--peer", "bureau", "--mode", mode,
                             *args, node="bank")  # fmt: skip
            return list(out["results"])

        asked = [listed[0], listed[399], people[500], "not-a-customer", listed[0]]
        got = query("lattice", asked)
        assert [g["id"] for g in got] == asked
        for g in got:
            want = rows.get(g["id"])
            assert g["found"] == (want is not None)
            assert g["label"] == ({"risk_level": want[0], "reason": want[1]} if want else None)
        assert got == query("private", asked)

        # an update: a label changed, a row added, one deleted; the hint catches up by rows
        up = tmp_path / "up.csv"
        up.write_text(f"customer_id,risk_level,reason\n{listed[5]},9,appeal\n0000042,1,fraud\n")
        out = f.cli_json("pir", "update", "blacklist", "--upsert", str(up), "--delete",
                         listed[6], node="bureau")  # fmt: skip
        assert out["version"] == 2
        got = {g["id"]: g for g in query("lattice", [listed[5], "0000042", listed[6]])}
        assert got[listed[5]]["label"] == {"risk_level": 9, "reason": "appeal"}
        assert got["0000042"]["found"] and not got[listed[6]]["found"]
        synced = [
            st["entry"]["body"]["kind"]
            for st in f.cli_json("ledger", "show", "--limit", "1000", node="bank")["entries"]
            if st["entry"]["kind"] == "pir_hint_synced"
        ]  # fmt: skip
        assert synced == ["full", "rows"]

        # the grant's quota of 5 queries (hint copies and refusals are free)
        query("lattice", [listed[7]])
        query("private", [listed[8]])
        r = f.cli("pir", "query", "blacklist", "--peer", "bureau", "--mode", "lattice", "--id",
                  listed[9], node="bank", check=False)  # fmt: skip
        assert r.returncode == 4 and "quota" in r.stderr

        # the bureau's records: each query metered and ledgered with its count, no ID anywhere
        ledger = json.dumps(f.cli_json("ledger", "show", "--limit", "1000", node="bureau"))
        assert ledger.count('"pir_answered"') == 5
        for p in [*asked[:3], listed[5], listed[7]]:
            assert p not in ledger
        report = f.cli_json("metering", "report", node="bureau")
        pir_rows = [r for r in report["lines"] if r["component_type"] == "pir"]
        assert sum(r["calls"] for r in pir_rows) == 5
        assert sum(r["rows"] for r in pir_rows) == 5 + 5 + 3 + 1 + 1
        assert pir_rows[0]["grant_id"] == grant["id"]

        # unbalanced PSI over the lattice mode: a file of IDs, no labels; which are listed
        f.cli("pir", "publish", "set", "--dataset", "blacklist", "--modes", "lattice",
              node="bureau")  # fmt: skip
        f.cli("grant", "add", "blacklist", "--peer", "bank", "--columns", "customer_id",
              "--components", "pir", "--receivers", "bank", node="bureau")  # fmt: skip
        mine = [*people[300:], "0000042", "never-seen"]  # 100 listed, 202 not
        (tmp_path / "mine.txt").write_text("\n".join(mine) + "\n")
        out = f.cli_json("pir", "query", "set", "--peer", "bureau", "--mode", "lattice",
                         "--file", str(tmp_path / "mine.txt"), node="bank")  # fmt: skip
        found = {r["id"] for r in out["results"] if r["found"]}
        assert [r["id"] for r in out["results"]] == mine
        assert found == set(mine) & set(listed)  # a new service: the dataset's rows

        # a tight rate limit: the third lattice query in a burst of two is refused
        f.cli("pir", "publish", "hot", "--dataset", "blacklist", "--modes", "lattice",
              "--rate", "0.02", "--burst", "2", node="bureau")  # fmt: skip
        f.cli("grant", "add", "blacklist", "--peer", "bank", "--columns", "customer_id",
              "--components", "pir", "--receivers", "bank", node="bureau")  # fmt: skip
        codes = [
            f.cli("pir", "query", "hot", "--peer", "bureau", "--mode", "lattice", "--id", "x",
                  node="bank", check=False).returncode
            for _ in range(3)
        ]  # fmt: skip
        assert codes == [0, 0, 9]  # rate limited: retry later
    finally:
        f.stop()
