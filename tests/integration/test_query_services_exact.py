"""The query services between real node processes, through the CLI, checked against plain
Python lookups and counts: bucket-mode PIR answers a 5,000-ID file and a wide label against
a 20,000-row table of awkward IDs and mixed label types, or refuses a query over the
service's stated reply bound with that reason; updates keep the published column types; a
multi-lender count refuses once the asking lender's window changed since the build, and is
exact again after a rebuild."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow


def write_table(path: Path, n: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(17)
    shapes = ["{:08d}", "A,{}", 'Q"{}"', "张{}", "x {}", "{}e5"]
    truth: dict[str, dict[str, Any]] = {}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "level", "reason", "score", "listed_on"])
        for i in range(n):
            ident = rng.choice(shapes).format(i)
            level = None if i % 7 == 3 else rng.randrange(-5, 10**12)
            reason = None if i % 5 == 1 else rng.choice(["x", "404", "007", "fraud, late"])
            score = None if i % 11 == 2 else rng.randrange(-1000, 1000) / 8
            day = None if i % 13 == 4 else dt.date(2020, 1, 1) + dt.timedelta(rng.randrange(900))
            w.writerow([ident, *("" if v is None else v for v in (level, reason, score, day))])
            truth[ident] = {
                "level": level,
                "reason": reason,
                "score": score,
                "listed_on": day.isoformat() if day else None,
            }
    return truth


def test_bucket_mode_and_updates_between_nodes(tmp_path: Path) -> None:
    truth = write_table(tmp_path / "bl.csv", 20_000)
    f = Federation(tmp_path, ["bank", "bureau"], timeout=30)
    f.start()
    try:
        f.pin_all()

        def publish(name: str, path: Path, labels: str, *more: str) -> dict[str, Any]:
            f.cli("dataset", "add", name, "--path", str(path), "--id", "customer_id",
                  node="bureau")  # fmt: skip
            out = f.cli_json("pir", "publish", name, "--dataset", name, "--labels", labels,
                             "--rate", "1000", "--burst", "1000", *more,
                             node="bureau")  # fmt: skip
            f.cli("grant", "add", name, "--peer", "bank", "--columns", "*", "--components",
                  "pir", "--receivers", "bank", node="bureau")  # fmt: skip
            return dict(out)

        def bucket(name: str, *args: str) -> list[dict[str, Any]]:
            out = f.cli_json("pir", "query", name, "--peer", "bureau", "--mode", "bucket",
                             *args, node="bank")  # fmt: skip
            return list(out["results"])

        publish("bl", tmp_path / "bl.csv", "level,reason,score,listed_on")
        rng = random.Random(2)
        present = list(truth)
        asked = [
            rng.choice(present) if i % 3 else f"absent-{i}" for i in range(5000)
        ]  # one REST query of 4,096 IDs and one of 904
        (tmp_path / "ids.txt").write_text("\n".join(asked) + "\n")
        got = bucket("bl", "--file", str(tmp_path / "ids.txt"))
        assert [g["id"] for g in got] == asked
        for g in got:
            assert g["found"] == (g["id"] in truth)
            assert g["label"] == truth.get(g["id"])

        # one wide label, default k: one bucket whose rows span several messages
        rows = {f"w{i}": ("y" * 65_531 if i == 7 else f"note {i}") for i in range(40)}
        (tmp_path / "wide.csv").write_text(
            "customer_id,note\n" + "".join(f"{k},{v}\n" for k, v in rows.items())
        )
        publish("wide", tmp_path / "wide.csv", "note")
        assert bucket("wide", "--id", "w7")[0]["label"] == {"note": rows["w7"]}

        # a stated bound: a query whose answer would exceed it is refused up front, with it
        tight = publish("tight", tmp_path / "bl.csv", "level,reason,score,listed_on", "--k", "64",
                        "--max-reply-mib", "1")  # fmt: skip
        assert tight["max_reply_bytes"] == 1 << 20
        r = f.cli("pir", "query", "tight", "--peer", "bureau", "--mode", "bucket", "--file",
                  str(tmp_path / "ids.txt"), node="bank", check=False)  # fmt: skip
        assert r.returncode == 3, r.stderr
        assert "max_reply_bytes of 1,048,576" in r.stderr and "closed the session" not in r.stderr

        # updates are read with the published table's types
        (tmp_path / "t.csv").write_text("customer_id,a,c\nX0,1,fraud\nX2,2,\n")
        publish("typed", tmp_path / "t.csv", "a,c")
        (tmp_path / "up1.csv").write_text("customer_id,a,c\nX1,5,\n")
        f.cli("pir", "update", "typed", "--upsert", str(tmp_path / "up1.csv"), node="bureau")
        (tmp_path / "up2.csv").write_text("customer_id,a,c\nX2,6,404\nX3,007,007\n")
        out = f.cli_json("pir", "update", "typed", "--upsert", str(tmp_path / "up2.csv"),
                         node="bureau")  # fmt: skip
        assert out["version"] == 3
        got = {g["id"]: g["label"] for g in bucket("typed", "--id", "X0", "--id", "X1",
                                                      "--id", "X2", "--id", "X3")}  # fmt: skip
        assert got == {
            "X0": {"a": 1, "c": "fraud"},
            "X1": {"a": 5, "c": None},
            "X2": {"a": 6, "c": "404"},
            "X3": {"a": 7, "c": "007"},
        }
    finally:
        f.stop()


LENDERS = ["bank", "fintech", "consumer", "microloan"]


def test_a_changed_window_is_refused_until_the_rebuild(tmp_path: Path) -> None:
    apps = {
        "bank": "B-1,2026-11-20\n",
        "fintech": "B-1,2026-11-25\n",
        "consumer": "W-1,2026-11-29\n",
        "microloan": "W-1,2026-11-10\n",
    }
    f = Federation(tmp_path, [*LENDERS, "operator"], timeout=30)
    f.start()
    try:
        f.pin_all()
        for lender in LENDERS:
            path = tmp_path / f"{lender}.csv"
            path.write_text("customer_id,applied_on\n" + apps[lender])
            f.cli("dataset", "add", "apps", "--path", str(path), "--id", "customer_id",
                  node=lender)  # fmt: skip
            f.cli("mlq", "join", "credit30", "--lenders", ",".join(LENDERS), "--merger",
                  "operator", "--dataset", "apps", "--date-column", "applied_on",
                  node=lender)  # fmt: skip
        f.cli("mlq", "join", "credit30", "--lenders", ",".join(LENDERS), "--merger",
              "operator", node="operator")  # fmt: skip
        f.cli("mlq", "build", "credit30", "--end", "2026-12-01", node="operator")

        def count(ident: str, node: str = "microloan") -> Any:
            return f.cli("mlq", "count", "credit30", "--id", ident, "--json", node=node,
                         check=False)  # fmt: skip

        assert json.loads(count("W-1").stdout)["count"] == 1
        assert json.loads(count("B-1").stdout)["count"] == 2
        (tmp_path / "microloan.csv").write_text("customer_id,applied_on\nB-1,2026-11-30\n")
        for ident in ("W-1", "B-1"):
            r = count(ident)
            assert r.returncode == 3, r.stderr
            assert "'microloan'" in r.stderr and "rebuild" in r.stderr
        f.cli("mlq", "build", "credit30", "--end", "2026-12-01", node="operator")
        assert json.loads(count("W-1").stdout)["count"] == 1
        assert json.loads(count("B-1").stdout)["count"] == 2
        assert json.loads(count("B-1", "bank").stdout)["count"] == 2
    finally:
        f.stop()
