"""``make demo``: a bank, a telecom operator and a tax bureau align their common customers.

Three nodes start as separate processes on loopback, each with its own directory,
certificate and synthetic data; they pin each other's certificates, register their data,
publish its metadata and grant each other its use (which columns, for which purpose, to
whom, how often). A job outside those grants is refused with the reason; the bank's
three-party PSI job runs over mutual TLS under them; then joint statistics by MPC, a SQL
query under the telecom's group-size threshold, and a joint default-risk model (vertical
logistic regression) next to the bank's model alone, a private lookup in the tax bureau's
arrears list (keyword PIR) and a multi-lender count among four lenders. The demo ends by
verifying every node's signed ledger (with the countersigned job records) and printing the
metering report.
Everything happens through the ``rainbridge`` CLI, as a user would type it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.demo.federation import Federation

ROOT = Path(__file__).resolve().parents[3]
DATASETS = {"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"}


#: the grants each owner gives: (dataset owner, peer, columns, receivers, quota). PSI joins
#: on the id column only; the bank and the telecom also let each other compute joint
#: statistics (``stats``) on a few columns, with the tax bureau as the MPC dealer.
GRANTS = [
    ("bank", "telecom", "customer_id,monthly_income,age", "bank,telecom", 10),
    ("bank", "tax", "customer_id", "bank,telecom", 10),
    ("telecom", "bank", "customer_id,monthly_spend,prepaid", "bank,telecom", 10),
    ("telecom", "tax", "customer_id", "bank,telecom", 10),
    ("tax", "bank", "customer_id", "bank,telecom", 5),
    ("tax", "telecom", "customer_id", "bank,telecom", 5),
]

REFUSED_JOB = """name: telecom-spend-to-tax
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
      tax: {dataset: taxpayers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, tax]
