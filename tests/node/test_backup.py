"""Backup and restore of a node in process: consistency under concurrent writes, what is
left out, and every refusal (tampered, truncated, non-empty target, wrong key, wrong
database), each leaving nothing behind. Real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from node_helpers import make_config

from rainbridge.cli import main
from rainbridge.errors import ConfigError, DataError
from rainbridge.node import backup as backup_mod
from rainbridge.node.backup import MANIFEST, ArchiveError, backup_node
from rainbridge.node.backup_db import pg_env
from rainbridge.node.config import NodeConfig
from rainbridge.node.keys import MASTER_KEY_ENV
from rainbridge.node.ledger import verify_directory
from rainbridge.node.restore import restore_node
from rainbridge.node.service import NodeService
from rainbridge.node.storage import JobRow, Storage


def _node(directory: Path, db_url: str = "") -> NodeService:
    """A node with a few ledger entries, on SQLite in its directory unless ``db_url`` says
    otherwise (explicitly, so that the tests' PostgreSQL mode leaves these on SQLite)."""
    cfg = make_config(directory, "bank")
    cfg.db_url = db_url or f"sqlite:///{directory.resolve() / 'node.db'}"
    cfg.save()
    cfg = NodeConfig.load(directory)
    n = NodeService(cfg)
    for i in range(5):
        n.storage.log("dataset_added", {"dataset": f"d{i}"}, actor="user:alice")
    n.ledger.flush()
    return n


def _job(n: NodeService, job_id: str, status: str, result: dict[str, Any] | None = None) -> None:
    n.storage.put_job(
        JobRow(
            id=job_id,
            name="j",
            spec={"parties": ["bank"]},
            digest="0" * 64,
            initiator="bank",
            status=status,
            result=result,
        )
    )


def _master_hex(d: Path) -> str:
    return (d / "master.key").read_text().strip()


class _Writer:
    """Appends ledger entries and job rows from another thread while a backup runs."""

    def __init__(self, n: NodeService) -> None:
        self.n = n
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.count += 1
            self.n.storage.log("dataset_added", {"dataset": f"w{self.count}"})
            if self.count % 5 == 0:
                _job(self.n, f"w{self.count}", "running")

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeService]:
    n = _node(tmp_path / "bank")
    yield n
    n.storage.engine.dispose()


def _restore_env(monkeypatch: pytest.MonkeyPatch, key: str | None) -> None:
    if key is None:
        monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(MASTER_KEY_ENV, key)


