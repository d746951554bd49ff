"""node.toml: every setting round-trips, every bad value is refused naming its key (and its
environment variable when it came from one), environment overrides are typed, unknown keys are
refused, a node.json directory migrates with every value and starts, and ``node config show``
masks a database password and names each value's source."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import stat
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from click.testing import CliRunner

from rainbridge.cli import main
from rainbridge.demo.federation import Federation
from rainbridge.errors import ConfigError
from rainbridge.node.config import (
    CONFIG_FILE,
    LEGACY_CONFIG_FILE,
    NodeConfig,
)
from rainbridge.node.config_file import BY_FIELD, RESERVED_ENV, SETTINGS, from_env, stray_env

#: a value other than the default for every setting
CHANGED: dict[str, Any] = {
    "name": "bureau.2",
    "api_host": "::1",
    "api_port": 9100,
    "api_tls": "on",
    "api_cert": "/etc/rb/api.pem",
    "api_key": "/etc/rb/api.key",
    "api_max_body": 4096,
    "data_host": "10.0.0.7",
    "data_port": 9101,
    "db_url": "postgresql+psycopg://rb:pw@db.internal:5433/rb?sslmode=require",
    "data_roots": ["/srv/data", "/srv/more data, with a comma"],
    "timeout": 12.5,
    "control_timeout": 3.0,
    "crypto_suite": "gm",
    "master_key_file": "/run/secrets/master.key",
    "interop_max_message": 1 << 20,
    "interop_max_pending_bytes": 1 << 22,
    "interop_max_pending": 77,
    "log_format": "json",
    "log_level": "debug",
    "log_file": "/var/log/rb/node.log",
    "log_max_bytes": 1000,
    "log_backups": 0,
    "metrics_host": "10.1.0.1",
    "metrics_port": 9102,
    "compute_engine": "ray",
    "compute_workers": 6,
    "compute_ray_address": "10.0.0.9:6379",
    "compute_task_cpus": 2.5,
    "compute_relay_host": "10.0.0.7",
    "compute_work_dir": "/srv/shared/rainbridge",
}
#: settings newer than node.json
NEWER = {k for k in CHANGED if k.startswith("compute_")}


def _node(tmp_path: Path, **changes: Any) -> NodeConfig:
    cfg = NodeConfig(name="bank", dir=str(tmp_path), **changes)
    cfg.save()
    return cfg


def _edit(path: Path, table: str, key: str, value: Any) -> None:
    """Put ``value`` at ``[table] key`` of the node.toml in ``path`` (top level: table "")."""
    doc = tomllib.loads((path / CONFIG_FILE).read_text())
    (doc.setdefault(table, {}) if table else doc)[key] = value
    (path / CONFIG_FILE).write_text(tomli_w.dumps(doc))


# -- the file -----------------------------------------------------------------------------


def test_every_field_is_a_setting_and_every_variable_is_free() -> None:
    fields = {f.name for f in dataclasses.fields(NodeConfig) if f.init} - {"dir"}
    assert fields == set(BY_FIELD) == set(CHANGED)
    envs = [s.env for s in SETTINGS]
    assert len(set(envs)) == len(envs) and not set(envs) & RESERVED_ENV
    assert all(e.startswith("RAINBRIDGE_") and e.isupper() for e in envs)
    assert len({s.dotted for s in SETTINGS}) == len(SETTINGS)


def test_every_setting_round_trips(tmp_path: Path) -> None:
    cfg = NodeConfig(dir=str(tmp_path), **CHANGED)
    cfg.save()
    back = NodeConfig.load(tmp_path, environ={})
    for name, value in CHANGED.items():
        assert getattr(back, name) == value, name
        assert type(getattr(back, name)) is type(value), name
    assert back == cfg and back.sources == dict.fromkeys(CHANGED, "file")
    text = (tmp_path / CONFIG_FILE).read_text()
    doc = tomllib.loads(text)
    assert "dir" not in doc  # the node can be moved
    assert doc["api"]["port"] == 9100 and doc["database"]["url"] == CHANGED["db_url"]
    for s in SETTINGS:  # every key is written, with its variable in its comment
        assert f"${s.env})" in text, s.env
    # it may hold a database password: its owner's only
    assert stat.S_IMODE((tmp_path / CONFIG_FILE).stat().st_mode) == 0o600


def test_the_file_is_written_owner_only_whatever_it_finds_there(tmp_path: Path) -> None:
    """A ``node.toml.tmp`` found in the directory (readable by all) is neither reused, which
    would give node.toml, database password and all, its mode, nor left behind by us."""
    leftover = tmp_path / (CONFIG_FILE + ".tmp")
    leftover.write_text("x")
    leftover.chmod(0o644)
    _node(tmp_path, db_url="postgresql://u:secret@h/db", data_roots=["/srv/données"])
    assert stat.S_IMODE((tmp_path / CONFIG_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, leftover.name]
    assert NodeConfig.load(tmp_path, environ={}).data_roots == ["/srv/données"]


def test_keys_left_out_take_their_defaults(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('name = "bank"\n[api]\nport = 9000\n')
    cfg = NodeConfig.load(tmp_path, environ={})
    assert cfg.api_port == 9000 and cfg.data_port == 8701 and cfg.timeout == 60.0
    assert cfg.sources == {"name": "file", "api_port": "file"}


def test_a_whole_number_of_seconds_is_a_number(tmp_path: Path) -> None:
    _node(tmp_path)
    _edit(tmp_path, "jobs", "timeout", 5)
    cfg = NodeConfig.load(tmp_path, environ={})
    assert cfg.timeout == 5.0 and isinstance(cfg.timeout, float)


BAD_VALUES = [
    ("", "name", "../x"),
    ("", "name", 7),
    ("api", "port", 70000),
    ("api", "port", "8700"),
    ("api", "port", True),
    ("api", "host", ""),
    ("api", "tls", "maybe"),
    ("api", "cert_file", "/etc/api.pem"),  # without key_file
    ("api", "max_body", 0),
    ("api", "max_body", "16M"),
    ("data_plane", "port", -1),
    ("data_plane", "host", 5),
    ("database", "url", "not a url"),
    ("database", "url", ["sqlite://"]),
    ("data", "roots", "/srv/data"),
    ("data", "roots", [""]),
    ("data", "roots", ["/a", 3]),
    ("jobs", "timeout", 0),
    ("jobs", "timeout", "60"),
    ("jobs", "control_timeout", -1.0),
    ("jobs", "control_timeout", float("inf")),
    ("crypto", "suite", "rsa"),
    ("crypto", "master_key_file", False),
    ("limits", "interop_max_message", -1),
    ("limits", "interop_max_pending_bytes", 1.5),
    ("limits", "interop_max_pending", 0),
    ("log", "format", "xml"),
    ("log", "level", "trace"),
    ("log", "file", 1),
    ("log", "max_bytes", -1),
    ("log", "backups", 2.0),
    ("metrics", "host", ""),
    ("metrics", "port", 65536),
    ("compute", "engine", "spark"),
    ("compute", "workers", -1),
    ("compute", "task_cpus", 0),
    ("compute", "ray_address", "8.8.8.8:6379"),
]


@pytest.mark.parametrize(("table", "key", "value"), BAD_VALUES)
def test_every_bad_value_is_refused_naming_its_key(
    tmp_path: Path, table: str, key: str, value: Any
) -> None:
    _node(tmp_path)
    _edit(tmp_path, table, key, value)
    dotted = f"{table}.{key}" if table else key
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")) as e:
        NodeConfig.load(tmp_path, environ={})
    assert str(tmp_path / CONFIG_FILE) in str(e.value)


def test_a_database_url_is_never_echoed_in_an_error(tmp_path: Path) -> None:
    _node(tmp_path)
    _edit(tmp_path, "database", "url", "postgresql://u:secret@h:notaport/db")
    with pytest.raises(ConfigError, match=r"database\.url") as e:
        NodeConfig.load(tmp_path, environ={})
    assert "secret" not in str(e.value)


def test_a_database_url_of_the_wrong_type_is_not_echoed_either(tmp_path: Path) -> None:
    _node(tmp_path)
    _edit(tmp_path, "database", "url", ["postgresql://u:secret@h/db"])
    with pytest.raises(ConfigError, match=r"database\.url: expected a string, got a list") as e:
        NodeConfig.load(tmp_path, environ={})
    assert "secret" not in str(e.value)
    (tmp_path / CONFIG_FILE).unlink()
    (tmp_path / "node.json").write_text(json.dumps({"name": "n", "db_url": {"pw": "secret"}}))
    with pytest.raises(ConfigError, match=r"db_url: expected a string") as e:
        NodeConfig.load(tmp_path, environ={})
    assert "secret" not in str(e.value)


def test_plain_http_off_loopback_is_refused_naming_the_keys(tmp_path: Path) -> None:
    _node(tmp_path, api_host="0.0.0.0", api_tls="off")
    with pytest.raises(ConfigError, match=r"api\.tls.*api\.host.*plain text"):
        NodeConfig.load(tmp_path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "bank"\n[api]\nprot = 8700\n', r"unknown key 'prot' in table \[api\]"),
        ('name = "bank"\n[jobs]\ntimeout = 5\n[job]\ntimeout = 5\n', r"'job' at the top level"),
        ('name = "bank"\nport = 8700\n', r"'port' at the top level"),
        ('name = "bank"\napi = 8700\n', r"\[api\] must be a table"),
        ('name = "bank"\n[log]\nlevel = "info"\nlevel = "debug"\n', "not valid TOML"),
        ('name = "bank\n', "not valid TOML"),
        ("[api]\nport = 8700\n", "name: missing"),
    ],
)
def test_unknown_keys_and_malformed_files_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(tmp_path, environ={})


def test_a_directory_without_a_configuration_is_not_a_node(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a node directory"):
        NodeConfig.load(tmp_path, environ={})


# -- the environment ----------------------------------------------------------------------


def test_environment_overrides_each_type(tmp_path: Path) -> None:
    _node(tmp_path)
    env = {
        "RAINBRIDGE_API_PORT": " 9200 ",
        "RAINBRIDGE_JOBS_TIMEOUT": "2.5",
        "RAINBRIDGE_DATABASE_URL": "postgresql+psycopg://u:pw@h/db",
        "RAINBRIDGE_DATA_ROOTS": "/srv/a, /srv/b,",
        "RAINBRIDGE_LOG_LEVEL": "",  # empty: unset
        "RAINBRIDGE_TOKEN": "not a setting",
    }
    cfg = NodeConfig.load(tmp_path, environ=env)
    assert cfg.api_port == 9200 and cfg.timeout == 2.5 and cfg.log_level == "info"
    assert cfg.db_url == "postgresql+psycopg://u:pw@h/db"
    assert cfg.data_roots == ["/srv/a", "/srv/b"]
    assert cfg.sources["api_port"] == "RAINBRIDGE_API_PORT"
    assert cfg.sources["log_level"] == "file"
    assert cfg.overrides() == [
        "api.port ($RAINBRIDGE_API_PORT)",
        "database.url ($RAINBRIDGE_DATABASE_URL)",
        "data.roots ($RAINBRIDGE_DATA_ROOTS)",
        "jobs.timeout ($RAINBRIDGE_JOBS_TIMEOUT)",
    ]
    roots = NodeConfig.load(tmp_path, environ={"RAINBRIDGE_DATA_ROOTS": '["/a,b", "/c"]'})
    assert roots.data_roots == ["/a,b", "/c"]
    assert NodeConfig.load(tmp_path, environ={"RAINBRIDGE_DATA_ROOTS": "[]"}).data_roots == []


def test_overrides_apply_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _node(tmp_path)
    monkeypatch.setenv("RAINBRIDGE_METRICS_PORT", "9300")
    assert NodeConfig.load(tmp_path).metrics_port == 9300


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        ("RAINBRIDGE_API_PORT", "abc", "expected a whole number"),
        ("RAINBRIDGE_API_PORT", "1.5", "expected a whole number"),
        ("RAINBRIDGE_JOBS_TIMEOUT", "soon", "expected a number"),
        ("RAINBRIDGE_JOBS_TIMEOUT", "nan", "expected a finite number"),
        ("RAINBRIDGE_DATA_ROOTS", '["/a", ', "not a JSON array"),
        ("RAINBRIDGE_DATA_ROOTS", "[1, 2]", "expected a list of strings"),
    ],
)
def test_a_variable_that_does_not_parse_is_named_with_its_key(
    tmp_path: Path, var: str, raw: str, message: str
) -> None:
    _node(tmp_path)
    key = next(s.dotted for s in SETTINGS if s.env == var)
    with pytest.raises(ConfigError, match=message) as e:
        NodeConfig.load(tmp_path, environ={var: raw})
    assert f"${var}" in str(e.value) and key in str(e.value)


def test_a_whole_number_past_any_float_is_refused_naming_its_key(tmp_path: Path) -> None:
    _node(tmp_path)
    _edit(tmp_path, "jobs", "timeout", 10**400)
    with pytest.raises(ConfigError, match=r"jobs\.timeout: expected a finite number"):
        NodeConfig.load(tmp_path, environ={})


@pytest.mark.parametrize("raw", ["  ", ",", " , ,"])
def test_a_list_variable_naming_nothing_is_refused_not_an_empty_list(
    tmp_path: Path, raw: str
) -> None:
    """Blanks or commas alone would have replaced the file's data roots by none, lifting
    the restriction; only ``[]`` says "none"."""
    _node(tmp_path, data_roots=["/srv/data"])
    with pytest.raises(ConfigError, match=r"names nothing.*\[\]") as e:
        NodeConfig.load(tmp_path, environ={"RAINBRIDGE_DATA_ROOTS": raw})
    assert "$RAINBRIDGE_DATA_ROOTS" in str(e.value) and "data.roots" in str(e.value)
    assert NodeConfig.load(tmp_path, environ={}).data_roots == ["/srv/data"]


@pytest.mark.parametrize(
    ("var", "raw", "key"),
    [
        ("RAINBRIDGE_API_PORT", "70000", "api.port"),
        ("RAINBRIDGE_JOBS_CONTROL_TIMEOUT", "0", "jobs.control_timeout"),
        ("RAINBRIDGE_LOG_FORMAT", "xml", "log.format"),
        ("RAINBRIDGE_COMPUTE_ENGINE", "spark", "compute.engine"),
        ("RAINBRIDGE_NAME", "../x", "name"),
        ("RAINBRIDGE_DATABASE_URL", "nonsense", "database.url"),
    ],
)
def test_an_out_of_range_override_is_named_with_its_variable(
    tmp_path: Path, var: str, raw: str, key: str
) -> None:
    _node(tmp_path)
    with pytest.raises(ConfigError) as e:
        NodeConfig.load(tmp_path, environ={var: raw})
    assert f"{key} (from ${var})" in str(e.value)


def test_saving_keeps_the_files_value_of_an_override(tmp_path: Path) -> None:
    _node(tmp_path, api_port=9000)
    cfg = NodeConfig.load(tmp_path, environ={"RAINBRIDGE_API_PORT": "9500"})
    assert cfg.api_port == 9500
    cfg.log_level = "debug"
    cfg.save()
    back = NodeConfig.load(tmp_path, environ={})
    assert back.api_port == 9000 and back.log_level == "debug"


def test_a_variable_named_like_a_setting_that_is_none_is_reported(tmp_path: Path) -> None:
    env = {
        "RAINBRIDGE_API_PROT": "1",
        "RAINBRIDGE_DATABASE_URI": "x",
        "RAINBRIDGE_API_KEY_PASSWORD": "pw",  # means something else: not reported
        "RAINBRIDGE_API_PORT": "9000",
        "RAINBRIDGE_WHEEL": "w",  # not a table's name
    }
    assert stray_env(env) == ["RAINBRIDGE_API_PROT", "RAINBRIDGE_DATABASE_URI"]
    d = _init(tmp_path)
    r = CliRunner().invoke(main, ["node", "config", "check", "--dir", str(d)], env=env)
    assert r.exit_code == 0 and "$RAINBRIDGE_API_PROT is not a setting" in r.output


def test_from_env_reads_only_settings() -> None:
    assert from_env({"RAINBRIDGE_API": "https://x", "RAINBRIDGE_MASTER_KEY": "00" * 32}) == {}


# -- node.json migrates -------------------------------------------------------------------


def _old_node_json(directory: Path, **fields: Any) -> dict[str, Any]:
    """A node.json as the earlier code wrote it: json.dumps of the dataclass's fields, less
    ``dir``."""
    d = {
        f.name: f.default_factory() if callable(f.default_factory) else f.default
        for f in dataclasses.fields(NodeConfig)
        if f.init and f.name not in ("name", "dir") and f.name not in NEWER
    }
    d = {"name": "bank", **d, **fields}
    (directory / LEGACY_CONFIG_FILE).write_text(json.dumps(d, indent=2) + "\n")
    return d


def test_a_node_json_migrates_with_every_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = {k: v for k, v in CHANGED.items() if k not in NEWER}
    old["timeout"] = 12  # JSON kept a whole number as written
    _old_node_json(tmp_path, **old)
    with caplog.at_level(logging.WARNING, logger="rainbridge.node.config"):
        cfg = NodeConfig.load(tmp_path, environ={})
        NodeConfig.load(tmp_path, environ={})
    for name, value in old.items():
        assert getattr(cfg, name) == value, name
    assert cfg.compute_engine == "local"
    assert not (tmp_path / LEGACY_CONFIG_FILE).exists()
    assert (tmp_path / "node.json.migrated").exists()
    assert tomllib.loads((tmp_path / CONFIG_FILE).read_text())["jobs"]["timeout"] == 12.0
    moved = [r for r in caplog.records if "moved from node.json to node.toml" in r.getMessage()]
    assert len(moved) == 1  # logged once: the second load reads node.toml


def test_a_node_json_that_does_not_hold_is_refused_and_kept(tmp_path: Path) -> None:
    _old_node_json(tmp_path, api_prot=1)
    before = (tmp_path / LEGACY_CONFIG_FILE).read_text()
    with pytest.raises(ConfigError, match="unknown setting 'api_prot'"):
        NodeConfig.load(tmp_path, environ={})
    assert (tmp_path / LEGACY_CONFIG_FILE).read_text() == before
    assert not (tmp_path / CONFIG_FILE).exists()
    (tmp_path / LEGACY_CONFIG_FILE).write_text('{"name": "bank", "api_port": "8700"}')
    with pytest.raises(ConfigError, match="api_port: expected a whole number"):
        NodeConfig.load(tmp_path, environ={})
    (tmp_path / LEGACY_CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        NodeConfig.load(tmp_path, environ={})
    assert not (tmp_path / CONFIG_FILE).exists()


def test_a_node_json_that_cannot_be_migrated_is_read_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _old_node_json(tmp_path, api_port=9010)

    def unwritable(path: Path, values: Any) -> None:  # a directory node.toml cannot go to
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("rainbridge.node.config.write", unwritable)
    with caplog.at_level(logging.WARNING, logger="rainbridge.node.config"):
        cfg = NodeConfig.load(tmp_path, environ={"RAINBRIDGE_LOG_LEVEL": "debug"})
    assert cfg.api_port == 9010 and cfg.log_level == "debug"
    assert (tmp_path / LEGACY_CONFIG_FILE).exists() and not (tmp_path / CONFIG_FILE).exists()
    assert any("cannot write node.toml" in r.getMessage() for r in caplog.records)


def test_init_refuses_a_directory_holding_an_older_node(tmp_path: Path) -> None:
    _old_node_json(tmp_path, name="bank")
    r = CliRunner().invoke(main, ["node", "init", "--name", "bank", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "already holds a node" in r.output


@pytest.mark.slow
def test_a_node_from_a_node_json_starts_and_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(tmp_path / "nodes", ["bank"], timeout=7)
    f.init()
    d = f.nodes["bank"].dir
    # turn the new node back into one of the earlier layout
    cfg = NodeConfig.load(d, environ={})
    _old_node_json(d, **{n: getattr(cfg, n) for n in CHANGED if n not in NEWER})
    (d / CONFIG_FILE).unlink()
    monkeypatch.setenv("RAINBRIDGE_LOG_LEVEL", "debug")  # the node inherits it
    try:
        f.start()
        node = f.nodes["bank"]
        r = httpx.get(node.api + "/healthz", verify=node.verify, timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        log = (d / "node.log").read_text()
        assert "settings from the environment: log.level ($RAINBRIDGE_LOG_LEVEL)" in log
    finally:
        f.stop()
    assert (d / "node.json.migrated").exists() and not (d / LEGACY_CONFIG_FILE).exists()
    back = NodeConfig.load(d, environ={})
    assert (back.api_port, back.data_port, back.timeout) == (cfg.api_port, cfg.data_port, 7.0)


# -- node config show / check -------------------------------------------------------------


def _init(tmp_path: Path, *extra: str) -> Path:
    d = tmp_path / "bank"
    r = CliRunner().invoke(main, ["node", "init", "--name", "bank", "--dir", str(d), *extra])
    assert r.exit_code == 0, r.output
    return d


def test_config_show_masks_a_password_and_names_sources(tmp_path: Path) -> None:
    d = _init(tmp_path, "--db", "postgresql+psycopg://u:secret@h/db")
    env = {"RAINBRIDGE_API_PORT": "9400"}
    r = CliRunner().invoke(main, ["node", "config", "show", "--dir", str(d)], env=env)
    assert r.exit_code == 0, r.output
    assert "secret" not in r.output and "postgresql+psycopg://u:***@h/db" in r.output
    port = next(line for line in r.output.splitlines() if line.startswith("api.port "))
    assert "$RAINBRIDGE_API_PORT" in port and port.rstrip().endswith("9400")
    r = CliRunner().invoke(main, ["node", "config", "show", "--dir", str(d), "--json"], env=env)
    out = json.loads(r.output)
    assert "secret" not in r.output
    assert out["settings"]["api.port"] == {
        "value": 9400,
        "source": "env",
        "env": "RAINBRIDGE_API_PORT",
    }
    assert out["settings"]["database.url"]["source"] == "file"
    assert out["settings"]["compute.engine"]["value"] == "local"
    assert out["file"] == str(d / CONFIG_FILE)


def test_config_show_masks_a_password_from_the_environment_and_in_the_query(
    tmp_path: Path,
) -> None:
    d = _init(tmp_path)
    url = "postgresql+psycopg://u:secret@h/db?password=hush&sslmode=require"
    r = CliRunner().invoke(
        main,
        ["node", "config", "show", "--dir", str(d), "--json"],
        env={"RAINBRIDGE_DATABASE_URL": url},
    )
    assert r.exit_code == 0, r.output
    assert "secret" not in r.output and "hush" not in r.output
    shown = json.loads(r.output)["settings"]["database.url"]
    assert shown["source"] == "env" and "sslmode=require" in shown["value"]


def test_config_check_exits_2_naming_the_key(tmp_path: Path) -> None:
    d = _init(tmp_path)
    r = CliRunner().invoke(main, ["node", "config", "check", "--dir", str(d)])
    assert r.exit_code == 0 and r.output.strip().endswith("node.toml: ok")
    r = CliRunner().invoke(
        main, ["node", "config", "check", "--dir", str(d)], env={"RAINBRIDGE_LOG_LEVEL": "loud"}
    )
    assert r.exit_code == 2 and "log.level (from $RAINBRIDGE_LOG_LEVEL)" in r.output
    _edit(d, "api", "prot", 1)
    for command in ("check", "show"):
        r = CliRunner().invoke(main, ["node", "config", command, "--dir", str(d)])
        assert r.exit_code == 2 and "unknown key 'prot' in table [api]" in r.output
    r = CliRunner().invoke(main, ["node", "config", "show", "--dir", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not a node directory" in r.output
