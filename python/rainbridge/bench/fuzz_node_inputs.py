"""Decoders of what a node reads from outside, for :mod:`rainbridge.bench.fuzz`: a pinned
peer's control requests, REST request bodies, and dataset files (CSV and Parquet).

Each decoder takes the raw input (bytes) and returns None when the product took it, or raises
a :class:`~rainbridge.errors.RainbridgeError` (a REST body: also pydantic's
``ValidationError``, which the API answers with 422).
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rainbridge.errors import ChannelError, ConfigError, ProtocolViolationError

# -- control requests from a pinned peer --------------------------------------------------------

_PEER = "telecom"
_NODE: Any = None


def _workdir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, True)
    return d


def _node() -> Any:
    """A node "bank" (not started: no listener, no network) that pins ``telecom`` and holds
    one dataset; requests to peers fail at once and no job worker is spawned."""
    global _NODE
    if _NODE is None:
        from rainbridge.data import inspect_dataset
        from rainbridge.node.config import NodeConfig
        from rainbridge.node.keys import init_node_keys
        from rainbridge.node.service import NodeService
        from rainbridge.node.storage import PeerRow

        base = _workdir("rb-fuzz-node-")
        peer = init_node_keys(base / _PEER, _PEER)
        init_node_keys(base / "bank", "bank")
        svc = NodeService(NodeConfig(name="bank", dir=str(base / "bank"), timeout=1,
                                     control_timeout=1))
        svc.storage.put_peer(PeerRow(name=_PEER, host="127.0.0.1", port=1,
                                     fingerprint=peer.identity.fingerprint,
                                     cert_pem=peer.identity.cert_pem))
        (base / "customers.csv").write_text("customer_id,score\nc1,1.5\nc2,2\n")
        svc.storage.put_dataset(inspect_dataset("customers", base / "customers.csv",
                                                "customer_id"))

        async def no_network(peer: str, msg: dict[str, Any]) -> dict[str, Any]:
            raise ChannelError("no network while fuzzing")

        async def no_worker(job_id: str, context: dict[str, Any]) -> None:
            raise ConfigError("no job worker while fuzzing")

        svc.dataplane.request = no_network  # type: ignore[method-assign]
        svc.runner.start = no_worker  # type: ignore[method-assign]
        _NODE = svc
    return _NODE


def decode_control(data: bytes) -> None:
    """A control request (a JSON object) from the pinned peer, as the data plane hands it to
    the node (its ``handle``): the reply must be a JSON object; a refusing reply counts as a
    typed refusal. Work a request spawns (an approval, an abort) runs to its end here."""
    import asyncio

    from rainbridge.bench.fuzz import NotApplicable, _json, _loop

    msg = _json(data)
    if not isinstance(msg, dict):
        raise NotApplicable("the data plane answers a request that is not an object itself")
    svc = _node()

    async def go() -> dict[str, Any]:
        reply = await svc.dataplane.handle(_PEER, msg)
        spawned = asyncio.all_tasks() - {asyncio.current_task()}
        if spawned:
            await asyncio.gather(*spawned)
        return reply  # type: ignore[no-any-return]

    reply = _loop().run_until_complete(go())
    if not isinstance(reply, dict):
        raise AssertionError(f"the node replied {type(reply).__name__}, not an object")
    json.dumps(reply)  # it goes back as JSON
    if reply.get("ok") is False or reply.get("accept") is False:
        raise ProtocolViolationError(str(reply.get("reason", "refused")))


def _control_seeds() -> list[bytes]:
    from rainbridge.jobs.spec import parse_job

    spec = {"name": "j", "parties": ["bank", _PEER], "components": [
        {"id": "psi", "type": "psi", "inputs": {
            "bank": {"dataset": "customers", "id": "customer_id"},
            _PEER: {"dataset": "phones", "id": "customer_id"}}}]}
    digest = parse_job(json.dumps(spec), "fuzz.json").digest()
    job = "fuzzjob1"
    msgs: list[dict[str, Any]] = [
        {"type": "propose", "job_id": job, "spec": spec, "digest": digest},
        {"type": "start", "job_id": job},
        {"type": "approved", "job_id": job},
        {"type": "abort", "job_id": job, "reason": "stop"},
        {"type": "job_report", "job_id": job, "part": {"rows": 1, "digest": "00"}},
        {"type": "countersign", "job_id": job, "record": {"job_id": job, "digest": digest}},
        {"type": "job_record", "job_id": job, "record": {"job_id": job}, "signatures": {}},
        {"type": "rotate_key", "cert_pem": "-----BEGIN CERTIFICATE-----\n",
         "handover_sig": "00ff"},
        {"type": "catalogue"},
        {"type": "ping"},
        {"type": "score", "model": "m", "key": "c1"},
        {"type": "pir_query", "service": "s", "mode": "private", "elements": "AAAA"},
        {"type": "pir_sync", "service": "s", "version": 1, "page": 0},
        {"type": "pir_info", "service": "s"},
        {"type": "mlq_count", "service": "s", "element": "AAAA"},
        {"type": "mlq_eval", "service": "s", "elements": "AAAA"},
    ]
    return [json.dumps(m).encode() for m in msgs]


# -- REST request bodies ---------------------------------------------------------------------------


def _rest_models() -> list[Any]:
    """Every request model of the REST API: the ``...In`` models of its routers' modules."""
    import importlib
    import pkgutil

    from pydantic import BaseModel

    import rainbridge.node as node_pkg

    mods = [importlib.import_module(f"rainbridge.node.{m.name}")
            for m in pkgutil.iter_modules(node_pkg.__path__)
            if m.name == "api" or m.name.endswith("_api")]
    models = [v for mod in mods for k, v in sorted(vars(mod).items())
              if isinstance(v, type) and issubclass(v, BaseModel) and k.endswith("In")
              and v.__module__ == mod.__name__]
    if not models:
        raise RuntimeError("no REST request models found: the fuzzer would test nothing")
    return models


