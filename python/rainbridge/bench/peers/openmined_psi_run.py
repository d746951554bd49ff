"""openmined-psi (ECDH over P-256) as a two-party run: server and client in two processes.

Run with the peer environment's Python; never imports rainbridge::

    .venv-peers/bin/python openmined_psi_run.py --a a.csv --b b.csv [--expected K]

Party ``a`` (the first CSV) is the server, party ``b`` the client, which learns the
intersection. The library has no transport of its own, so the two processes exchange its
serialised protobuf messages over a loopback TCP socket (8-byte length, then the message):
the server's setup message and the client's request are computed at the same time, as they
would be between two machines; then the server's response, then the client's intersection.
Prints one JSON line: seconds from connection to result (the slower party), bytes each way,
intersection size and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

HEADER = struct.Struct(">Q")


class Conn:
    """Length-prefixed messages over a socket; a reader thread drains the socket so that two
    sides sending large messages at the same time cannot block each other."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.received = 0
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionError("peer closed the connection")
            got += k
        return bytes(buf)

    def _read(self) -> None:
        try:
            while True:
                (n,) = HEADER.unpack(self._exact(HEADER.size))
                self.inbox.put(self._exact(n))
                self.received += HEADER.size + n
        except (ConnectionError, OSError):
            self.inbox.put(None)

    def send(self, msg: bytes, *, count: bool = True) -> None:
        self.sock.sendall(HEADER.pack(len(msg)) + msg)
        if count:
            self.sent += HEADER.size + len(msg)

    def recv(self) -> bytes:
        msg = self.inbox.get(timeout=3600)
        if msg is None:
            raise ConnectionError("peer closed the connection")
        return msg


def read_ids(path: str) -> list[str]:
    """The ``id`` column of a one-column CSV with a header line."""
    with open(path) as f:
        lines = f.read().split("\n")
    return [x for x in lines[1:] if x]


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def server(items_path: str, num_client: int, ds_name: str, fpr: float) -> dict[str, Any]:
    import private_set_intersection.python as psi

    items = read_ids(items_path)
    ds = {"gcs": psi.DataStructure.GCS, "raw": psi.DataStructure.RAW}[ds_name]
    lst = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": lst.getsockname()[1]}), flush=True)
    sock, _ = lst.accept()
    lst.close()
    conn = Conn(sock)
    t0 = time.perf_counter()
    srv = psi.server.CreateWithNewKey(True)
    conn.send(srv.CreateSetupMessage(fpr, num_client, items, ds).SerializeToString())
    request = psi.Request()
    request.ParseFromString(conn.recv())
    conn.send(srv.ProcessRequest(request).SerializeToString())
    seconds = time.perf_counter() - t0
    # Wait for the client's end so the socket is not torn down under its last read.
    conn.recv()
    sock.close()
    return {
        "role": "server",
        "seconds": round(seconds, 3),
        "bytes_sent": conn.sent,
        "bytes_received": conn.received,
        "peak_rss_mib": peak_rss_mib(),
    }


def client(items_path: str, port: int) -> dict[str, Any]:
    import private_set_intersection.python as psi

    items = read_ids(items_path)
    sock = socket.create_connection(("127.0.0.1", port))
    conn = Conn(sock)
    t0 = time.perf_counter()
    cli = psi.client.CreateWithNewKey(True)
    conn.send(cli.CreateRequest(items).SerializeToString())
    setup = psi.ServerSetup()
    setup.ParseFromString(conn.recv())
    response = psi.Response()
    response.ParseFromString(conn.recv())
    inter = cli.GetIntersection(setup, response)
    seconds = time.perf_counter() - t0
    # Not part of the protocol: only lets the server close after the client has read all.
    conn.send(b"done", count=False)
    sock.close()
    return {
        "role": "client",
        "seconds": round(seconds, 3),
        "intersection": len(inter),
        "bytes_sent": conn.sent,
        "bytes_received": conn.received,
        "peak_rss_mib": peak_rss_mib(),
    }


def last_json(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("{")]
    return dict(json.loads(lines[-1]))


def orchestrate(a: argparse.Namespace) -> dict[str, Any]:
    with open(a.b) as f:
        num_client = sum(1 for _ in f) - 1
    me = [sys.executable, __file__, "--ds", a.ds, "--fpr", str(a.fpr)]
    srv = subprocess.Popen(
        [*me, "--role", "server", "--a", a.a, "--num-client", str(num_client)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert srv.stdout is not None
    first = srv.stdout.readline()
    try:
        port = json.loads(first)["port"]
    except (ValueError, KeyError):
        srv.kill()
        err = srv.stderr.read() if srv.stderr else ""
        return {"error": f"server did not start: {(err or first).strip()[-300:]}"}
    cli = subprocess.Popen(
        [*me, "--role", "client", "--b", a.b, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out_c, err_c = cli.communicate(timeout=a.timeout)
        out_s, err_s = srv.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        cli.kill()
        srv.kill()
        return {"error": f"timed out after {a.timeout:g} s"}
    if cli.returncode or srv.returncode:
        lines = (err_c or err_s).strip().splitlines() or ["failed"]
        return {"error": lines[-1][:300]}
    rc, rs = last_json(out_c), last_json(out_s)
    out: dict[str, Any] = {
        "peer": f"openmined-psi ({a.ds})",
        "seconds": max(rc["seconds"], rs["seconds"]),
        "seconds_by_party": {"a": rs["seconds"], "b": rc["seconds"]},
        "intersection": rc["intersection"],
        "bytes_a_to_b": rs["bytes_sent"],
        "bytes_b_to_a": rc["bytes_sent"],
        "peak_rss_mib": {"a": rs["peak_rss_mib"], "b": rc["peak_rss_mib"]},
    }
    if a.expected >= 0 and out["intersection"] != a.expected:
        out["error"] = f"intersection {out['intersection']} != expected {a.expected}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", help="CSV of party a (server), header line 'id'")
    ap.add_argument("--b", help="CSV of party b (client, learns the intersection)")
    ap.add_argument("--expected", type=int, default=-1, help="known intersection size")
    ap.add_argument(
        "--ds",
        choices=["gcs", "raw"],
        default="gcs",
        help="server setup structure (gcs: the library's default)",
    )
    ap.add_argument("--fpr", type=float, default=1e-9, help="false-positive rate of the setup")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--role", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--num-client", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "server":
        res = server(a.a, a.num_client, a.ds, a.fpr)
    elif a.role == "client":
        res = client(a.b, a.port)
    else:
        if not (a.a and a.b):
            ap.error("--a and --b are required")
        res = orchestrate(a)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
