"""A TCP relay that holds every chunk for a fixed delay in each direction: the round-trip
half of a shaped WAN link where the kernel has no ``netem`` (the rate half is ``tbf``).

``python -m rainbridge.bench.relay --to HOST:PORT --delay-ms D`` listens on an ephemeral
loopback port, prints ``{"port": N}``, relays one connection and exits when it closes. Each
direction delivers a chunk ``D`` ms after it arrived, in order, so a request and its answer
see ``2·D`` more round trip; the bytes in flight per direction are bounded (64 MiB), as a
real link's are by the TCP window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

_CHUNK = 1 << 18
_IN_FLIGHT = 64 << 20


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    room = asyncio.Semaphore(_IN_FLIGHT // _CHUNK)

    async def read() -> None:
        while True:
            await room.acquire()
            data = await src.read(_CHUNK)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            room.release()
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            dst.write(data)
            await dst.drain()

    await asyncio.gather(read(), write())


async def main_async(to_host: str, to_port: int, delay_ms: float) -> None:
    done = asyncio.Event()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(to_host, to_port)
        d = delay_ms / 1000
        try:
            await asyncio.gather(_pipe(r, uw, d), _pipe(ur, w, d))
        except (ConnectionError, OSError):
            pass
        finally:
            for x in (w, uw):
                x.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    async with server:
        await done.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True, help="HOST:PORT to relay to")
    ap.add_argument("--delay-ms", type=float, required=True, help="added delay each way")
    args = ap.parse_args()
    host, _, port = args.to.rpartition(":")
    asyncio.run(main_async(host, int(port), args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