"""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _governance(fed: Federation, base: Path) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    print("5. each owner grants the others the use of its data: columns, purpose (psi),")
    print("   who may receive outputs, a quota and an expiry; the tax bureau publishes metadata")
    for owner, peer, cols, receivers, calls in GRANTS:
        g = fed.cli_json(
            "grant",
            "add",
            DATASETS[owner],
            "--peer",
            peer,
            "--columns",
            cols,
            "--components",
            "psi,stats" if peer != "tax" and owner != "tax" else "psi",
            "--receivers",
            receivers,
            "--max-calls",
            str(calls),
            "--expires",
            expires,
            node=owner,
        )
        print(f"   {owner:8} {g['id']}  {DATASETS[owner]:12} -> {peer:8} columns {cols}")
    fed.cli(
        "dataset",
        "publish",
        "taxpayers",
        "--columns",
        "customer_id,annual_taxable_income,tax_paid",
        "--description",
        "registered taxpayers, one row per person",
        "--show-rows",
        node="tax",
    )
    (entry,) = fed.cli_json("catalogue", "tax", node="bank")
    print(
        f"   the bank browses the tax bureau's catalogue: {entry['name']} "
        f"({entry['num_rows']:,} rows; columns {', '.join(entry['columns'])}) — no rows"
    )
    bad = base / "refused-job.yaml"
    bad.write_text(REFUSED_JOB)
    r = fed.cli("job", "submit", str(bad), node="bank", check=False)
    print("6. a job outside the grants (the intersection sent to the tax bureau) is refused:")
    print(f"   {r.stderr.strip().removeprefix('error: ')[:300]}")


def _statistics(fed: Federation) -> bool:
    job = ROOT / "examples" / "jobs" / "stats-2party.yaml"
    print(f"\n8. the bank submits {job.name}: PSI with the telecom, then joint statistics (MPC)")
    print("   of its income and the telecom's spend, the tax bureau dealing the randomness;")
    print("   only the bank learns the result")
    t0 = time.perf_counter()
    r = fed.cli("job", "submit", str(job), "--json", node="bank", check=False)
    if r.returncode != 0:
        print(f"the statistics job did not succeed: {r.stderr.strip()}", file=sys.stderr)
        return False
    job_id = json.loads(r.stdout)["id"]
    res = fed.cli_json("job", "result", job_id, node="bank")["result"]["components"]["stats"]
    wall = time.perf_counter() - t0
    rows = {
        (x["statistic"], x["column"], x["column2"], x["group"]): x["value"] for x in res["result"]
    }
    cols = ["monthly_income", "age", "monthly_spend"]
    print(f"   {'column':16} {'count':>8} {'mean':>12} {'std':>12}")
    for c in cols:
        print(
            f"   {c:16} {rows[('count', c, '', '')]:8,.0f} {rows[('mean', c, '', '')]:12,.2f} "
            f"{rows[('std', c, '', '')]:12,.2f}"
        )
    corr = rows[("corr", "monthly_income", "monthly_spend", "")]
    print(f"   correlation of the bank's income with the telecom's spend: {corr:.3f}")
    for g, label in ((0, "postpaid"), (1, "prepaid")):  # group keys keep their type
        if ("count", "", "", g) in rows:
            print(
                f"   telecom {label:8}: {rows[('count', '', '', g)]:7,.0f} customers, mean "
                f"income {rows[('mean', 'monthly_income', '', g)]:10,.2f}"
            )
    print(f"   {wall:.1f} s from submit to result")
    return True


SQL = (
    "SELECT t.prepaid, COUNT(*) AS customers, AVG(b.monthly_income) AS avg_income, "
    "SUM(b.monthly_income) AS total_income "
    "FROM bank.customers b JOIN telecom.subscribers t ON b.customer_id = t.customer_id "
    "WHERE b.age >= 30 AND t.monthly_spend < 250 GROUP BY t.prepaid"
)


def _sql(fed: Federation) -> bool:
    print("\n9. the telecom's owner requires groups of at least 50 customers in any grouped")
    print("   result over its data; the bank's analyst asks in SQL (each WHERE applied by the")
    print("   column's owner before the join):")
    fed.cli("dataset", "policy", "subscribers", "--min-group-size", "50", node="telecom")
    refused = fed.cli("sql", SQL, "--dealer", "tax", node="bank", check=False)
    if refused.returncode == 0:
        print("a query under the owner's threshold was not refused", file=sys.stderr)
        return False
    print(f"   with the default group size: {refused.stderr.strip().removeprefix('error: ')[:160]}")
    print(f"   {SQL}")
    r = fed.cli("sql", SQL, "--dealer", "tax", "--min-group-size", "50", node="bank", check=False)
    if r.returncode != 0:
        print(f"the SQL query failed: {r.stderr.strip()}", file=sys.stderr)
        return False
    print("\n".join(f"   {line}" for line in r.stdout.rstrip().splitlines()))
    return True


LR_GRANTS = [
    ("bank", "telecom", "customer_id,age,monthly_income,loan_balance,max_overdue_days,default_12m"),
    ("telecom", "bank", "customer_id,tenure_months,monthly_spend,late_payments_12m,prepaid"),
]


def _model(fed: Federation, base: Path) -> bool:
    from rainbridge.protocols.fl.fedavg import FedAvgParams, Model
    from rainbridge.protocols.fl.metrics import auc, ks

    print("\n10. the bank and the telecom grant each other a joint model (train_lr) on a few")
    print("    columns; the bank trains a default-risk model with the telecom's features,")
    print("    each keeping the weights of its own, the tax bureau dealing the randomness")
    for owner, peer, cols in LR_GRANTS:
        fed.cli(
            "grant",
            "add",
            DATASETS[owner],
            "--peer",
            peer,
            "--columns",
            cols,
            "--components",
            "psi,train_lr",
            "--receivers",
            "bank,telecom",
            node=owner,
        )
    job = base / "lr-job.yaml"
    text = (ROOT / "examples" / "jobs" / "lr-2party.yaml").read_text()
    job.write_text(
        text.replace("batch_size: 256", "batch_size: 2048").replace(
            "learning_rate: 0.1", "learning_rate: 0.5"
        )
    )
    t0 = time.perf_counter()
    r = fed.cli("job", "submit", str(job), "--json", node="bank", check=False)
    if r.returncode != 0:
        print(f"the model job did not succeed: {r.stderr.strip()}", file=sys.stderr)
        return False
    job_id = json.loads(r.stdout)["id"]
    res = fed.cli_json("job", "result", job_id, node="bank")["result"]["components"]
    metrics = res["lr"]["result"]
    wall = time.perf_counter() - t0
    # the bank alone: the same model on its own columns of the same rows, in plaintext
    import pyarrow.parquet as pq

    inter = pq.read_table(res["psi"]["outputs"]["intersection"]["path"])
    feats = ["age", "monthly_income", "loan_balance", "max_overdue_days"]
    x = np.column_stack([inter.column(c).to_numpy().astype(float) for c in feats])
    x = (x - x.mean(0)) / x.std(0)
    y = inter.column("default_12m").to_numpy().astype(float)
    params = FedAvgParams(local_epochs=5, batch_size=2048, learning_rate=0.5)
    m = Model(len(feats), params)
    th = m.local_train(m.init(), x, y, np.random.default_rng(1))
    alone = m.score(th, x)
    print(f"    {'model':28} {'AUC':>6} {'KS':>6}")
    print(f"    {'bank + telecom (joint)':28} {metrics['auc']:6.3f} {metrics['ks']:6.3f}")
    print(f"    {'bank alone':28} {auc(alone, y):6.3f} {ks(alone, y):6.3f}")
    print(f"    {int(metrics['rows']):,} aligned customers, {wall:.1f} s from submit to model")
    return True


SGB_GRANTS = [
    ("bank", "telecom", "customer_id,age,monthly_income,loan_balance,max_overdue_days,default_12m"),
    ("telecom", "bank", "customer_id,tenure_months,monthly_spend,late_payments_12m,prepaid"),
]


def _secureboost(fed: Federation, base: Path) -> bool:
    import asyncio

    import pyarrow.parquet as pq

    from rainbridge.protocols.fl.metrics import auc, ks
    from rainbridge.protocols.fl.secureboost import SgbParams, train_label

    print("\n11. RR22 PSI (OT-based) aligns bank and telecom; then SecureBoost: the bank")
    print("    encrypts gradients under its own key (2048-bit Okamoto-Uchiyama); the telecom")
    print("    sums them over its bins without seeing them")
    for owner, peer, cols in SGB_GRANTS:
        fed.cli(
            "grant",
            "add",
            DATASETS[owner],
            "--peer",
            peer,
            "--columns",
            cols,
            "--components",
            "psi,train_sgb,predict",
            "--receivers",
            "bank,telecom",
            node=owner,
        )
    job = base / "sgb-job.yaml"
    job.write_text((ROOT / "examples" / "jobs" / "sgb-2party.yaml").read_text())
    t0 = time.perf_counter()
    r = fed.cli("job", "submit", str(job), "--json", node="bank", check=False)
    if r.returncode != 0:
        print(f"the SecureBoost job did not succeed: {r.stderr.strip()}", file=sys.stderr)
        return False
    job_id = json.loads(r.stdout)["id"]
    res = fed.cli_json("job", "result", job_id, node="bank")["result"]["components"]
    metrics = res["sgb"]["result"]
    wall = time.perf_counter() - t0
    # the bank alone: the same boosting on its own columns of the same rows
    inter = pq.read_table(res["psi"]["outputs"]["intersection"]["path"])
    feats = ["age", "monthly_income", "loan_balance", "max_overdue_days"]
    x = np.column_stack([inter.column(c).to_numpy().astype(float) for c in feats])
    y = inter.column("default_12m").to_numpy().astype(float)
    params = SgbParams(trees=10, max_depth=4, learning_rate=0.3, max_bin=32, subsample=0.8)
    alone = asyncio.run(train_label({}, x, y, params, me="bank")).train_scores
    assert alone is not None
    print(f"    {'model':28} {'AUC':>6} {'KS':>6}")
    print(f"    {'bank + telecom (joint)':28} {metrics['auc']:6.3f} {metrics['ks']:6.3f}")
    print(f"    {'bank alone':28} {auc(alone, y):6.3f} {ks(alone, y):6.3f}")
    print(
        f"    {int(metrics['trees'])} trees, {wall:.1f} s from submit to model "
        f"({metrics['he_seconds']:.1f} s of it in the bank's encryption and decryption)"
    )
    # one applicant scored online: the telecom answers with the leaves its splits allow
    model_id = f"{job_id}.sgb"
    keys = [str(v) for v in inter.column("customer_id").slice(0, 7).to_pylist()]
    outs = [fed.cli_json("model", "predict", model_id, "--key", k, node="bank") for k in keys]
    ms = sorted(o["milliseconds"] for o in outs[1:])  # the first call loads the lookups
    print(
        f"12. the bank scores applicant {keys[0]} online with the joint model: "
        f"{outs[0]['score']:.3f}; median {ms[len(ms) // 2]:.1f} ms per applicant"
    )
    return True


def _blacklist(fed: Federation, base: Path, paths: dict[str, Path]) -> bool:
    """The tax bureau's arrears list as a PIR service; the bank checks applicants privately."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    tax = pacsv.read_csv(
        paths["tax"], convert_options=pacsv.ConvertOptions(column_types={"customer_id": "string"})
    )
    arrears = tax.filter(pc.equal(tax.column("tax_arrears"), 1)).select(
        ["customer_id", "years_filed", "business_owner"]
    )
    path = base / "data" / "tax" / "arrears.csv"
    pacsv.write_csv(arrears, path)
    print("\n13. the tax bureau publishes its tax-arrears list as a PIR service (匿踪查询) and")
    print("    grants the bank its use; the bank checks applicants without revealing whom")
    fed.cli("dataset", "add", "arrears", "--path", str(path), "--id", "customer_id", node="tax")
    pub = fed.cli_json(
        "pir",
        "publish",
        "arrears",
        "--dataset",
        "arrears",
        "--labels",
        "years_filed,business_owner",
        "--rate",
        "20",
        node="tax",
    )
    fed.cli(
        "grant",
        "add",
        "arrears",
        "--peer",
        "bank",
        "--columns",
        "*",
        "--components",
        "pir",
        "--receivers",
        "bank",
        "--max-calls",
        "1000",
        node="tax",
    )
    listed = arrears.column("customer_id").to_pylist()
    clean = [x for x in tax.column("customer_id").to_pylist()[:500] if x not in set(listed)]
    asked = [listed[0], clean[0], listed[1]]
    out = fed.cli_json(
        "pir",
        "query",
        "arrears",
        "--peer",
        "tax",
        *[a for x in asked for a in ("--id", x)],
        node="bank",
    )
    for r in out["results"]:
        what = f"in arrears {r['label']}" if r["found"] else "not listed"
        print(f"    {r['id']}: {what}")
    if [r["found"] for r in out["results"]] != [True, False, True]:
        print("the arrears lookup gave a wrong answer", file=sys.stderr)
        return False
    print(
        f"    {pub['rows']:,} listed; the bank holds a sealed copy and sent only blinded "
        f"elements; {out['milliseconds']:.0f} ms for the three (first query copies the list)"
    )
    return True