def test_a_backup_under_concurrent_writes_restores_to_its_own_head(
    node: NodeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = node.config.path
    with _Writer(node) as w:
        while w.count < 20:
            time.sleep(0.01)
        res = backup_node(d, tmp_path / "b.tgz")
    m = res.manifest
    assert oct(res.path.stat().st_mode & 0o777) == "0o600"
    assert m["format"] == "rainbridge-node-backup" and m["node"] == "bank"
    assert m["database"]["kind"] == "sqlite" and m["ledger_head"]["seq"] >= 25
    assert node.storage.ledger_tail().seq > m["ledger_head"]["seq"]  # writes went on
    _restore_env(monkeypatch, _master_hex(d))
    out = restore_node(res.path, tmp_path / "restored")
    assert out.master_key == "opened"
    new = tmp_path / "restored"
    # the explicit SQLite URL now names the restored file, not the original
    assert NodeConfig.load(new).db_url == f"sqlite:///{new.resolve() / 'node.db'}"
    rep = verify_directory(new)
    assert rep.ok, rep.problems
    st = Storage(NodeConfig.load(new).database_url)
    tail = st.ledger_tail()
    assert tail is not None
    assert {"seq": tail.seq, "hash": tail.hash} == m["ledger_head"]
    # the restored database is the live one's prefix, entry for entry
    live = {r["entry"]["seq"]: r["hash"] for r in node.storage.ledger_rows()}
    assert all(live[r["entry"]["seq"]] == r["hash"] for r in st.ledger_rows())
    st.engine.dispose()
    # the restored node opens its keys with the master key and goes on appending
    again = NodeService(NodeConfig.load(new))
    assert again.keys.fingerprint == node.keys.fingerprint
    again.storage.log("dataset_added", {"dataset": "after-restore"})
    assert again.ledger.verify(node.keys.fingerprint).ok
    again.storage.engine.dispose()
    assert oct(new.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_master_key_is_never_in_the_archive(node: NodeService, tmp_path: Path) -> None:
    d = node.config.path
    res = backup_node(d, tmp_path / "b.tgz")
    with tarfile.open(res.path) as tar:
        names = tar.getnames()
    assert "node/master.key" not in names and not any("master" in n for n in names)
    assert "master.key (the master key: keep it apart)" in res.left_out
    key_hex = _master_hex(d)
    raw = res.path.read_bytes()
    plain = gzip.decompress(raw)
    for blob in (raw, plain):
        assert key_hex.encode() not in blob and bytes.fromhex(key_hex) not in blob
    # a master key kept elsewhere (master_key_file) is not looked for in the directory
    assert "node/node.key" in names and "node/ledger.key" in names and MANIFEST in names
    # the live database files are not copied as files: the snapshot is in database/
    assert not any(n.startswith("node/node.db") for n in names)


def test_a_master_key_file_named_inside_the_directory_is_left_out(tmp_path: Path) -> None:
    d = tmp_path / "bank"
    n = _node(d)
    os.rename(d / "master.key", d / "secret-master")
    cfg = NodeConfig.load(d)
    cfg.master_key_file = str(d / "secret-master")
    cfg.save()
    res = backup_node(d, tmp_path / "b.tgz")
    with tarfile.open(res.path) as tar:
        assert "node/secret-master" not in tar.getnames()
    n.storage.engine.dispose()



def test_a_relative_master_key_file_is_left_out_however_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the node reads a relative master_key_file from its working directory; backup ran
    # elsewhere must still leave that file out, and the same name in the node directory
    d = tmp_path / "bank"
    n = _node(d)
    (d / "keys").mkdir()
    os.rename(d / "master.key", d / "keys" / "m.key")
    cfg = NodeConfig.load(d)
    cfg.master_key_file = "bank/keys/m.key"  # as read by a node started in tmp_path
    cfg.save()
    (d / "bank" / "keys").mkdir(parents=True)
    shutil.copy(d / "keys" / "m.key", d / "bank" / "keys" / "m.key")
    monkeypatch.chdir(tmp_path)
    res = backup_node(d, tmp_path / "b.tgz")
    key = (d / "keys" / "m.key").read_bytes().strip()
    with tarfile.open(res.path) as tar:
        names = tar.getnames()
        assert "node/keys/m.key" not in names and "node/bank/keys/m.key" not in names
        for m in tar:
            f = tar.extractfile(m)
            assert f is None or key not in f.read()
    n.storage.engine.dispose()

def _rewrite(src: Path, dst: Path, edit: Any) -> None:
    """Copy an archive member by member, ``edit(name, data)`` deciding each one's bytes."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin:
            f = tin.extractfile(info)
            data = f.read() if f is not None else b""
            data = edit(info.name, data)
            if data is None:
                continue
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def _nothing_left(parent: Path, target: str) -> None:
    assert not (parent / target).exists()
    assert [p.name for p in parent.iterdir() if p.name.startswith(f".{target}")] == []


@pytest.mark.parametrize(
    "how",
    ["member edited", "ledger head edited", "member dropped", "member added", "manifest edited"],
)
def test_a_tampered_archive_is_refused_and_leaves_nothing(
    node: NodeService, tmp_path: Path, how: str
) -> None:
    good = backup_node(node.config.path, tmp_path / "b.tgz").path
    bad = tmp_path / "bad.tgz"

    def edit(name: str, data: bytes) -> bytes | None:
        if how == "member edited" and name == "database/node.db":
            return data[:-1] + bytes([data[-1] ^ 1])
        if how == "ledger head edited" and name == "node/ledger.head":
            return data.replace(b'"seq": ', b'"seq": 1')
        if how == "member dropped" and name == "node/api.token":
            return None
        if how == "manifest edited" and name == MANIFEST:
            m = json.loads(data)
            m["members"]["node/api.token"]["sha256"] = "0" * 64
            return json.dumps(m).encode()
        return data

    _rewrite(good, bad, edit)
    if how == "member added":
        with tarfile.open(good) as tin, tarfile.open(bad, "w:gz") as tout:
            for info in tin:
                if info.name == MANIFEST:
                    extra = tarfile.TarInfo("node/planted")
                    extra.size = 3
                    tout.addfile(extra, io.BytesIO(b"bad"))
                tout.addfile(info, tin.extractfile(info))
    with pytest.raises(ArchiveError) as err:
        restore_node(bad, tmp_path / "restored")
    assert isinstance(err.value, DataError)
    _nothing_left(tmp_path, "restored")
    r = CliRunner().invoke(main, ["node", "restore", str(bad), "--dir", str(tmp_path / "r2")])
    assert r.exit_code == 3, r.output
    _nothing_left(tmp_path, "r2")


def test_a_truncated_or_foreign_archive_is_refused(node: NodeService, tmp_path: Path) -> None:
    good = backup_node(node.config.path, tmp_path / "b.tgz").path
    data = good.read_bytes()
    for i, blob in enumerate(
        [data[: len(data) // 2], data[:-10], b"not a backup", gzip.compress(b"x" * 1000)]
    ):
        bad = tmp_path / f"bad{i}.tgz"
        bad.write_bytes(blob)
        with pytest.raises(ArchiveError):
            restore_node(bad, tmp_path / f"r{i}")
        _nothing_left(tmp_path, f"r{i}")
    # a tar of someone else's making: no manifest
    other = tmp_path / "other.tgz"
    with tarfile.open(other, "w:gz") as tar:
        info = tarfile.TarInfo("node/node.toml")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError, match="no manifest"):
        restore_node(other, tmp_path / "r9")
    # a member that would leave the target, or a link, is refused before it is written
    for name, kind in (("node/../../escape", tarfile.REGTYPE), ("node/link", tarfile.SYMTYPE)):
        evil = tmp_path / "evil.tgz"
        with tarfile.open(evil, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(ArchiveError):
            restore_node(evil, tmp_path / "r10")
        assert not (tmp_path.parent / "escape").exists()
        _nothing_left(tmp_path, "r10")
    clash = tmp_path / "clash.tgz"
    with tarfile.open(clash, "w:gz") as tar:
        for name in ("node/a", "node/a/b"):
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="clashes"):
        restore_node(clash, tmp_path / "r11")
    _nothing_left(tmp_path, "r11")


def test_restore_refuses_a_non_empty_folder_and_a_wrong_master_key(
    node: NodeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = backup_node(node.config.path, tmp_path / "b.tgz").path
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        restore_node(good, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    r = CliRunner().invoke(main, ["node", "restore", str(good), "--dir", str(busy)])
    assert r.exit_code == 2 and "not empty" in r.output
    _restore_env(monkeypatch, "11" * 32)
    with pytest.raises(ConfigError, match="does not open"):
        restore_node(good, tmp_path / "wrong")
    _nothing_left(tmp_path, "wrong")
    # an empty folder is fine (and without a master key it says so)
    _restore_env(monkeypatch, None)
    (tmp_path / "empty").mkdir()
    assert restore_node(good, tmp_path / "empty").master_key == "not available"
    assert verify_directory(tmp_path / "empty").ok


def test_restore_a_sqlite_backup_refuses_a_database_url(node: NodeService, tmp_path: Path) -> None:
    good = backup_node(node.config.path, tmp_path / "b.tgz").path
    with pytest.raises(ConfigError, match="SQLite"):
        restore_node(good, tmp_path / "r", "postgresql+psycopg://u@127.0.0.1:1/x")
    _nothing_left(tmp_path, "r")


def test_job_outputs_follow_the_snapshot(node: NodeService, tmp_path: Path) -> None:
    d = node.config.path
    done = d / "outputs" / "jdone"
    done.mkdir(parents=True)
    (done / "psi.intersection.parquet").write_bytes(b"PAR1 result")
    _job(
        node,
        "jdone",
        "succeeded",
        {
            "components": {
                "psi": {
                    "outputs": {"intersection": {"path": str(done / "psi.intersection.parquet")}}
                }
            }
        },
    )
    _job(node, "jrun", "running")
    (d / "jobs" / "jrun" / "staging").mkdir(parents=True)
    (d / "jobs" / "jrun" / "staging" / "partial.parquet").write_bytes(b"half")
    (d / "jobs" / "jrun" / "context.json").write_text("{}")
    (d / "outputs" / "jrun").mkdir()
    (d / "outputs" / "jrun" / "moved-but-not-recorded.parquet").write_bytes(b"x")
    (d / "outputs" / "jlater").mkdir()  # a job newer than the snapshot
    (d / "outputs" / "jlater" / "x.parquet").write_bytes(b"x")
    (d / "run").mkdir(exist_ok=True)
    (d / "node.log").write_text("log line\n")
    res = backup_node(d, tmp_path / "b.tgz")
    names = set(res.manifest["members"])
    assert "node/outputs/jdone/psi.intersection.parquet" in names
    assert "node/jobs/jrun/context.json" in names
    assert not any("staging" in n or "jrun/moved" in n or "jlater" in n for n in names)
    assert "node/node.log" not in names
    restore_node(res.path, tmp_path / "new")
    new = (tmp_path / "new").resolve()
    st = Storage(NodeConfig.load(new).database_url)
    path = st.job("jdone").result["components"]["psi"]["outputs"]["intersection"]["path"]  # type: ignore[index]
    assert path == str(new / "outputs" / "jdone" / "psi.intersection.parquet")
    assert Path(path).read_bytes() == b"PAR1 result"
    st.engine.dispose()
    # without outputs: the results stay, the files do not
    lean = backup_node(d, tmp_path / "lean.tgz", job_outputs=False)
    assert not any(n.startswith("node/outputs/") for n in lean.manifest["members"])
    assert any("--no-job-outputs" in x for x in lean.left_out)
    assert lean.manifest["job_outputs"] is False


def test_backup_refusals(node: NodeService, tmp_path: Path) -> None:
    d = node.config.path
    with pytest.raises(ConfigError, match="outside the node directory"):
        backup_node(d, d / "b.tgz")
    with pytest.raises(ConfigError, match="does not exist"):
        backup_node(d, tmp_path / "missing" / "b.tgz")
    with pytest.raises(ConfigError, match="not a node directory"):
        backup_node(tmp_path / "nowhere", tmp_path / "b.tgz")
    r = CliRunner().invoke(main, ["node", "backup", "--dir", str(d), "--out", str(d / "x.tgz")])
    assert r.exit_code == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not list(d.glob("*.tgz"))


def test_the_cli_prints_the_head_and_the_master_key_reminder(
    node: NodeService, tmp_path: Path
) -> None:
    out = tmp_path / "b.tgz"
    r = CliRunner().invoke(
        main, ["node", "backup", "--dir", str(node.config.path), "--out", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert "master key is NOT in the backup" in r.stderr
    obj = json.loads(r.stdout)
    assert obj["master_key"] == "not included" and obj["ledger_head"]["seq"] == 6
    r = CliRunner().invoke(
        main, ["node", "restore", str(out), "--dir", str(tmp_path / "new"), "--json"]
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["ledger_head"] == obj["ledger_head"] and got["ledger_verified"] is True
    assert got["master_key"] == "not available" and "master key" in r.stderr


def test_the_postgres_password_goes_to_a_private_passfile(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url("postgresql+psycopg://bank:s3cr:et@db.example:5433/node")
    with pg_env(url, tmp_path) as env:
        passfile = Path(env["PGPASSFILE"])
        assert oct(passfile.stat().st_mode & 0o777) == "0o600"
        assert passfile.read_text() == "*:*:*:*:s3cr\\:et\n"
        assert "PGPASSWORD" not in env
        assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == ("db.example", "5433", "bank")
        assert not any("s3cr" in v for k, v in env.items() if k != "PGPASSFILE")
    assert not passfile.exists()


# -- PostgreSQL ----------------------------------------------------------------------------


def test_a_postgres_node_is_backed_up_with_pg_dump_and_restored(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.url(pg_server.create_database("bk"))
    n = _node(tmp_path / "bank", url)
    _job(n, "j1", "succeeded", {"components": {}})
    with _Writer(n) as w:
        while w.count < 20:
            time.sleep(0.01)
        res = backup_node(n.config.path, tmp_path / "b.tgz")
    m = res.manifest
    assert m["database"]["kind"] == "postgresql" and "database/node.pgdump" in m["members"]
    with tarfile.open(res.path) as tar:
        dump = tar.extractfile("database/node.pgdump")
        assert dump is not None and dump.read(5) == b"PGDMP"  # pg_dump's custom format
    assert n.storage.ledger_tail().seq > m["ledger_head"]["seq"]
    # a PostgreSQL backup needs a database to go into, and an empty one
    with pytest.raises(ConfigError, match="PostgreSQL"):
        restore_node(res.path, tmp_path / "r0")
    _nothing_left(tmp_path, "r0")
    with pytest.raises(ConfigError, match="not empty"):
        restore_node(res.path, tmp_path / "r1", url)
    _nothing_left(tmp_path, "r1")
    fresh = pg_server.create_database("restored")
    _restore_env(monkeypatch, _master_hex(n.config.path))
    out = restore_node(res.path, tmp_path / "new", pg_server.url(fresh))
    assert out.master_key == "opened"
    new = tmp_path / "new"
    cfg = NodeConfig.load(new)
    assert cfg.db_url == pg_server.url(fresh)
    rep = verify_directory(new)
    assert rep.ok, rep.problems
    st = Storage(cfg.database_url)
    tail = st.ledger_tail()
    assert tail is not None and {"seq": tail.seq, "hash": tail.hash} == m["ledger_head"]
    assert st.job("j1").status == "succeeded"
    st.engine.dispose()
    n.storage.engine.dispose()


def test_a_failed_postgres_restore_leaves_the_database_empty(
    pg_server: Any, tmp_path: Path
) -> None:
    url = pg_server.url(pg_server.create_database("bk"))
    n = _node(tmp_path / "bank", url)
    res = backup_node(n.config.path, tmp_path / "b.tgz")
    n.storage.engine.dispose()
    bad = tmp_path / "bad.tgz"

    # the manifest claims a head the dump does not hold: found only after pg_restore
    def edit(name: str, data: bytes) -> bytes:
        if name == MANIFEST:
            m = json.loads(data)
            m["ledger_head"]["hash"] = "ab" * 32
            return json.dumps(m).encode()
        return data

    _rewrite(res.path, bad, edit)
    fresh = pg_server.create_database("restored")
    with pytest.raises(ArchiveError, match="ends at"):
        restore_node(bad, tmp_path / "new", pg_server.url(fresh))
    _nothing_left(tmp_path, "new")
    left = pg_server.psql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", fresh
    )
    assert left.strip() == "0"
    # an unreachable server: a clear error, no password echoed
    with pytest.raises(ConfigError, match="check the URL") as err:
        restore_node(res.path, tmp_path / "new", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(err.value)
    _nothing_left(tmp_path, "new")


def test_backups_taken_during_key_rotations_restore_to_working_nodes(
    node: NodeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotations swap the key files and append the hand-over around the snapshot; every
    backup must still hold keys that continue the ledger it holds."""
    import asyncio

    stop = threading.Event()
    rotations = 0

    def rotate() -> None:
        nonlocal rotations
        while not stop.is_set():
            asyncio.run(node.peers.rotate_keys())
            node.storage.log("dataset_added", {"dataset": f"r{rotations}"})
            rotations += 1
            time.sleep(0.05)

    t = threading.Thread(target=rotate)
    t.start()
    try:
        archives = []
        for i in range(4):
            while rotations < i + 1:
                time.sleep(0.01)
            archives.append(backup_node(node.config.path, tmp_path / f"b{i}.tgz"))
    finally:
        stop.set()
        t.join()
    _restore_env(monkeypatch, _master_hex(node.config.path))
    for i, res in enumerate(archives):
        new = tmp_path / f"new{i}"
        assert restore_node(res.path, new).master_key == "opened"
        again = NodeService(NodeConfig.load(new))
        again.storage.log("dataset_added", {"dataset": "after-restore"})
        rep = again.ledger.verify(again.keys.fingerprint)
        assert rep.ok, (i, rep.problems)
        again.storage.engine.dispose()


def test_backup_refuses_mysql_and_an_unreachable_server_without_leaking_the_password(
    node: NodeService, tmp_path: Path
) -> None:
    d = node.config.path
    for url, match in (
        ("mysql+pymysql://u:hunter2@127.0.0.1:1/x", "MySQL"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "check the URL"),
    ):
        cfg = NodeConfig.load(d)
        cfg.db_url = url
        cfg.save()
        with pytest.raises(ConfigError, match=match) as err:
            backup_node(d, tmp_path / "b.tgz")
        assert "hunter2" not in str(err.value)
        r = CliRunner().invoke(
            main, ["node", "backup", "--dir", str(d), "--out", str(tmp_path / "b.tgz")]
        )
        assert r.exit_code == 2 and "hunter2" not in r.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]


def test_a_restore_through_a_linked_folder_names_the_real_directory(
    node: NodeService, tmp_path: Path
) -> None:
    # the node knows its directory resolved: paths rewritten to the link's name would not be
    # rewritten by the next restore, and would name the first restored node's files
    d = node.config.path
    done = d / "outputs" / "jdone"
    done.mkdir(parents=True)
    (done / "out.parquet").write_bytes(b"PAR1 result")
    _job(node, "jdone", "succeeded", {"path": str(done / "out.parquet")})
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    first = restore_node(backup_node(d, tmp_path / "b1.tgz").path, tmp_path / "link" / "n1")
    assert first.directory == (tmp_path / "real" / "n1").resolve()
    again = backup_node(tmp_path / "link" / "n1", tmp_path / "b2.tgz").path
    restore_node(again, tmp_path / "n2")
    new = (tmp_path / "n2").resolve()
    st = Storage(NodeConfig.load(new).database_url)
    try:
        assert st.job("jdone").result == {"path": str(new / "outputs" / "jdone" / "out.parquet")}
    finally:
        st.engine.dispose()


def test_a_full_disk_is_named_as_such_and_leaves_no_partial_archive(
    node: NodeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: Any, **_kw: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile, "copyfileobj", full)
    out = tmp_path / "b.tgz"
    r = CliRunner().invoke(
        main, ["node", "backup", "--dir", str(node.config.path), "--out", str(out)]
    )
    assert r.exit_code == 2, r.output
    assert "No space left on device" in r.output
    assert "changed while" not in r.output  # not a file that changed: trying again won't do
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not out.exists()


def test_a_large_manifest_restores_and_one_too_large_is_refused_at_the_backup(
    node: NodeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a node of ~100,000 files writes a manifest over 16 MiB: its backup must restore
    good = backup_node(node.config.path, tmp_path / "b.tgz").path
    big = tmp_path / "big.tgz"

    def pad(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        m = json.loads(data)
        m["padding"] = "x" * (17 << 20)
        return json.dumps(m).encode()

    _rewrite(good, big, pad)
    assert restore_node(big, tmp_path / "r").directory == (tmp_path / "r").resolve()
    monkeypatch.setattr("rainbridge.node.restore.MANIFEST_MAX", 1 << 20)
    with pytest.raises(ArchiveError, match="manifest over 1 MiB"):
        restore_node(big, tmp_path / "r2")
    _nothing_left(tmp_path, "r2")
    # past what a restore reads, the backup refuses (now, not when it is needed)
    monkeypatch.setattr(backup_mod, "MANIFEST_MAX", 1000)
    with pytest.raises(ConfigError, match="manifest over"):
        backup_node(node.config.path, tmp_path / "huge.tgz")
    assert not (tmp_path / "huge.tgz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_dataset_registered_from_the_node_directory_follows_the_restore(
    tmp_path: Path,
) -> None:
    # a job's output registered as a dataset, under a data root inside the directory: the
    # restored node must read its own copy, not the old node's
    d = tmp_path / "bank"
    cfg = make_config(d, "bank")
    cfg.db_url = f"sqlite:///{d.resolve() / 'node.db'}"
    cfg.data_roots = [str((d / "outputs").resolve())]
    cfg.save()
    n = NodeService(NodeConfig.load(d))
    _job(n, "j1", "succeeded", {})
    (d / "outputs" / "j1").mkdir(parents=True)
    (d / "outputs" / "j1" / "ids.csv").write_text("id\na\nb\n")
    n.owners.add_dataset("mine", str(d / "outputs" / "j1" / "ids.csv"), "id")
    res = backup_node(d, tmp_path / "b.tgz")
    n.storage.engine.dispose()
    restore_node(res.path, tmp_path / "new")
    new = (tmp_path / "new").resolve()
    restored = NodeConfig.load(new)
    assert restored.data_roots == [str(new / "outputs")]
    st = Storage(restored.database_url)
    try:
        [row] = st.datasets()
        assert row.path == str(new / "outputs" / "j1" / "ids.csv")
    finally:
        st.engine.dispose()
