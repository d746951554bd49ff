#!/usr/bin/env bash
# make image-smoke: two nodes from the image (a bank and a telecom), peers both ways, a
# dataset each, grants, a PSI job, the intersection checked against the plain one, the
# console and the health check answered. Run as root after make image.
#
# Rootful podman first (--network host, the volume a bind-mounted folder owned by uid
# 10001; podman's own storage under build/image). Where podman cannot run a container here
# (no cgroups, no overlay, no namespaces), or with SMOKE_MODE=chroot, the same root file
# system (build/image/rootfs, the image's layer) runs through unshare (mount and PID
# namespaces) and chroot as uid 10001, with the same entry point, environment and volume;
# the script says which ran.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=build/image
SMOKE=$OUT/smoke
ROOTFS=$OUT/rootfs
PODMAN=(podman --root "$PWD/$OUT/podman/storage" --runroot "$PWD/$OUT/podman/run" --storage-driver vfs)
NODE_UID=10001
HOST_PY=${HOST_PY:-.venv/bin/python}
declare -A API_PORT=([bank]=18443 [telecom]=18444) DATA_PORT=([bank]=19443 [telecom]=19444)
# the bank's API on loopback (plain HTTP); the telecom's on every address, as the image's
# default, so over HTTPS with the node's certificate (its health check pins it)
declare -A API_HOST=([bank]=127.0.0.1 [telecom]=0.0.0.0) SCHEME=([bank]=http [telecom]=https)

