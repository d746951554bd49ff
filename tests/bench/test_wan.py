"""The WAN harness: the delay relay carries bytes intact both ways and adds its delay; a
spec is parsed or refused; and, where this machine lets a test make network namespaces,
the PSI benchmark runs over a shaped link and the namespaces are gone afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from rainbridge.bench.wan import parse_wan


def test_parse_wan() -> None:
    assert parse_wan("1gbit:10ms") == ("1gbit", 10.0)
    assert parse_wan(" 100Mbit:30.5ms") == ("100mbit", 30.5)
    for bad in ("1gbit", "fast:10ms", "1gbit:10s", ""):
        with pytest.raises(ValueError, match="RATE:RTT"):
            parse_wan(bad)


def test_relay_delays_and_keeps_bytes() -> None:
    async def main() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(1 << 16):
                w.write(data)
                await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rainbridge.bench.relay", "--to", f"127.0.0.1:{port}",
            "--delay-ms", "40", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        relay_port = json.loads(await proc.stdout.readline())["port"]
        r, w = await asyncio.open_connection("127.0.0.1", relay_port)
        blob = os.urandom(3 << 20)
        t0 = time.perf_counter()
        w.write(b"x")
        assert await r.readexactly(1) == b"x"
        assert time.perf_counter() - t0 >= 0.08  # 40 ms each way, never less
        w.write(blob)
        assert await r.readexactly(len(blob)) == blob
        w.write_eof()
        assert await r.read() == b""
        w.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        server.close()

    asyncio.run(main())


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")):
        return False
    probe = subprocess.run(["ip", "netns", "add", "rb-probe"], capture_output=True)
    subprocess.run(["ip", "netns", "del", "rb-probe"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and network namespaces")
def test_psi_bench_over_a_shaped_link() -> None:
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    r = subprocess.run(
        [sys.executable, "-m", "rainbridge.bench", "psi", "--protocol", "rr22", "--n", "2000",
         "--wan", "100mbit:20ms"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = json.loads(r.stdout)
    assert out["ok"] is True, out
    link = out["rainbridge"]["link"]
    assert link["rate"] == "100mbit" and link["rtt_ms"] == 20.0
    # at least the round trips of the OT setup, the VOLE and the store: 3 RTTs
    assert out["rainbridge"]["median_seconds"] >= 0.06
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert after == before
