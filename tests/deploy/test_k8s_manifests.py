"""The Kubernetes manifests: decoded strictly into the official API types by the Go validator
(deploy/k8s/validate), built by kustomize, and cross-checked here against each other and
against the node (its settings' environment variables, its probes' paths, its ports)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rainbridge.node.keys import parse_master_key

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
APPLIED = ("configmap.yaml", "services.yaml", "statefulset.yaml", "networkpolicy.yaml")
MANIFESTS = (*APPLIED, "secret.example.yaml")
#: the image's account and volume (deploy/image)
IMAGE_UID = 10001
IMAGE_VOLUME = "/var/lib/rainbridge"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for name in MANIFESTS:
        for d in _docs(name):
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def _one(kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in _objects().items() if k == kind]
    assert len(found) == 1, f"expected one {kind}"
    return found[0]


def _pod() -> dict[str, Any]:
    return dict(_one("StatefulSet")["spec"]["template"])


def _node_container() -> dict[str, Any]:
    (c,) = [c for c in _pod()["spec"]["containers"] if c["name"] == "node"]
    return dict(c)


def _container_ports(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def _port_number(c: dict[str, Any], port: str | int) -> int:
    ports = _container_ports(c)
    if isinstance(port, int):
        assert port in ports.values(), f"port {port} is not declared by container {c['name']}"
        return port
    assert port in ports, f"port {port!r} is not declared by container {c['name']}"
    return ports[port]


def _validator(tmp_path: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed here: the strict decoding into k8s.io/api is skipped")
    binary = tmp_path / "validate"
    env = dict(os.environ)
    # never rewrite go.mod or go.sum from a test: what is committed is what is built
    env["GOFLAGS"] = "-mod=readonly"
    r = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=K8S / "validate",
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if r.returncode != 0:
        if re.search(r"dial tcp|lookup .*: |proxy|module lookup disabled|GOPROXY", r.stderr):
            pytest.skip(f"the validator's Go modules cannot be fetched here: {r.stderr[-300:]}")
        pytest.fail(f"the validator does not build:\n{r.stderr}")
    return binary


def _validate(binary: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, files)], capture_output=True, text=True, timeout=120
    )


def test_strict_decoding_and_cross_references(tmp_path: Path) -> None:
    binary = _validator(tmp_path)
    # every YAML file of the folder, as DEPLOY.md runs it (kustomization.yaml included)
    r = _validate(binary, *sorted(K8S.glob("*.yaml")))
    assert r.returncode == 0, r.stderr
    assert "1 StatefulSet, 3 Service, 1 ConfigMap, 1 Secret, 1 NetworkPolicy: valid" in r.stdout

    # and it does refuse what it should: a misspelt field, a probe on an undeclared port,
    # a Service that selects nothing, a secret in the ConfigMap
    broken = {
        "statefulset.yaml": [
            ("periodSeconds: 10", "periodSecond: 10", 'unknown field "periodSecond"'),
            ("path: /readyz", "path: /ready", 'asks "/ready"'),
            ("scheme: HTTPS", "scheme: HTTP", "must use HTTPS"),
            ("runAsUser: 10001", "runAsUser: 0", "uid 10001"),
            ("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnly"),
            ("containerPort: 8443", "containerPort: 8800", "RAINBRIDGE_API_PORT is 8443"),
            ("replicas: 1", "replicas: 2", "replicas must be 1"),
        ],
        "services.yaml": [
            ("targetPort: api", "targetPort: http", 'targetPort "http"'),
            ("instance: bank\n  ports:", "instance: tax\n  ports:", "matches no pod"),
        ],
        "configmap.yaml": [
            ("RAINBRIDGE_LOG_LEVEL: info", "RAINBRIDGE_MASTER_KEY: x", "belongs in a Secret"),
        ],
        "networkpolicy.yaml": [("port: metrics", "port: prometheus", '"prometheus"')],
    }
    for name, cases in broken.items():
        text = (K8S / name).read_text()
        for old, new, expected in cases:
            assert old in text, (name, old)
            bad = tmp_path / name
            bad.write_text(text.replace(old, new, 1))
            files = [bad if n == name else K8S / n for n in MANIFESTS]
            r = _validate(binary, *files)
            assert r.returncode == 1, (name, new, r.stdout)
            assert expected in r.stderr, (name, new, r.stderr)


def test_kustomize_builds_without_the_secret() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here: the kustomize build is skipped")
    r = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(r.stdout))
    assert kinds == sorted((d["kind"], d["metadata"]["name"]) for n in APPLIED for d in _docs(n))
    # applying again must never replace the master key: no Secret is applied
    assert not any(kind == "Secret" for kind, _ in kinds)


def test_probes_name_declared_ports_and_the_node_paths() -> None:
    c = _node_container()
    env = _one("ConfigMap")["data"]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert _port_number(c, get["port"]) == int(env["RAINBRIDGE_API_PORT"])
        # the API listens off loopback, so it speaks HTTPS (api.tls auto)
        assert env["RAINBRIDGE_API_HOST"] not in ("127.0.0.1", "::1", "localhost")
        assert get["scheme"] == "HTTPS"


def test_configmap_ports_are_the_container_ports() -> None:
    c = _node_container()
    env = _one("ConfigMap")["data"]
    ports = _container_ports(c)
    assert int(env["RAINBRIDGE_API_PORT"]) == ports["api"]
    assert int(env["RAINBRIDGE_DATA_PLANE_PORT"]) == ports["data"]
    assert int(env["RAINBRIDGE_METRICS_PORT"]) == ports["metrics"]


def test_services_select_the_pod_and_target_its_ports() -> None:
    pod = _pod()
    c = _node_container()
    services = {name: o for (kind, name), o in _objects().items() if kind == "Service"}
    assert set(services) == {
        "rainbridge-bank-data-plane",
        "rainbridge-bank-api",
        "rainbridge-bank-metrics",
    }
    for svc in services.values():
        selector = svc["spec"]["selector"]
        assert selector and selector.items() <= pod["metadata"]["labels"].items()
        for p in svc["spec"]["ports"]:
            _port_number(c, p["targetPort"])
    # only the data plane faces other parties; the API and metrics stay in the cluster
    assert services["rainbridge-bank-data-plane"]["spec"]["type"] == "LoadBalancer"
    assert services["rainbridge-bank-api"]["spec"]["type"] == "ClusterIP"
    assert services["rainbridge-bank-metrics"]["spec"]["type"] == "ClusterIP"
    sts = _one("StatefulSet")
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert sts["spec"]["serviceName"] in services


def test_no_secret_in_the_configmap() -> None:
    cm = _one("ConfigMap")
    assert "binaryData" not in cm
    for key, value in cm["data"].items():
        assert not re.search(r"MASTER_KEY$|PASSWORD|TOKEN|SECRET|DATABASE_URL", key), key
        assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), key
        assert not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()), key


def test_settings_are_the_node_settings() -> None:
    """Every RAINBRIDGE_* the ConfigMap sets is an environment variable the node reads."""
    from rainbridge.node import config_file

    known = {s.env for s in config_file.SETTINGS}
    for key in _one("ConfigMap")["data"]:
        assert key in known, f"{key} is not a node setting's environment variable"


def test_master_key_is_a_mounted_secret_file() -> None:
    pod = _pod()
    c = _node_container()
    env = _one("ConfigMap")["data"]
    key_file = Path(env["RAINBRIDGE_CRYPTO_MASTER_KEY_FILE"])
    (vol,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    assert mount["readOnly"] is True
    (item,) = vol["secret"]["items"]
    assert Path(mount["mountPath"]) / item["path"] == key_file
    # kept apart from the node directory (and so from its backups)
    assert not key_file.is_relative_to(IMAGE_VOLUME)
    assert vol["secret"]["defaultMode"] & 0o007 == 0
    secret = _one("Secret")
    assert secret["metadata"]["name"] == vol["secret"]["secretName"]
    # the example holds no key, and the node refuses an empty one (a clear exit 2)
    assert secret["stringData"][item["key"]] == ""
    from rainbridge.errors import ConfigError

    with pytest.raises(ConfigError, match="32 bytes"):
        parse_master_key(secret["stringData"][item["key"]], "the Secret")


def test_pod_runs_as_the_image_account_read_only() -> None:
    spec = _pod()["spec"]
    sc = spec["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == sc["runAsGroup"] == sc["fsGroup"] == IMAGE_UID
    assert spec["automountServiceAccountToken"] is False
    claims = {t["metadata"]["name"] for t in _one("StatefulSet")["spec"]["volumeClaimTemplates"]}
    volumes = {v["name"] for v in spec["volumes"]}
    for c in spec["initContainers"] + spec["containers"]:
        csc = c["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts[IMAGE_VOLUME]["name"] in claims
        # a read-only root filesystem needs a writable /tmp; data roots are read-only
        assert mounts["/tmp"]["name"] in volumes
        assert mounts["/data"]["readOnly"] is True
        for m in c["volumeMounts"]:
            assert m["name"] in volumes | claims
    assert _one("StatefulSet")["spec"]["replicas"] == 1


def test_node_directory_and_data_root_agree_with_the_node() -> None:
    c = _node_container()
    (init,) = _pod()["spec"]["initContainers"]
    env = _one("ConfigMap")["data"]
    node_dir = c["command"][c["command"].index("--dir") + 1]
    # a folder of the image's volume, not its root (which a fresh volume gives to root)
    assert Path(node_dir).parent == Path(IMAGE_VOLUME)
    for container in (c, init):
        literal = {e["name"]: e.get("value") for e in container["env"]}
        assert literal["RAINBRIDGE_DIR"] == node_dir
    script = init["command"][-1]
    assert 'dir="$RAINBRIDGE_DIR"' in script and "rainbridge node init" in script
    assert script.rstrip().endswith('exec rainbridge node upgrade --dir "$dir"')
    # init and upgrade see the node's database, wherever it is
    assert {e["name"] for e in init["env"]} >= {"RAINBRIDGE_DIR", "RAINBRIDGE_DATABASE_URL"}
    data_mounts = {m["mountPath"] for m in c["volumeMounts"] if m.get("readOnly")}
    for root in env["RAINBRIDGE_DATA_ROOTS"].split(","):
        assert root in data_mounts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_pod_commands_run_a_node(tmp_path: Path) -> None:
    """The init container's script and the node container's command, run here with the
    ConfigMap's environment (the mounts as temporary folders, the ports free ones): the node
    is made once with its master key only in the Secret's file, answers the probes over
    HTTPS and metrics without a token, a second start leaves it as it is, and SIGTERM stops
    it with exit 0 within the pod's grace period."""
    pod = _pod()
    c = _node_container()
    (init,) = pod["spec"]["initContainers"]
    cm = dict(_one("ConfigMap")["data"])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "master.key").write_text(os.urandom(32).hex() + "\n")
    # two data roots, one with a space in its name: the override's comma-separated form
    roots = [tmp_path / "data", tmp_path / "more data"]
    for root in roots:
        root.mkdir()
    ports = {k: str(_free_port()) for k in ("API", "DATA_PLANE", "METRICS")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAINBRIDGE_")}
    env.update(cm)
    env.update(
        {
            "RAINBRIDGE_DIR": str(tmp_path / "volume" / "node"),
            "RAINBRIDGE_CRYPTO_MASTER_KEY_FILE": str(secrets / "master.key"),
            "RAINBRIDGE_DATA_ROOTS": ",".join(map(str, roots)),
            "RAINBRIDGE_API_PORT": ports["API"],
            "RAINBRIDGE_DATA_PLANE_PORT": ports["DATA_PLANE"],
            "RAINBRIDGE_METRICS_PORT": ports["METRICS"],
            # the image puts its venv first on PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    node_dir = Path(env["RAINBRIDGE_DIR"])
    node_dir.parent.mkdir()

    def run_init() -> subprocess.CompletedProcess[str]:
        return subprocess.run(init["command"], capture_output=True, text=True, timeout=120, env=env)

    first = run_init()
    assert first.returncode == 0, first.stderr
    assert "fingerprint" in first.stdout and "creates its tables at start" in first.stdout
    assert not (node_dir / "master.key").exists()
    toml = (node_dir / "node.toml").read_text()
    assert tomllib.loads(toml)["data"]["roots"] == [str(r.resolve()) for r in roots]
    again = run_init()
    assert again.returncode == 0, again.stderr
    assert (node_dir / "node.toml").read_text() == toml

    argv = [str(Path(sys.executable).parent / "rainbridge"), *c["command"][1:]]
    argv[argv.index("--dir") + 1] = str(node_dir)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    api = f"https://127.0.0.1:{ports['API']}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr and proc.stderr.read()
            try:
                # the kubelet does not check an HTTPS probe's certificate either
                if httpx.get(api + "/readyz", verify=False, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the node never became ready"
            time.sleep(0.2)
        assert httpx.get(api + "/healthz", verify=False, timeout=5).status_code == 200
        # the API itself refuses plain HTTP: the probes' scheme must be HTTPS
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{ports['API']}/healthz", timeout=5)
        metrics = httpx.get(f"http://127.0.0.1:{ports['METRICS']}/metrics", timeout=5)
        assert metrics.status_code == 200 and "rainbridge_info" in metrics.text
        grace = float(pod["spec"]["terminationGracePeriodSeconds"])
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=grace) == 0
        assert time.monotonic() - started < grace
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the next start's init container: the node exists, its schema is this version's
    restart = run_init()
    assert restart.returncode == 0, restart.stderr
    assert "up to date" in restart.stdout
    assert (node_dir / "node.toml").read_text() == toml