die() { echo "image-smoke: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
ARCHIVE=$(ls -t "$OUT"/rainbridge-*.oci.tar 2>/dev/null | head -n1 || true)
[ -n "$ARCHIVE" ] || die "no image in $OUT: run make image"
VERSION=$(basename "$ARCHIVE" | sed 's/^rainbridge-//; s/\.oci\.tar$//')
IMAGE=localhost/rainbridge:$VERSION

rm -rf "$SMOKE"
mkdir -p "$SMOKE/data"
# the parties' data: 600 bank customers, 234 subscribers, 100 of them in common
"$HOST_PY" - "$SMOKE/data" <<'PY'
import sys
from pathlib import Path
d = Path(sys.argv[1])
bank, telecom = range(0, 600), range(300, 1000, 3)
for name, ids in (("bank", bank), ("telecom", telecom)):
    (d / f"{name}.csv").write_text(
        "customer_id,age\n" + "".join(f"c{i:05d},{i % 90}\n" for i in ids))
(d / "expected.txt").write_text("\n".join(sorted(f"c{i:05d}" for i in set(bank) & set(telecom))))
(d / "psi.yaml").write_text("""\
name: image-smoke
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [age]}
""")
PY
chmod -R a+rX "$SMOKE/data"
for n in bank telecom unnamed; do install -d -m 0700 -o "$NODE_UID" -g "$NODE_UID" "$SMOKE/$n"; done

# SMOKE_POSTGRES=1: the bank's state on a throwaway PostgreSQL cluster (the tests' own, from
# tests/dbservers.py, on loopback), through the image's psycopg: RAINBRIDGE_DATABASE_URL
BANK_DB=()
if [ "${SMOKE_POSTGRES:-0}" = 1 ]; then
    coproc PG { "$HOST_PY" -c '
import sys
sys.path.insert(0, "tests")
from dbservers import PostgresServer, find_postgres
pg_bin, why = find_postgres()
if pg_bin is None:
    sys.exit(f"no PostgreSQL server: {why}")
srv = PostgresServer(pg_bin).start()
try:
    print(srv.url(srv.create_database("smoke")), flush=True)
    sys.stdin.read()  # until the smoke test ends
finally:
    srv.stop()
'; }
    read -r url <&"${PG[0]}" || die "the PostgreSQL server did not start"
    BANK_DB=("RAINBRIDGE_DATABASE_URL=$url")
    echo "== the bank's state on PostgreSQL: ${url%%@*}@…"
fi

node_env() {  # the environment a node's container gets
    [ "$1" = unnamed ] && return
    [ "$1" = bank ] && [ "${#BANK_DB[@]}" -gt 0 ] && echo "${BANK_DB[0]}"
    echo "RAINBRIDGE_NAME=$1" "RAINBRIDGE_API_HOST=${API_HOST[$1]}" "RAINBRIDGE_API_PORT=${API_PORT[$1]}" \
        "RAINBRIDGE_DATA_PLANE_HOST=127.0.0.1" "RAINBRIDGE_DATA_PLANE_PORT=${DATA_PORT[$1]}" \
        "RAINBRIDGE_DATA_ROOTS=/data"
}

# podman's defaults first; then runc with the resource limits capped at this machine's
# (a sandbox may forbid crun's raising RLIMIT_NOFILE/NPROC, or run cgroups in a hybrid
# mode crun refuses)
RUN_OPTS=()
CAPPED=(--runtime runc --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
for n in bank telecom; do
    for port in "${API_PORT[$n]}" "${DATA_PORT[$n]}"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use"; fi
    done
done

MODE=chroot
if [ "${SMOKE_MODE:-auto}" = chroot ]; then
    echo "== SMOKE_MODE=chroot: podman not tried"
elif echo "== podman: load $ARCHIVE" && "${PODMAN[@]}" load -q -i "$ARCHIVE" >"$SMOKE/podman.log" 2>&1; then
    for opts in "" "${CAPPED[*]}"; do
        read -r -a RUN_OPTS <<<"$opts"
        echo "-- podman run ${opts:-(defaults)}" >>"$SMOKE/podman.log"
        if "${PODMAN[@]}" run --rm --network host "${RUN_OPTS[@]}" "$IMAGE" --version \
            >>"$SMOKE/podman.log" 2>&1; then
            MODE=podman
            break
        fi
        echo "podman run ${opts:-(defaults)} cannot run a container here: $(tail -n1 "$SMOKE/podman.log")"
    done
else
    echo "podman cannot load the image: $(tail -n1 "$SMOKE/podman.log")"
fi

if [ "$MODE" = podman ]; then
    echo "== podman $("${PODMAN[@]}" --version | cut -d' ' -f3) run ${RUN_OPTS[*]:-(defaults)}"
    echo "$IMAGE (OCI archive): $("${PODMAN[@]}" image inspect --format \
        'user {{.Config.User}}, entrypoint {{.Config.Entrypoint}}, cmd {{.Config.Cmd}}, volumes {{.Config.Volumes}}' "$IMAGE")"
    DOCKER_ARCHIVE=${ARCHIVE%.oci.tar}.docker.tar
    # the Docker-format archive is the same tree and configuration, with the HEALTHCHECK
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null
    "${PODMAN[@]}" load -q -i "$DOCKER_ARCHIVE" >/dev/null
    echo "its Docker-format archive's health check: $("${PODMAN[@]}" image inspect --format \
        '{{.HealthCheck.Test}} every {{.HealthCheck.Interval}}' "$IMAGE")"
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null
    "${PODMAN[@]}" load -q -i "$ARCHIVE" >/dev/null   # the nodes run from the OCI archive
    start_node() {
        local envs=() e
        for e in $(node_env "$1"); do envs+=(--env "$e"); done
        "${PODMAN[@]}" run -d --name "smoke-$1" --network host "${RUN_OPTS[@]}" "${envs[@]}" \
            --volume "$PWD/$SMOKE/$1:/var/lib/rainbridge" --volume "$PWD/$SMOKE/data:/data:ro" \
            --health-cmd /usr/local/bin/rainbridge-healthcheck --health-interval disable \
            "$IMAGE" >/dev/null
    }
    in_node() { local n=$1; shift; "${PODMAN[@]}" exec "smoke-$n" rainbridge-entrypoint "$@"; }
    first_start_unnamed() {
        "${PODMAN[@]}" run --rm --network host "${RUN_OPTS[@]}" \
            --volume "$PWD/$SMOKE/unnamed:/var/lib/rainbridge" "$IMAGE"
    }
    health_unnamed() {
        "${PODMAN[@]}" run --rm --network host "${RUN_OPTS[@]}" \
            --volume "$PWD/$SMOKE/unnamed:/var/lib/rainbridge" \
            --entrypoint /usr/local/bin/rainbridge-healthcheck "$IMAGE"
    }
    health() { "${PODMAN[@]}" healthcheck run "smoke-$1"; }
    restart_node() { "${PODMAN[@]}" restart -t 20 "smoke-$1" >/dev/null; }
    whoami_in() { "${PODMAN[@]}" exec "smoke-$1" id -u; }
    stop_nodes() {
        for n in bank telecom; do
            "${PODMAN[@]}" stop -t 20 "smoke-$n" >/dev/null 2>&1 || true
            "${PODMAN[@]}" logs "smoke-$n" >"$SMOKE/$n.log" 2>&1 || true
            echo "$n: stopped (SIGTERM), exit $("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "smoke-$n" 2>/dev/null)"
            "${PODMAN[@]}" rm -f "smoke-$n" >/dev/null 2>&1 || true
        done
        "${PODMAN[@]}" rmi -a -f >/dev/null 2>&1 || true
    }
else
    [ -x "$ROOTFS/usr/local/bin/rainbridge-entrypoint" ] || die "no $ROOTFS: run make image"
    echo "== fallback: $ROOTFS through unshare (mount, PID) and chroot as uid $NODE_UID"
    # one private mount namespace per process: its own node directory at the volume's path
    chrooted() {  # NAME, then the command and its arguments
        local n=$1; shift
        exec unshare --mount --pid --fork --kill-child sh -c '
            set -e; root=$1; vol=$2; data=$3; shift 3
            mount --make-rprivate /
            mount --bind "$vol" "$root/var/lib/rainbridge"
            mkdir -p "$root/data"; mount --bind "$data" "$root/data"; mount -o remount,bind,ro "$root/data"
            mount -t proc proc "$root/proc"
            exec chroot --userspec='"$NODE_UID:$NODE_UID"' "$root" "$@"' \
            sh "$PWD/$ROOTFS" "$PWD/$SMOKE/$n" "$PWD/$SMOKE/data" \
            env -i HOME=/var/lib/rainbridge RAINBRIDGE_DIR=/var/lib/rainbridge LANG=C.UTF-8 \
            PATH=/opt/rainbridge/bin:/usr/local/bin:/usr/bin:/bin $(node_env "$n") "$@"
    }
    declare -A PIDS
    # (each in a subshell, which chrooted's exec replaces by unshare: $! is unshare's PID)
    start_node() { (chrooted "$1" /usr/local/bin/rainbridge-entrypoint >"$SMOKE/$1.log" 2>&1) & PIDS[$1]=$!; }
    in_node() { local n=$1; shift; (chrooted "$n" /usr/local/bin/rainbridge-entrypoint "$@"); }
    first_start_unnamed() { (chrooted unnamed /usr/local/bin/rainbridge-entrypoint); }
    health_unnamed() { (chrooted unnamed /usr/local/bin/rainbridge-healthcheck); }
    health() { (chrooted "$1" /usr/local/bin/rainbridge-healthcheck); }
    restart_node() {
        local child
        child=$(pgrep -P "${PIDS[$1]}" || true)
        [ -n "$child" ] && kill -TERM "$child"
        wait "${PIDS[$1]}" || true
        (chrooted "$1" /usr/local/bin/rainbridge-entrypoint >>"$SMOKE/$1.log" 2>&1) & PIDS[$1]=$!
    }
    whoami_in() { (chrooted "$1" id -u); }
    stop_nodes() {
        # the stop signal goes to the node (the PID namespace's first process, as in a
        # container), which ends its jobs and workers; unshare exits with it
        local n child
        for n in "${!PIDS[@]}"; do
            child=$(pgrep -P "${PIDS[$n]}" || true)
            [ -n "$child" ] && kill -TERM "$child" 2>/dev/null || true
        done
        for n in "${!PIDS[@]}"; do
            rc=0
            wait "${PIDS[$n]}" 2>/dev/null || rc=$?
            echo "$n: stopped (SIGTERM), exit $rc"
        done
    }
fi
stop_all() {
    stop_nodes
    if [ -n "${PG_PID:-}" ]; then
        # EOF on its stdin: it stops the server
        [ -n "${PG[1]:-}" ] && eval "exec ${PG[1]}>&-"
        wait "$PG_PID" || true
    fi
}
trap stop_all EXIT

echo "== a first start without RAINBRIDGE_NAME is refused, the volume left empty"
rc=0
first_start_unnamed >"$SMOKE/unnamed.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "set RAINBRIDGE_NAME" "$SMOKE/unnamed.log" \
    && [ -z "$(ls -A "$SMOKE/unnamed")" ] || die "unnamed first start: exit $rc, $(cat "$SMOKE/unnamed.log")"
echo "exit 2: $(cat "$SMOKE/unnamed.log")"
rc=0
health_unnamed >"$SMOKE/unnamed-health.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || die "the health check of a volume without a node: exit $rc"
echo "its health check: exit 1: $(tail -n1 "$SMOKE/unnamed-health.log")"

echo "== start bank and telecom"
for n in bank telecom; do start_node "$n"; done
wait_ready() {
    # (curl -k: this probe only waits; the health check pins the certificate)
    local ready="${SCHEME[$1]}://127.0.0.1:${API_PORT[$1]}/readyz"
    for _ in $(seq 1 120); do
        curl -fsSk "$ready" >/dev/null 2>&1 && return
        sleep 0.5
    done
    curl -fsSk "$ready" >/dev/null || die "$1 is not ready"
}
for n in bank telecom; do
    wait_ready "$n"
    health "$n" || die "$n's health check failed"
    echo "$n: ready (${SCHEME[$n]}), health check passed, runs as uid $(whoami_in "$n"), volume files owned by uid $(stat -c %u "$SMOKE/$n/node.toml")"
done

echo "== peers both ways, datasets, grants"
fp() { in_node "$1" node info --json | "$HOST_PY" -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])'; }
in_node bank peer add telecom --url "127.0.0.1:${DATA_PORT[telecom]}" --fingerprint "$(fp telecom)" >/dev/null
BANK_FP=$(fp bank)
in_node telecom peer add bank --url "127.0.0.1:${DATA_PORT[bank]}" --fingerprint "$BANK_FP" >/dev/null
in_node bank dataset add customers --path /data/bank.csv --id customer_id >/dev/null
in_node telecom dataset add subscribers --path /data/telecom.csv --id customer_id >/dev/null
in_node bank grant add customers --peer telecom --columns '*' --components psi --receivers '*' >/dev/null
in_node telecom grant add subscribers --peer bank --columns '*' --components psi --receivers '*' >/dev/null

echo "== PSI job"
in_node bank job submit /data/psi.yaml --json >"$SMOKE/job.json"
JOB=$("$HOST_PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"]=="succeeded", r; print(r["id"])' "$SMOKE/job.json")
in_node bank job result "$JOB" --json >"$SMOKE/result.json"
"$HOST_PY" - "$SMOKE" <<'PY'
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
smoke = Path(sys.argv[1])
res = json.loads((smoke / "result.json").read_text())["result"]
path = res["components"]["psi"]["outputs"]["intersection"]["path"]
# the node wrote it inside its volume: the same file is under smoke/bank on this side
local = smoke / "bank" / Path(path).relative_to("/var/lib/rainbridge")
got = pq.read_table(local).column("customer_id").to_pylist()
want = (smoke / "data" / "expected.txt").read_text().split("\n")
assert got == want, (len(got), len(want))
print(f"intersection: {len(got)} rows, equal to the plain intersection; bytes sent {res['bytes_sent']}")
PY
curl -fsS "http://127.0.0.1:${API_PORT[bank]}/" | grep -q '<title>Rainbridge</title>' && echo "console: served at /"

echo "== the bank restarted on its volume (a later start: node.toml, node upgrade, node start)"
restart_node bank
wait_ready bank
health bank || die "the restarted bank's health check failed"
in_node bank job status "$JOB" --json | "$HOST_PY" -c 'import json,sys; r=json.load(sys.stdin); assert r["status"]=="succeeded", r' \
    || die "the job is not as it was after the restart"
[ "$(fp bank)" = "$BANK_FP" ] || die "the restarted bank has another certificate"
echo "bank: ready again with the same identity and the job $JOB succeeded"
if [ "${#BANK_DB[@]}" -gt 0 ]; then
    [ ! -e "$SMOKE/bank/node.db" ] || die "the bank wrote SQLite although given PostgreSQL"
    echo "bank: its state in PostgreSQL (no node.db in its volume)"
fi
echo "== image-smoke passed ($MODE)"
