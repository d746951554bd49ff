"""The multi-lender count between five real nodes (four lenders and a merger) over mutual
TLS, through the CLI: counts equal a plain count over the lenders' windows, the window's
dates hold, a non-member is refused, and no ledger holds the ID asked about."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow

LENDERS = ["bank", "fintech", "consumer", "microloan"]
END = dt.date(2026, 12, 1)


def test_multi_lender_count_between_five_nodes(tmp_path: Path) -> None:
    rng = random.Random(3)
    people = [f"3201{rng.randrange(10**13, 10**14)}" for _ in range(400)]
    apps: dict[str, list[tuple[str, dt.date]]] = {}
    for lender in LENDERS:
        rows = []
        for p in rng.sample(people, 150):
            rows.append((p, END - dt.timedelta(days=rng.randrange(0, 60))))
        rows.append((people[0], END))  # people[0] applied everywhere, today
        apps[lender] = rows
    f = Federation(tmp_path, [*LENDERS, "operator"], timeout=20)
    f.start()
    try:
        f.pin_all()
        for lender in LENDERS:
            path = tmp_path / f"{lender}.csv"
            path.write_text(
                "customer_id,applied_on\n"
                + "".join(f"{p},{d.isoformat()}\n" for p, d in apps[lender])
            )
            f.cli("dataset", "add", "apps", "--path", str(path), "--id", "customer_id", node=lender)
            f.cli(
                "mlq",
                "join",
                "mlq30",
                "--lenders",
                ",".join(LENDERS),
                "--merger",
                "operator",
                "--dataset",
                "apps",
                "--date-column",
                "applied_on",
                node=lender,
            )
        f.cli(
            "mlq",
            "join",
            "mlq30",
            "--lenders",
            ",".join(LENDERS),
            "--merger",
            "operator",
            node="operator",
        )
        built = f.cli_json("mlq", "build", "mlq30", "--end", END.isoformat(), node="operator")
        assert built["people"] > 0

        def truth(asker: str, who: str) -> int:
            lo = END - dt.timedelta(days=29)
            return sum(
                any(p == who and lo <= d <= END for p, d in apps[lender])
                for lender in LENDERS
                if lender != asker
            )

        asked = [people[0], people[1], people[2], "nobody-at-all"]
        for who in asked:
            out = f.cli_json("mlq", "count", "mlq30", "--id", who, node="bank")
            assert out["count"] == truth("bank", who), who
        assert f.cli_json("mlq", "count", "mlq30", "--id", people[0], node="fintech")["count"] == 3

        # the merger holds no key: it cannot count, and a non-lender cannot ask
        r = f.cli("mlq", "count", "mlq30", "--id", people[0], node="operator", check=False)
        assert r.returncode == 4

        for node in [*LENDERS, "operator"]:
            ledger = json.dumps(f.cli_json("ledger", "show", "--limit", "2000", node=node))
            for who in asked[:3]:
                assert who not in ledger, node
        evaluated = json.dumps(f.cli_json("ledger", "show", "--limit", "2000", node="consumer"))
        assert evaluated.count('"mlq_evaluated"') == 5  # four counts by bank, one by fintech
    finally:
        f.stop()
