"""Keyword PIR between real node processes over mutual TLS, through the CLI: a bureau
publishes a blacklist, a bank queries it in both modes under a grant, updates reach the
bank's replica, the rate limit and the grant's quota hold, and the bureau's ledger and
metering record each query without the IDs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow


def test_blacklist_lookup_between_nodes(tmp_path: Path) -> None:
    rng = random.Random(7)
    people = [f"{rng.randrange(10**17, 10**18)}" for _ in range(3000)]
    listed = people[:2000]
    reasons = ["fraud", "overdue", "identity theft", "court order"]
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
        pub = f.cli_json("pir", "publish", "blacklist", "--dataset", "blacklist",
                         "--labels", "risk_level,reason", "--k", "64", node="bureau")  # fmt: skip
        assert pub["rows"] == 2000 and pub["version"] == 1

        asked = [listed[0], listed[1999], people[2500], "not-a-customer", listed[0]]
        # no grant yet: refused, with the reason
        r = f.cli("pir", "query", "blacklist", "--peer", "bureau", "--id", asked[0],
                  node="bank", check=False)  # fmt: skip
        assert r.returncode == 4, r.stderr
        assert "no grant" in r.stderr

        grant = f.cli_json("grant", "add", "blacklist", "--peer", "bank", "--columns",
                           "customer_id,risk_level,reason", "--components", "pir",
                           "--receivers", "bank", "--max-calls", "5", node="bureau")  # fmt: skip

        def query(mode: str, ids: list[str]) -> list[dict]:
            args = [x for i in ids for x in ("--id", i)]
            out = f.cli_json("pir", "query", "blacklist", "--peer", "bureau", "--mode", mode,
                             *args, node="bank")  # fmt: skip
            return list(out["results"])

        for mode in ("private", "bucket"):
            got = query(mode, asked)
            assert [g["id"] for g in got] == asked
            for g in got:
                want = rows.get(g["id"])
                assert g["found"] == (want is not None)
                if want:
                    assert g["label"] == {"risk_level": want[0], "reason": want[1]}

        # an update: one label changed, one row added, one deleted; the replica catches up
        up = tmp_path / "up.csv"
        up.write_text(f"customer_id,risk_level,reason\n{listed[5]},9,appeal lost\n"
                      "0000042,1,fraud\n")  # fmt: skip
        out = f.cli_json("pir", "update", "blacklist", "--upsert", str(up), "--delete",
                         listed[6], node="bureau")  # fmt: skip
        assert out["version"] == 2
        got = {g["id"]: g for g in query("private", [listed[5], "0000042", listed[6]])}
        assert got[listed[5]]["label"] == {"risk_level": 9, "reason": "appeal lost"}
        assert got["0000042"]["found"] and not got[listed[6]]["found"]
        synced = [
            st for st in f.cli_json("ledger", "show", "--limit", "1000", node="bank")["entries"]
            if st["entry"]["kind"] == "pir_replica_synced"
        ]  # fmt: skip
        assert len(synced) == 2  # the first copy, then one delta

        # the grant's quota of 5 queries (copies and the refusal before the grant are free)
        query("private", [listed[7]])
        query("private", [listed[8]])
        r = f.cli("pir", "query", "blacklist", "--peer", "bureau", "--id", listed[9],
                  node="bank", check=False)  # fmt: skip
        assert r.returncode == 4 and "quota" in r.stderr

        # the bureau's records: each answer metered and ledgered, no ID anywhere
        ledger = json.dumps(f.cli_json("ledger", "show", "--limit", "1000", node="bureau"))
        assert ledger.count('"pir_answered"') == 5
        for p in [*asked[:3], listed[5], listed[7]]:
            assert p not in ledger
        report = f.cli_json("metering", "report", node="bureau")
        pir_rows = [r for r in report["lines"] if r["component_type"] == "pir"]
        assert sum(r["calls"] for r in pir_rows) == 5
        assert pir_rows[0]["grant_id"] == grant["id"]

        # a tight rate limit (a token every 50 s: a slow machine cannot earn one back between
        # the queries): the third query in a burst of two is refused
        f.cli("pir", "publish", "hot", "--dataset", "blacklist", "--rate", "0.02", "--burst",
              "2", node="bureau")  # fmt: skip
        f.cli("grant", "add", "blacklist", "--peer", "bank", "--columns", "customer_id",
              "--components", "pir", "--receivers", "bank", node="bureau")  # fmt: skip
        codes = [
            f.cli("pir", "query", "hot", "--peer", "bureau", "--mode", "bucket", "--id", "x",
                  node="bank", check=False).returncode
            for _ in range(3)
        ]  # fmt: skip
        assert codes == [0, 0, 9]  # rate limited: retry later
    finally:
        f.stop()