def _multi_lender(fed: Federation, base: Path, paths: dict[str, Path]) -> bool:
    """Four lenders and an operator: how many other lenders did an applicant apply to?"""
    import pyarrow.csv as pacsv

    lenders = ["bank", "fintech", "consumer", "microloan"]
    print("\n14. multi-lender query (实时多头): a fintech, a consumer-finance company, a micro-")
    print("    lender and the consortium's operator join; each lender keeps its own recent")
    print("    applications; the bank asks how many others an applicant applied to")
    fed.add_nodes(["fintech", "consumer", "microloan", "operator"])
    rng = np.random.default_rng(14)
    people = (
        pacsv.read_csv(
            paths["bank"],
            convert_options=pacsv.ConvertOptions(column_types={"customer_id": "string"}),
        )
        .column("customer_id")
        .to_pylist()
    )
    end = dt.date(2026, 12, 1)
    applied: dict[str, set[str]] = {}
    for i, lender in enumerate(lenders):
        who = list(rng.choice(people[:4000], size=1500, replace=False))
        if i:
            who.append(people[0])  # people[0] shopped around: three other lenders
        days = rng.integers(0, 90, size=len(who))
        days[-1] = 1
        path = base / "data" / f"{lender}-applications.csv"
        path.write_text(
            "customer_id,applied_on\n"
            + "".join(
                f"{p},{(end - dt.timedelta(days=int(d))).isoformat()}\n"
                for p, d in zip(who, days, strict=True)
            )
        )
        applied[lender] = {p for p, d in zip(who, days, strict=True) if d < 30}
        fed.cli(
            "dataset",
            "add",
            "applications",
            "--path",
            str(path),
            "--id",
            "customer_id",
            node=lender,
        )
        fed.cli(
            "mlq",
            "join",
            "credit30",
            "--lenders",
            ",".join(lenders),
            "--merger",
            "operator",
            "--dataset",
            "applications",
            "--date-column",
            "applied_on",
            node=lender,
        )
    fed.cli(
        "mlq",
        "join",
        "credit30",
        "--lenders",
        ",".join(lenders),
        "--merger",
        "operator",
        node="operator",
    )
    built = fed.cli_json("mlq", "build", "credit30", "--end", end.isoformat(), node="operator")
    print(
        f"    the operator merged the 30-day windows ({built['people']:,} people) in "
        f"{built['seconds']:.1f} s; no one saw another's applicants"
    )
    for who in (people[0], people[1]):
        out = fed.cli_json("mlq", "count", "credit30", "--id", who, node="bank")
        truth = sum(who in applied[x] for x in lenders[1:])
        if out["count"] != truth:
            print(f"multi-lender count {out['count']} != {truth}", file=sys.stderr)
            return False
        print(
            f"    {who}: applied at {out['count']} other lender(s) in 30 days "
            f"({out['milliseconds']:.0f} ms; the others saw a random element)"
        )
    return True