def decode_rest(data: bytes) -> None:
    """A REST request body as the API reads it: the request guard's nesting check, then the
    JSON, then every request model of the API on it; decoded when a model takes it, else
    refused with the first model's ``ValidationError`` (the API's 422)."""
    from pydantic import ValidationError

    from rainbridge.bench.fuzz import NotApplicable
    from rainbridge.node.api_guard import MAX_DEPTH, json_depth

    if json_depth(data) > MAX_DEPTH:
        raise ProtocolViolationError("the body nests too deeply")  # the guard's 422
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NotApplicable("not JSON (the API's 422)") from None
    from rainbridge.data import reading
    from rainbridge.node.owners_api import DatasetIn

    first: ValidationError | None = None
    taken = False
    for model in _rest_models():
        try:
            body = model.model_validate(obj)
            body.model_dump_json()
            taken = True
        except ValidationError as exc:
            first = first or exc
            continue
        if isinstance(body, DatasetIn):  # what the node checks before it opens the file
            reading.encoding_of(body.encoding)
            reading.column_types(body.column_types)
    if not taken and first is not None:
        raise first


def _rest_seeds() -> list[bytes]:
    bodies: list[Any] = [
        {"key": "c1", "features": {"income": 1.5}},
        {"name": "telecom", "url": "127.0.0.1:8701", "fingerprint": "ab" * 32},
        {"name": "d", "path": "/data/d.csv", "id_column": "id", "sensitivity": "secret",
         "column_types": {"amount": "double"}, "encoding": "gb18030"},
        {"name": "d", "path": "d.csv", "encoding": "latin-1\u0000", "column_types": {"": "="}},
        {"columns": ["a", "b"], "publish_rows": True},
        {"min_group_size": 5, "dp_budget": 1.0, "columns": {"a": "join"}},
        {"dataset": "d", "peer": "p", "columns": ["*"], "components": ["psi"],
         "receivers": ["p"], "max_calls": 3, "expires_at": "2030-01-01T00:00:00Z",
         "approval": "manual"},
        {"name": "u", "role": "analyst"},
        {"reason": "no"},
        {"spec": {"name": "j", "parties": ["a", "b"], "components": []}},
        {"name": "s", "dataset": "d", "labels": ["score"], "modes": ["bucket"], "k": 64,
         "max_reply_bytes": 1 << 20},
        {"upsert": [{"id": "1", "score": 2}], "delete": ["3"]},
        {"peer": "p", "ids": ["1", "2"], "mode": "bucket"},
        {"name": "m", "lenders": ["a", "b"], "merger": "c", "window_days": 30,
         "on_change": "rebuild"},
        {"end": "2026-01-31"},
        {"id": "applicant"},
        {"name": "ic", "url": "h:1", "rank": 1, "listen": "0.0.0.0:9", "counter_start": 1},
        {"peer": "ic", "dataset": "d", "receivers": "us", "suites": ["sm2"],
         "output_format": "csv"},
    ]
    return [json.dumps(b).encode() for b in bodies]


