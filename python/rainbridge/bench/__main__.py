"""Benchmarks, printing JSON: ``python -m rainbridge.bench WHAT ...`` where WHAT is psi,
x25519, governance, mpc, sql, fl, he, predict, datasource, backup or scale.

Never run in the test suite; figures go to docs/BENCHMARKS.md with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rainbridge.bench")
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("psi", help="two-party PSI over loopback mutual TLS, with peers")
    p.add_argument(
        "--protocol",
        choices=["ecdh", "rr22", "ic-ecdh"],
        default="ecdh",
        help="ic-ecdh: the interconnection standard's ECDH-PSI over its gRPC link",
    )
    p.add_argument("--memory-limit-mb", type=int, default=2048, help="rr22: working-memory bound")
    p.add_argument(
        "--variant",
        choices=["plain", "cardinality", "payload"],
        default="plain",
        help="cardinality: size only (ecdh); payload: b's float and string column to a (rr22)",
    )
    p.add_argument(
        "--wan",
        help="RATE:RTT, e.g. 1gbit:10ms: the parties in two network namespaces over a shaped "
        "link (root; peers still run on loopback)",
    )
    p.add_argument("--n", type=int, default=1 << 20, help="items at party a")
    p.add_argument("--m", type=int, default=0, help="items at party b (default: n)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--curve", default="curve25519", choices=["curve25519", "ristretto255"])
    p.add_argument("--batch", type=int, default=1 << 16)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--peers",
        default="none",
        help="comma list: openmined, spu-ecdh, spu-ecdh-fourq, spu-kkrt, spu-rr22",
    )
    p.add_argument("--peer-repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", help="also write the JSON here")
    x = sub.add_parser("x25519", help="core throughput: IFMA, portable, OpenSSL")
    x.add_argument("--n", type=int, default=1 << 18)
    x.add_argument("--repeat", type=int, default=3)
    x.add_argument("--out")
    g = sub.add_parser("governance", help="signed ledger appends and grant checks per job step")
    g.add_argument("--n", type=int, default=5000, help="ledger appends per run")
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--grants", type=int, default=50, help="grants in the table")
    g.add_argument("--suites", default="standard,gm")
    g.add_argument("--out")
    mp = sub.add_parser("mpc", help="secure multiplications and comparisons per second")
    mp.add_argument("--n", type=int, default=1 << 20, help="elements per multiplication")
    mp.add_argument("--reps", type=int, default=3, help="multiplications of n elements")
    mp.add_argument("--n-cmp", type=int, default=1 << 20, help="elements compared")
    mp.add_argument("--n-sort", type=int, default=1 << 14, help="elements sorted obliviously")
    mp.add_argument(
        "--setup", choices=["dealer", "ot"], default="dealer", help="ot: dealer-free, two processes"
    )
    mp.add_argument("--repeat", type=int, default=1)
    mp.add_argument("--peers", default="none", help="comma list: mpyc, spu, crypten")
    mp.add_argument(
        "--in-process", action="store_true", help="also run the roles in one process (no TLS)"
    )
    mp.add_argument("--group-rows", type=int, default=0, help="in process: GROUP BY this many")
    mp.add_argument("--peer-n", type=int, default=1 << 20, help="MPyC integer multiplications")
    mp.add_argument("--peer-n-fixed", type=int, default=20000, help="MPyC fixed-point ones")
    mp.add_argument("--peer-n-cmp", type=int, default=2000, help="MPyC comparisons")
    mp.add_argument("--timeout", type=float, default=600)
    mp.add_argument("--out")
    sq = sub.add_parser("sql", help="two-party GROUP BY with COUNT/SUM/AVG over aligned rows")
    sq.add_argument("--rows", type=int, default=10_000_000)
    sq.add_argument("--groups", type=int, default=5)
    sq.add_argument("--repeat", type=int, default=3)
    sq.add_argument("--setup", choices=["dealer", "ot"], default="dealer")
    sq.add_argument("--timeout", type=float, default=600)
    sq.add_argument("--out")
    sf = sub.add_parser("sqlfuzz", help="generated SQL queries: Rainbridge against DuckDB")
    sf.add_argument("--queries", type=int, default=1000)
    sf.add_argument("--seed", type=int, default=1)
    sf.add_argument("--progress", action="store_true", help="a line of counts every 100")
    sf.add_argument("--out")
    fl = sub.add_parser("fl", help="vertical LR or SecureBoost over loopback TLS")
    fl.add_argument("--model", choices=["lr", "sgb"], default="lr")
    fl.add_argument("--rows", type=int, default=1_000_000)
    fl.add_argument("--trees", type=int, default=10, help="SecureBoost rounds")
    fl.add_argument("--depth", type=int, default=5, help="SecureBoost tree depth")
    fl.add_argument("--features", type=int, default=30)
    fl.add_argument("--epochs", type=int, default=5)
    fl.add_argument("--batch", type=int, default=4096)
    fl.add_argument("--repeat", type=int, default=1)
    fl.add_argument("--setup", choices=["dealer", "ot"], default="dealer")
    fl.add_argument(
        "--ot-source",
        choices=["iknp", "silent"],
        default="iknp",
        help="LR with --setup ot: where the correlated OTs come from",
    )
    fl.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="SecureBoost's engine"
    )
    fl.add_argument("--workers", type=int, default=0, help="engine workers (0: one per CPU)")
    fl.add_argument(
        "--parties", type=int, default=2, help="LR: 3+ runs 2 and N parties in one process"
    )
    fl.add_argument("--timeout", type=float, default=1200)
    fl.add_argument("--out")
    he = sub.add_parser("he", help="homomorphic encryption: our OU beside sf-heu's and phe")
    he.add_argument("--n", type=int, default=4_000, help="rows encrypted (ours, sf-heu)")
    he.add_argument("--n-decrypt", type=int, default=2_000, help="rows decrypted")
    he.add_argument("--n-phe", type=int, default=200, help="values encrypted (phe)")
    he.add_argument("--repeat", type=int, default=3, help="alternating rounds (medians)")
    he.add_argument("--peers", default="heu,phe", help="comma list: heu, phe (or none)")
    he.add_argument("--peers-venv", default=".venv-peers")
    he.add_argument("--heu-venv", default=".venv-heu", help="sf-heu's environment")
    he.add_argument("--out")
    pi = sub.add_parser("pir", help="keyword PIR between two nodes (latency, queries/s)")
    pi.add_argument("--rows", type=int, default=1_000_000, help="IDs in the bureau's table")
    pi.add_argument("--label-bytes", type=int, default=64)
    pi.add_argument("--queries", type=int, default=200, help="single-ID queries per mode")
    pi.add_argument("--mode", choices=["bucket", "lattice"], default="bucket",
                    help="the mode timed beside private mode")  # fmt: skip
    pi.add_argument("--clients", type=int, default=8, help="concurrent callers for queries/s")
    pi.add_argument("--seconds", type=float, default=10.0, help="how long the queries/s run")
    pi.add_argument("--build-rows", type=int, default=0, help="also seal this many in-process")
    pi.add_argument("--bucket-batch", type=int, default=0, help="also time bucket-mode batches")
    pi.add_argument("--batch-runs", type=int, default=5, help="bucket-mode batches timed")
    pi.add_argument("--out")
    vo = sub.add_parser("voprf", help="verifiable OPRF: proving and verifying beside mode 0")
    vo.add_argument("--batches", default="1,64,1024,4096", help="comma list of batch sizes")
    vo.add_argument("--repeat", type=int, default=5, help="alternating rounds (medians)")
    vo.add_argument("--out")
    pl = sub.add_parser("pir-lattice", help="lattice keyword PIR in-process (SimplePIR)")
    pl.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    pl.add_argument("--label-bytes", type=int, default=64, help="sealed label width")
    pl.add_argument("--queries", type=int, default=20, help="IDs looked up (a fifth absent)")
    pl.add_argument("--max-hint-mb", type=float, default=16.0, help="the hint budget (MiB)")
    pl.add_argument("--out")
    ml = sub.add_parser("mlq", help="multi-lender count between five nodes (latency)")
    ml.add_argument("--rows", type=int, default=100_000, help="applications per lender")
    ml.add_argument("--counts", type=int, default=200)
    ml.add_argument("--out")
    pr = sub.add_parser("predict", help="online scoring latency of a joint model (3 nodes)")
    pr.add_argument("--rows", type=int, default=20_000, help="bank and telecom rows")
    pr.add_argument("--calls", type=int, default=200)
    pr.add_argument(
        "--batch",
        type=int,
        default=0,
        help="also score the bank's rows this many times in a batch job (rainbridge model score)",
    )
    pr.add_argument("--out")
    ds = sub.add_parser("datasource", help="datasets read from PostgreSQL, MySQL and Parquet")
    ds.add_argument("--rows", type=int, default=10_000_000)
    ds.add_argument("--pg-url", help="a PostgreSQL database for scratch tables")
    ds.add_argument("--mysql-url", help="a MySQL/MariaDB database for scratch tables")
    ds.add_argument("--candidates", action="store_true", help="also time each driver")
    ds.add_argument("--candidate-rows", type=int, default=1_000_000)
    ds.add_argument("--overlap", type=float, default=0.5, help="PSI: IDs in common")
    ds.add_argument("--memory-limit-mb", type=int, default=2048, help="RR22's working memory")
    ds.add_argument("--skip-psi", action="store_true")
    ds.add_argument("--timeout", type=float, default=3600)
    ds.add_argument("--out")
    bk = sub.add_parser("backup", help="node backup and restore: time, size, peak memory")
    bk.add_argument("--entries", type=int, default=20_000, help="signed ledger entries")
    bk.add_argument("--output-mb", type=int, default=15, help="a job output's size")
    bk.add_argument("--repeat", type=int, default=3)
    bk.add_argument("--timeout", type=float, default=1800)
    bk.add_argument("--out")
    sc = sub.add_parser("scale", help="PSI by bucket pairs on a compute engine, by workers")
    sc.add_argument("--protocol", choices=["rr22", "ecdh"], default="rr22")
    sc.add_argument("--n", type=int, default=1 << 22, help="items at each party")
    sc.add_argument("--overlap", type=float, default=0.5)
    sc.add_argument("--engine", choices=["local", "ray"], default="local")
    sc.add_argument("--workers", default="1,2", help="comma list: worker slots per party")
    sc.add_argument("--bucket-items", type=int, default=1 << 20)
    sc.add_argument("--input", choices=["parquet", "array"], default="parquet")
    sc.add_argument("--repeat", type=int, default=3)
    sc.add_argument("--drop-after-bytes", type=int, default=0, help="b's link drops once")
    sc.add_argument("--timeout", type=float, default=1800, help="per run")
    sc.add_argument("--out")
    args = ap.parse_args(argv)
    if args.what == "mpc" and (args.n_cmp > args.n or args.n_sort > args.n):
        # the comparisons and the sort take the first elements of the n multiplied: more
        # would count elements never compared
        ap.error("--n-cmp and --n-sort must not exceed --n")
    if args.what == "backup":
        from rainbridge.bench.backup import bench
    elif args.what == "scale":
        from rainbridge.bench.scale import bench
    elif args.what == "datasource":
        from rainbridge.bench.datasource import bench
    elif args.what == "he":
        from rainbridge.bench.he import bench
    elif args.what == "pir":
        from rainbridge.bench.pir import bench
    elif args.what == "voprf":
        from rainbridge.bench.voprf import bench
    elif args.what == "pir-lattice":
        from rainbridge.bench.pir_lattice import bench
    elif args.what == "mlq":
        from rainbridge.bench.mlq import bench
    elif args.what == "predict":
        from rainbridge.bench.predict import bench
    elif args.what == "fl" and args.model == "lr" and args.parties > 2:
        from rainbridge.bench.fl_parties import bench_parties as bench
    elif args.what == "fl":
        from rainbridge.bench.fl import bench
    elif args.what == "sql":
        from rainbridge.bench.sql import bench
    elif args.what == "sqlfuzz":
        from rainbridge.bench.sqlfuzz import bench
    elif args.what == "mpc":
        from rainbridge.bench.mpc import bench
    elif args.what == "psi":
        from rainbridge.bench.psi import bench
    elif args.what == "governance":
        from rainbridge.bench.governance import bench
    else:
        from rainbridge.bench.x25519 import bench
    result = bench(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
