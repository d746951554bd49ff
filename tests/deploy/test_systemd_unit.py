"""The systemd unit: systemd's own checker accepts it without a word, and the node runs as
the unit runs it (master key from a credentials folder, stopped by SIGTERM within the
unit's TimeoutStopSec)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = SYSTEMD / "rainbridge-node@.service"
INSTALLED_BINARY = "/opt/rainbridge/bin/rainbridge"


def _settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines by key, every value kept (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def _rainbridge_binary() -> str:
    # the console script installed beside this interpreter, as the wheel installs it
    found = Path(sys.executable).parent / "rainbridge"
    if found.exists():
        return str(found)
    which = shutil.which("rainbridge")
    if which is None:
        pytest.skip("no `rainbridge` console script installed beside this Python")
    return which


def _verify(
    unit_text: str, tmp_path: Path, name: str = "rainbridge-node@bank.service"
) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # an instance's file name: verify loads it as rainbridge-node@bank.service, %i = bank
    path = tmp_path / name
    path.write_text(unit_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    return subprocess.run(
        [analyze, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _resolvable(text: str) -> str:
    assert INSTALLED_BINARY in text, "the unit's ExecStart moved: update this test"
    return text.replace(INSTALLED_BINARY, _rainbridge_binary())


def _command(line: str, instance: str) -> list[str]:
    """An Exec line as systemd runs it: specifiers (%i, %%) resolved, $$ a literal $, then
    split by its quoting rules (which shlex follows for these lines)."""
    line = line.replace("%%", "\0").replace("%i", instance).replace("\0", "%")
    return shlex.split(line.replace("$$", "$"))


@pytest.mark.parametrize(
    "unit", ["rainbridge-node@.service", "rainbridge-backup@.service", "rainbridge-backup@.timer"]
)
def test_systemd_analyze_verify_says_nothing(unit: str, tmp_path: Path) -> None:
    text = (SYSTEMD / unit).read_text()
    if unit.endswith(".service"):
        text = _resolvable(text)
    else:
        # a timer is verified with the service it starts beside it
        (tmp_path / "rainbridge-backup@bank.service").write_text(
            _resolvable((SYSTEMD / "rainbridge-backup@.service").read_text())
        )
    r = _verify(text, tmp_path, unit.replace("@.", "@bank."))
    assert r.returncode == 0, r.stdout + r.stderr
    # any warning (an unknown key, a bad value, a missing binary) is a line of output
    assert (r.stdout + r.stderr).strip() == ""


@pytest.mark.parametrize("unit", ["rainbridge-node@.service", "rainbridge-backup@.service"])
def test_exposure_stays_low(unit: str, tmp_path: Path) -> None:
    """systemd's own rating of the confinement: 1.4 of 10 today ("OK"); a setting dropped by
    mistake raises it past 2."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    path = tmp_path / unit.replace("@.", "@bank.")
    path.write_text(_resolvable((SYSTEMD / unit).read_text()))
    r = subprocess.run(
        [analyze, "security", "--offline=true", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    if found is None and "offline" in r.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit offline")
    assert found is not None, r.stdout + r.stderr
    assert float(found.group(1)) <= 2.0, r.stdout


def test_verify_catches_what_it_should(tmp_path: Path) -> None:
    # the check above would be worthless if verify were silent on a broken unit
    text = _resolvable(UNIT.read_text())
    typo = text.replace("ProtectHome=yes", "ProtectHomes=yes")
    r = _verify(typo, tmp_path)
    assert "ProtectHomes" in r.stdout + r.stderr
    missing = UNIT.read_text().replace(INSTALLED_BINARY, str(tmp_path / "no-such-binary"))
    r = _verify(missing, tmp_path)
    assert r.returncode != 0 and "no-such-binary" in r.stdout + r.stderr


def test_unit_runs_the_node_confined_and_stops_it_gracefully() -> None:
    s = _settings(UNIT.read_text())
    assert s["ExecStart"] == [f"{INSTALLED_BINARY} node start --dir /var/lib/rainbridge/%i"]
    assert s["User"] == ["rainbridge"] and s["Group"] == ["rainbridge"]
    # the node directory is the state directory: created 0700, the one writable place
    assert s["StateDirectory"] == ["rainbridge/%i"] and s["StateDirectoryMode"] == ["0700"]
    assert s["ProtectSystem"] == ["strict"] and s["ReadOnlyPaths"] == ["-/srv/rainbridge"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert s[key] == ["yes"], key
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    assert s["PrivateMounts"] == ["yes"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    # SIGTERM to the node alone; it stops its workers itself (node/server.py)
    assert s["KillMode"] == ["mixed"] and s["KillSignal"] == ["SIGTERM"]
    assert s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["2"]
    assert s["LoadCredential"] == ["master.key:/etc/rainbridge/%i/master.key"]
    assert s["EnvironmentFile"] == ["-/etc/rainbridge/%i.env"]
    assert s["Environment"] == ["RAINBRIDGE_CRYPTO_MASTER_KEY_FILE=%d/master.key"]


def test_sysusers_entry_is_valid(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed here")
    (tmp_path / "etc").mkdir()
    r = subprocess.run(
        [
            sysusers,
            "--dry-run",
            f"--root={tmp_path}",
            str(SYSTEMD / "rainbridge.sysusers.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Creating user 'rainbridge'" in r.stdout + r.stderr


def test_environment_file_example_holds_only_node_settings() -> None:
    for line in (SYSTEMD / "rainbridge-node.env.example").read_text().splitlines():
        line = line.lstrip("#").strip()
        if "=" in line and " " not in line.partition("=")[0]:
            assert line.startswith("RAINBRIDGE_"), line


def _unit_environment(credentials: Path) -> dict[str, str]:
    """The unit's Environment= lines, ``%d`` (its credentials directory) resolved."""
    out = {}
    for line in _settings(UNIT.read_text()).get("Environment", []):
        key, _, value = line.partition("=")
        out[key] = value.replace("%d", str(credentials))
    return out


def _init_node(binary: str, node_dir: Path, env: dict[str, str], key: str) -> dict[str, str]:
    # init reads the key from the environment, as the set-up in DEPLOY.md does: nothing is
    # written beside the node
    init = subprocess.run(
        [binary, "node", "init", "--name", "bank", "--dir", str(node_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "RAINBRIDGE_MASTER_KEY": key},
    )
    assert init.returncode == 0, init.stderr
    assert not (node_dir / "master.key").exists()
    assert node_dir.stat().st_mode & 0o777 == 0o700
    info: dict[str, str] = json.loads(init.stdout)
    return info


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAINBRIDGE_")}


def _start_ready(argv: list[str], env: dict[str, str], api: str) -> subprocess.Popen[str]:
    """A node process, once it answers /readyz."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read() if proc.stderr else "the node exited")
        try:
            if httpx.get(api + "/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("the node never became ready")
        time.sleep(0.2)


@pytest.mark.slow
def test_node_runs_as_the_unit_runs_it(tmp_path: Path) -> None:
    """ExecStart's command, the unit's environment, the master key only in a credentials
    folder (LoadCredential=): the node becomes ready, and SIGTERM stops it with exit 0 well
    within TimeoutStopSec."""
    binary = _rainbridge_binary()
    s = _settings(UNIT.read_text())
    stop_timeout = float(s["TimeoutStopSec"][0])
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    key = os.urandom(32).hex()
    (credentials / "master.key").write_text(key + "\n")
    (credentials / "master.key").chmod(0o400)
    node_dir = tmp_path / "state" / "bank"
    env = _clean_env()
    info = _init_node(binary, node_dir, env, key)
    unit_env = _unit_environment(credentials)
    assert unit_env["RAINBRIDGE_CRYPTO_MASTER_KEY_FILE"] == str(credentials / "master.key")

    argv = s["ExecStart"][0].replace("%i", "bank").split()
    argv[0] = binary
    argv[argv.index("--dir") + 1] = str(node_dir)
    proc = _start_ready(argv, {**env, **unit_env}, info["api"])
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=stop_timeout) == 0
        assert time.monotonic() - started < stop_timeout
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_without_its_credential_is_a_configuration_error(tmp_path: Path) -> None:
    """A missing or wrong credential is exit 2, which the unit's RestartPreventExitStatus=
    keeps from a restart loop."""
    binary = _rainbridge_binary()
    node_dir = tmp_path / "bank"
    env = _clean_env()
    _init_node(binary, node_dir, env, os.urandom(32).hex())
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    unit_env = _unit_environment(credentials)
    start = [binary, "node", "start", "--dir", str(node_dir)]
    r = subprocess.run(start, capture_output=True, text=True, timeout=120, env={**env, **unit_env})
    assert r.returncode == 2, r.stderr
    assert "master key" in r.stderr and "Traceback" not in r.stderr
    # another key than the one the node's keys were sealed under
    (credentials / "master.key").write_text(os.urandom(32).hex() + "\n")
    r = subprocess.run(start, capture_output=True, text=True, timeout=120, env={**env, **unit_env})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert _settings(UNIT.read_text())["RestartPreventExitStatus"] == ["2"]


@pytest.mark.slow
def test_backup_unit_backs_up_a_running_node(tmp_path: Path) -> None:
    """The backup unit's commands, as systemd would run them (paths moved into a temporary
    folder), while the node runs: a verified archive named by the time, mode 0600, no
    master key in it; the pruning command keeps the fresh archive; the archive restores."""
    binary = _rainbridge_binary()
    unit = (SYSTEMD / "rainbridge-backup@.service").read_text()
    s = _settings(unit)
    assert s["User"] == ["rainbridge"] and s["StateDirectoryMode"] == ["0700"]
    assert s["ReadOnlyPaths"] == ["/var/lib/rainbridge/%i"]
    env = _clean_env()
    key = os.urandom(32).hex()
    nodes, backups = tmp_path / "nodes", tmp_path / "backups"
    info = _init_node(binary, nodes / "bank", env, key)
    (backups / "bank").mkdir(parents=True, mode=0o700)

    def moved(line: str) -> list[str]:
        line = line.replace(INSTALLED_BINARY, binary)
        line = line.replace("/var/lib/rainbridge-backups/", f"{backups}/")
        return _command(line.replace("/var/lib/rainbridge/", f"{nodes}/"), "bank")

    proc = _start_ready(
        [binary, "node", "start", "--dir", str(nodes / "bank")],
        {**env, "RAINBRIDGE_MASTER_KEY": key},
        info["api"],
    )
    try:
        r = subprocess.run(
            moved(s["ExecStart"][0]), capture_output=True, text=True, timeout=300, env=env
        )
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    (archive,) = (backups / "bank").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z\.tar\.gz", archive.name)
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and not any(n.endswith("master.key") for n in names)
    # pruning removes archives older than 14 days only
    old = backups / "bank" / "20000101T000000Z.tar.gz"
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    r = subprocess.run(moved(s["ExecStartPost"][0]), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted((backups / "bank").iterdir()) == [archive]
    # and the archive restores, with the master key given apart
    r = subprocess.run(
        [binary, "node", "restore", str(archive), "--dir", str(tmp_path / "restored")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "RAINBRIDGE_MASTER_KEY": key},
    )
    assert r.returncode == 0, r.stderr
    assert "the master key given opens the restored keys" in r.stdout