# -- dataset files ---------------------------------------------------------------------------------

_DATA_DIR: Path | None = None


def _data_file(suffix: str, data: bytes) -> Path:
    global _DATA_DIR
    if _DATA_DIR is None:
        _DATA_DIR = _workdir("rb-fuzz-data-")
    p = _DATA_DIR / f"input{suffix}"
    p.write_bytes(data)
    return p


def _read_dataset(path: Path, id_column: str | None, **kw: Any) -> None:
    """Register the file as the node does, then read it as jobs do: IDs, typed columns."""
    from rainbridge.data import inspect_dataset
    from rainbridge.data.dataset import read_columns, read_ids

    ref = inspect_dataset("fuzz", path, id_column, **kw)
    if id_column is not None:
        read_ids(ref, missing="keep")
    read_columns(ref, list(ref.columns))


def decode_csv(data: bytes) -> None:
    """A CSV file registered with its first column as the ID column when its header has one
    named ``id``, and with the column type its first line may declare after ``#``."""
    header = data.split(b"\n", 1)[0]
    declared: dict[str, str] = {}
    if header.startswith(b"#"):
        col, _, typ = header[1:].decode("utf-8", "replace").partition("=")
        declared = {col.strip(): typ.strip()}
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    _read_dataset(_data_file(".csv", data), "id" if header.startswith(b"id") else None,
                  column_types=declared or None)


def decode_parquet(data: bytes) -> None:
    """A Parquet file: footer, schema, row groups and pages, read through the product."""
    _read_dataset(_data_file(".parquet", data), "id" if b"id" in data[-512:] else None)


def _csv_seeds() -> list[bytes]:
    return [
        b"id,amount,day,flag\n1,2.5,2024-01-02,true\n2,,2024-01-03,false\n",
        b"id,name\n\"a,b\",\"x\"\"y\"\n\"multi\nline\",z\n",
        b"#amount=int64\nid,amount\n1,7\n2,NA\n",
        b"#day=timestamp[s]\nid,day\n1,2024-01-02 03:04:05\n",
        "id,城市\n1,北京\n".encode("gb18030"),
        b"a;b\n1;2\n",
        b"id\n\n\n",
    ]


def _parquet_seeds() -> list[bytes]:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [
        pa.table({"id": ["1", "2", None], "amount": [1.5, None, 3.0],
                  "n": pa.array([1, 2, 3], pa.int32())}),
        pa.table({"id": pa.array(["a", "b"]).dictionary_encode(),
                  "day": [dt.date(2024, 1, 2), None],
                  "ts": pa.array([0, 1], pa.timestamp("ms"))}),
        pa.table({"x": [[1, 2], []], "s": [{"a": 1}, {"a": None}]}),
        pa.table({"id": pa.array([b"\x00", b"\xff"], pa.binary()),
                  "d": pa.array([1, 2], pa.decimal128(10, 2))}),
    ]
    out = []
    for i, t in enumerate(tables):
        buf = io.BytesIO()
        pq.write_table(t, buf, compression=["none", "snappy", "zstd", "none"][i])
        out.append(buf.getvalue())
    return out
