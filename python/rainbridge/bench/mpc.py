"""``python -m rainbridge.bench mpc``: secure multiplications and comparisons per second, two
parties and a dealer as three processes over loopback mutual TLS 1.3."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rainbridge.bench.common import PY, machine, median
from rainbridge.bench.psi import PEER_SCRIPTS, ROOT, peers_python
from rainbridge.crypto.certs import create_identity


def run_mpyc(n: int, nfx: int, ncmp: int, timeout: float) -> dict[str, Any]:
    """MPyC, three processes on loopback (its own transport), party 0's JSON line."""
    py = peers_python()
    if not py.exists():
        return {"error": "peer environment missing (run `make bench-peers`)"}
    env = {**os.environ, "BENCH_N": str(n), "BENCH_NFX": str(nfx), "BENCH_NCMP": str(ncmp)}
    script = str(PEER_SCRIPTS / "mpyc_run.py")
    procs = [
        subprocess.Popen(
            [str(py), script, "-M3", f"-I{i}", "--no-log"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in (1, 2, 0)
    ]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        return {"error": f"timed out after {timeout:g} s"}
    out, err = outs[-1]
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if procs[-1].returncode or not lines:
        return {"error": (err.strip().splitlines() or ["failed"])[-1][:300]}
    return dict(json.loads(lines[-1]))


def _run_script(py: Path, script: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    if not py.exists():
        return {"error": f"peer environment missing ({py.parent.parent.name})"}
    try:
        proc = subprocess.run(
            [str(py), str(PEER_SCRIPTS / script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return dict(json.loads(lines[-1]))


def crypten_python() -> Path:
    """CrypTen's interpreter (``make bench-crypten`` makes ``.venv-crypten``)."""
    override = os.environ.get("RAINBRIDGE_CRYPTEN_PYTHON")
    return Path(override) if override else ROOT / ".venv-crypten" / "bin" / "python"


def run_spu(n: int, ncmp: int, timeout: float) -> dict[str, Any]:
    """SPU's simulator: two SEMI2K parties as threads in one process (no network)."""
    env = {"BENCH_N": str(n), "BENCH_NCMP": str(ncmp)}
    return _run_script(peers_python(), "spu_mpc_run.py", env, timeout)


def run_crypten(n: int, ncmp: int, timeout: float) -> dict[str, Any]:
    """CrypTen: two processes over gloo on loopback TCP (no TLS)."""
    env = {"BENCH_N": str(n), "BENCH_NCMP": str(ncmp)}
    return _run_script(crypten_python(), "crypten_run.py", env, timeout)


async def _in_process(n: int, reps: int, n_cmp: int, group_rows: int) -> dict[str, Any]:
    """The same workload with the three roles in this process over in-memory channels (no
    TLS, one core): what the protocol costs before transport and process boundaries."""
    import asyncio

    import numpy as np

    from rainbridge.bench.mpc_party import workload
    from rainbridge.net.local import LocalChannel
    from rainbridge.protocols.mpc import (
        DealerClient,
        Mpc,
        SeedProvider,
        receive_seed,
        run_dealer,
    )
    from rainbridge.protocols.mpc.stats import group_sums

    async def session(program: Any) -> list[Any]:
        mesh = LocalChannel.mesh("bench", ["p0", "p1", "dealer"], timeout=600)

        async def party(i: int) -> Any:
            me = f"p{i}"
            seed = await receive_seed(mesh[me]["dealer"])
            provider = SeedProvider(seed) if i == 0 else DealerClient(seed, mesh[me]["dealer"])
            mpc = Mpc(i, mesh[me][f"p{1 - i}"], provider)
            out = await program(mpc)
            await mpc.close()
            return out

        dealer = asyncio.create_task(run_dealer(mesh["dealer"]["p0"], mesh["dealer"]["p1"]))
        res = await asyncio.gather(party(0), party(1))
        await dealer
        return list(res)

    r0, r1 = await session(lambda m: workload(m, n, reps, n_cmp))
    out: dict[str, Any] = {
        "fixed_point_mul_per_s": round(n * reps / max(r0["mul_seconds"], r1["mul_seconds"])),
        "comparisons_per_s": round(n_cmp / max(r0["cmp_seconds"], r1["cmp_seconds"])),
    }
    if group_rows:
        rng = np.random.default_rng(1)
        keys = rng.integers(0, 5, group_rows)
        vals = rng.integers(0, 10_000, (group_rows, 1))

        async def grouped(m: Any) -> float:
            t0 = time.perf_counter()
            await group_sums(
                m,
                key_party=0,
                keys=keys if m.party == 0 else None,
                groups=list("abcde"),
                values=vals if m.party == 1 else None,
                value_shape=vals.shape,
                receiver=0,
            )
            return time.perf_counter() - t0

        t = await session(grouped)
        out["group_by_rows"] = group_rows
        out["group_by_seconds"] = round(max(t), 3)
    return out


def _start(role: str, keys: Path, extra: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "rainbridge.bench.mpc_party", "--role", role, "--keys", str(keys), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _port(p: subprocess.Popen[str]) -> int:
    assert p.stdout is not None
    line = p.stdout.readline()
    try:
        return int(json.loads(line)["port"])
    except (ValueError, KeyError):
        err = p.stderr.read() if p.stderr else ""
        raise RuntimeError(f"a party did not start: {line or err[-300:]}") from None


def run_once(
    keys: Path, work: list[str], timeout: float, setup: str = "dealer", source: str = "iknp"
) -> dict[str, Any]:
    procs: list[subprocess.Popen[str]] = []
    try:
        if setup == "ot":  # two processes, no dealer
            ot = ["--setup", "ot", "--ot-source", source]
            p1 = _start("p1", keys, [*ot, *work])
            procs.append(p1)
            peer = _port(p1)
            procs.append(_start("p0", keys, [*ot, "--peer-port", str(peer), *work]))
        else:
            dealer = _start("dealer", keys, [])
            procs.append(dealer)
            d1 = _port(dealer)
            p1 = _start("p1", keys, ["--dealer-port", str(d1), *work])
            procs.append(p1)
            d0 = _port(dealer)
            peer = _port(p1)
            p0 = _start("p0", keys, ["--dealer-port", str(d0), "--peer-port", str(peer), *work])
            procs.append(p0)
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode:
                return {"error": (err.strip().splitlines() or ["failed"])[-1][:300]}
            outs.append(json.loads(out.strip().splitlines()[-1]))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)[:300]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if setup == "ot":
        outs = [{"bytes_sent": 0}, *outs]
    dealer_out, r1, r0 = outs
    if "sgb_seconds" in r0:
        return {
            "seconds": max(r0["sgb_seconds"], r1["sgb_seconds"]),
            "he_seconds_label": r1.get("he_seconds"),
            "phases": {"p0": r0.get("phases"), "p1": r1.get("phases")},
            "trees": r1["trees"],
            "train_auc": r1.get("train_auc"),
            "bytes_p0_to_p1": r0["bytes_sent"],
            "bytes_p1_to_p0": r1["bytes_sent"],
            "peak_rss_mib": {"p0": r0["peak_rss_mib"], "p1": r1["peak_rss_mib"]},
        }
    if "lr_seconds" in r0:
        return {
            "seconds": max(r0["lr_seconds"], r1["lr_seconds"]),
            "epochs_run": r1["epochs_run"],
            "train_auc": r1.get("train_auc"),
            "true_auc": r1.get("true_auc"),
            "bytes_p0_to_p1": r0["bytes_sent"],
            "bytes_p1_to_p0": r1["bytes_sent"],
            "dealer_bytes": dealer_out["bytes_sent"],
            "peak_rss_mib": {"p0": r0["peak_rss_mib"], "p1": r1["peak_rss_mib"]},
        }
    if "group_seconds" in r0:
        return {
            "seconds": max(r0["group_seconds"], r1["group_seconds"]),
            "max_abs_error": r0["max_abs_error"],
            "counts_match": bool(r0["counts_match"]),
            "bytes_p0_to_p1": r0["bytes_sent"],
            "bytes_p1_to_p0": r1["bytes_sent"],
            "dealer_bytes": dealer_out["bytes_sent"],
            "peak_rss_mib": {"p0": r0["peak_rss_mib"], "p1": r1["peak_rss_mib"]},
        }
    phases = {
        f"{phase}_{what}": r0[f"{phase}_{what}"] + r1[f"{phase}_{what}"]
        for phase in ("mul", "cmp", "cmp32", "sort")
        for what in ("bytes_sent", "random_ots")
        if f"{phase}_{what}" in r0 and f"{phase}_{what}" in r1
    }
    return {
        "mul_seconds": max(r0["mul_seconds"], r1["mul_seconds"]),
        "cmp_seconds": max(r0["cmp_seconds"], r1["cmp_seconds"]),
        "cmp32_seconds": max(r0["cmp32_seconds"], r1["cmp32_seconds"]),
        **phases,
        **(
            {"sort_seconds": max(r0["sort_seconds"], r1["sort_seconds"])}
            if "sort_seconds" in r0
            else {}
        ),
        "bytes_p0_to_p1": r0["bytes_sent"],
        "bytes_p1_to_p0": r1["bytes_sent"],
        "dealer_bytes": dealer_out["bytes_sent"],
        "peak_rss_mib": {"p0": r0["peak_rss_mib"], "p1": r1["peak_rss_mib"]},
        **({"ot_setup_seconds": r0["ot_setup_seconds"]} if "ot_setup_seconds" in r0 else {}),
    }


def _summary(runs: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"ok": False}
    return {
        "ok": len(ok) == len(runs),
        "fixed_point_mul_per_s": round(args.n * args.reps / median([r["mul_seconds"] for r in ok])),
        "comparisons_per_s": round(args.n_cmp / median([r["cmp_seconds"] for r in ok])),
        "comparisons_32bit_per_s": round(args.n_cmp / median([r["cmp32_seconds"] for r in ok])),
        "sort_seconds": round(median([r["sort_seconds"] for r in ok]), 3) if args.n_sort else None,
        **_per_operation(ok, args),
    }


def _per_operation(ok: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """Bytes (both directions) and random OTs per multiplication and per comparison."""
    out: dict[str, Any] = {}
    for phase, count in (("mul", args.n * args.reps), ("cmp", args.n_cmp), ("cmp32", args.n_cmp)):
        for what in ("bytes_sent", "random_ots"):
            key = f"{phase}_{what}"
            if ok and all(key in r for r in ok):
                name = "bytes" if what == "bytes_sent" else "random_ots"
                out[f"{name}_per_{phase}"] = round(median([r[key] for r in ok]) / count, 1)
    return out


def silent_generator(batch: int = 0, repeat: int = 5) -> dict[str, Any]:
    """Random correlated OTs per second of the core's silent generator alone: both roles of
    one direction on this process's threads, in memory (no channel), median of ``repeat``
    batches after the base OTs."""
    from rainbridge import _core
    from rainbridge.protocols.mpc.ot_silent import SILENT_BATCH

    m = batch or SILENT_BATCH
    r, a = _core.SilentCotReceiver.start()
    s = _core.SilentCotSender()
    s.on_matrix(r.on_base(s.on_setup(a)))
    times: list[tuple[float, float]] = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        req = r.request(m)
        trees, _ = s.on_request(req)
        t1 = time.perf_counter()
        r.on_trees(trees)
        times.append((t1 - t0, time.perf_counter() - t1))
        size = len(req) + len(trees)
    snd = median([t[0] for t in times])
    rcv = median([t[1] for t in times])
    return {
        "batch": m,
        "sender_seconds": round(snd, 4),
        "receiver_seconds": round(rcv, 4),
        "cot_per_s_both_roles": round(m / (snd + rcv)),
        "batch_message_bytes": size,
        "bytes_per_cot": round(size / m, 3),
    }


def bench(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rb-mpc-") as tmp:
        keys = Path(tmp)
        for name in ("p0", "p1", "dealer"):
            create_identity(keys / name, name)
        work = ["--n", str(args.n), "--reps", str(args.reps), "--n-cmp", str(args.n_cmp)]
        work += ["--n-sort", str(args.n_sort)]
        runs = []
        # dealer-free: the IKNP source and the dealer run the same workload in the same
        # session, interleaved, so that the ratios share the machine's noise
        baselines: dict[str, list[dict[str, Any]]] = (
            {"ot_iknp": [], "dealer": []} if args.setup == "ot" else {}
        )
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            runs.append(run_once(keys, work, args.timeout, args.setup, "silent"))
            if baselines:
                baselines["ot_iknp"].append(run_once(keys, work, args.timeout, "ot", "iknp"))
                baselines["dealer"].append(run_once(keys, work, args.timeout, "dealer"))
    peers: dict[str, Any] = {}
    wanted = [p.strip() for p in args.peers.split(",")]
    if "mpyc" in wanted:
        peers["mpyc"] = [
            run_mpyc(args.peer_n, args.peer_n_fixed, args.peer_n_cmp, args.timeout)
            for _ in range(args.repeat)
        ]
    if "spu" in wanted:
        peers["spu"] = [run_spu(args.n, args.n_cmp, args.timeout) for _ in range(args.repeat)]
    if "crypten" in wanted:
        peers["crypten"] = [
            run_crypten(args.n, args.n_cmp, args.timeout) for _ in range(args.repeat)
        ]
    in_process = None
    if args.in_process:
        import asyncio

        in_process = asyncio.run(_in_process(args.n, args.reps, args.n_cmp, args.group_rows))
    ok = [r for r in runs if "error" not in r]
    mul_s = median([r["mul_seconds"] for r in ok])
    cmp_s = median([r["cmp_seconds"] for r in ok])
    extra: dict[str, Any] = {}
    if args.setup == "ot":
        extra["per_operation"] = _per_operation(ok, args)
        extra["silent_cot_generator"] = silent_generator()
        extra["baselines"] = {
            name: _summary(rs, args) | {"runs": rs} for name, rs in baselines.items()
        }
    return {
        "benchmark": "mpc",
        "machine": machine(),
        "setup": (
            "two parties + dealer, three processes"
            if args.setup == "dealer"
            else "two parties, no dealer (silent OT; IKNP and the dealer beside it), two processes"
        )
        + ", loopback mutual TLS 1.3, 64-bit ring, 16 fractional bits",
        "n": args.n,
        "reps": args.reps,
        "n_cmp": args.n_cmp,
        "ok": len(ok) == len(runs),
        "rainbridge": {
            "fixed_point_mul_per_s": round(args.n * args.reps / mul_s) if ok else None,
            "comparisons_per_s": round(args.n_cmp / cmp_s) if ok else None,
            "comparisons_32bit_per_s": round(args.n_cmp / median([r["cmp32_seconds"] for r in ok]))
            if ok
            else None,
            "sort_n": args.n_sort,
            "sort_seconds": round(median([r["sort_seconds"] for r in ok]), 3)
            if ok and args.n_sort
            else None,
            "runs": runs,
        },
        **extra,
        "in_process": in_process,
        "peers": {
            name: {
                key: round(median([r[key] for r in rs if key in r]))
                for key in ("integer_mul_per_s", "fixed_point_mul_per_s", "comparisons_per_s")
                if any(key in r for r in rs)
            }
            | {"runs": rs}
            for name, rs in peers.items()
        },
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