def _audit(fed: Federation, job_id: str) -> bool:
    print("\nAudit")
    deadline = time.monotonic() + 30
    ok = True
    for party in DATASETS:
        # the countersigned record lands once every party has reported and signed
        while True:
            rep = fed.cli_json("ledger", "verify", node=party)
            if rep["job_records"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        state = "intact" if rep["ok"] else f"FAILED: {rep['problems'][:3]}"
        ok &= bool(rep["ok"]) and rep["job_records"] >= 1
        print(
            f"  ledger of {party:8} {rep['entries']:3} signed entries, "
            f"{rep['job_records']} job records countersigned by every party: {state}"
        )
    print("\nMetering (per peer, grant and component, at each node)")
    for party in DATASETS:
        rep = fed.cli_json("metering", "report", node=party)
        for line in rep["lines"]:
            print(
                f"  {party:8} used by {line['peer']:8} {line['component_type']:8} "
                f"grant {line['grant_id'] or '-':15} "
                f"{line['calls']} call(s), {line['rows']:,} rows, {_mib(line['bytes'])}, "
                f"{line['cpu_seconds']:.2f} CPU s"
            )
    _ = job_id
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rainbridge.demo", description=__doc__)
    ap.add_argument("--dir", default="demo-run", help="where the nodes and data go")
    ap.add_argument("--bank-rows", type=int, default=200_000)
    ap.add_argument("--job", default=str(ROOT / "examples" / "jobs" / "psi-3party.yaml"))
    args = ap.parse_args(argv)
    base = Path(args.dir).resolve()
    if base.exists():
        shutil.rmtree(base)
    t0 = time.perf_counter()
    scale = args.bank_rows / 200_000
    sizes = DemoSizes(
        population=int(300_000 * scale),
        bank=args.bank_rows,
        telecom=int(150_000 * scale),
        tax=int(100_000 * scale),
    )
    print(f"1. synthetic data for the bank, the telecom operator and the tax bureau -> {base}")
    paths = write_demo_data(base / "data", sizes)
    fed = Federation(base, ["bank", "telecom", "tax"], timeout=60)
    print("2. three nodes: key pair, self-signed certificate, API token each; starting them")
    fed.start()
    try:
        for n, node in fed.nodes.items():
            print(
                f"   {n:8} data plane {node.info['data_plane']:22} {node.info['fingerprint'][:16]}…"
            )
        print("3. each node pins the others' certificate fingerprints (mutual TLS 1.3)")
        fed.pin_all()
        print("4. each registers its own data (read in place, never copied or sent)")
        rows: dict[str, int] = {}
        for party, ds in DATASETS.items():
            out = fed.cli_json(
                "dataset",
                "add",
                ds,
                "--path",
                str(paths[party]),
                "--id",
                "customer_id",
                node=party,
            )
            rows[party] = out["num_rows"]
            print(f"   {party:8} {ds:12} {out['num_rows']:>8,} rows  {len(out['columns'])} columns")
        _governance(fed, base)
        print(f"7. the bank submits {Path(args.job).name}: every party checks its grants, accepts")
        t_job = time.perf_counter()
        r = fed.cli("job", "submit", args.job, node="bank", check=False)
        wall = time.perf_counter() - t_job
        for line in r.stderr.splitlines():
            if line.startswith("job "):
                print(f"   {line}")
        if r.returncode != 0:
            print(
                f"the job did not succeed: {r.stdout.strip()} {r.stderr.strip()}", file=sys.stderr
            )
            return 1
        job_id = r.stdout.split()[1].rstrip(":")
        results = {}
        for party in DATASETS:
            deadline = time.monotonic() + 30
            while fed.cli_json("job", "status", job_id, node=party)["status"] != "succeeded":
                if time.monotonic() > deadline:
                    print(f"{party} did not finish", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            results[party] = fed.cli_json("job", "result", job_id, node=party)["result"]
        psi = results["bank"]["components"]["psi"]
        print("\nReport")
        print(f"  job {job_id}  ECDH-PSI over {psi['stats']['curve']}, 3 parties, semi-honest")
        print("  input rows      " + ", ".join(f"{p} {n:,}" for p, n in rows.items()))
        print(f"  intersection    {psi['intersection_size']:,} customers known to all three")
        print(f"  wall time       {wall:.1f} s for the job (submit to result)")
        for party, res in results.items():
            comp = res["components"]["psi"]
            where = comp.get("outputs", {}).get("intersection")
            dest = f"{where['rows']:,} rows -> {where['path']}" if where else "size only"
            print(
                f"  {party:8} sent {_mib(res['bytes_sent']):>10}, received "
                f"{_mib(res['bytes_received']):>10}; {dest}"
            )
        if not _statistics(fed):
            return 1
        if not _sql(fed):
            return 1
        if not _model(fed, base):
            return 1
        if not _secureboost(fed, base):
            return 1
        if not _blacklist(fed, base, paths):
            return 1
        if not _multi_lender(fed, base, paths):
            return 1
        if not _audit(fed, job_id):
            print("a ledger did not verify", file=sys.stderr)
            return 1
        print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s; nodes stopping")
    finally:
        fed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
