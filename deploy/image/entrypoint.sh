#!/bin/sh
# The image's entry point. With no arguments (or `start`): on the first start, create the
# node in the volume from the environment; before every start, apply the schema revisions
# a newer image brings (`node upgrade`, nothing when there are none); then run the node as
# PID 1 (exec), so the container's stop signal reaches it, and it fails running jobs
# cleanly and stops its workers. Any other arguments run that rainbridge command on the
# same node directory (`podman exec NODE rainbridge-entrypoint peer add ...`).
#
# First start: RAINBRIDGE_NAME (required) names the party; the addresses, ports, data roots
# and master key file come from the variables that also override node.toml on every later
# start, so both agree: RAINBRIDGE_API_HOST/_PORT (default 0.0.0.0:8443, so HTTPS),
# RAINBRIDGE_DATA_PLANE_HOST/_PORT (default 0.0.0.0:9443), RAINBRIDGE_DATA_ROOTS (one
# folder, or several comma-separated), RAINBRIDGE_CRYPTO_MASTER_KEY_FILE (default: the
# volume's master.key; $RAINBRIDGE_MASTER_KEY, the key itself, wins). Every other setting
# is node.toml's in the volume, or its RAINBRIDGE_<TABLE>_<KEY> override.
set -eu

export RAINBRIDGE_DIR="${RAINBRIDGE_DIR:-/var/lib/rainbridge}"
DIR="$RAINBRIDGE_DIR"

if [ "$#" -gt 0 ] && [ "$1" != "start" ]; then
    exec rainbridge "$@"
fi

if [ ! -e "$DIR/node.toml" ] && [ ! -e "$DIR/node.json" ]; then
    if [ -z "${RAINBRIDGE_NAME:-}" ]; then
        echo "error: $DIR holds no node yet: set RAINBRIDGE_NAME (this party's name) for its first start" >&2
        exit 2
    fi
    if [ ! -w "$DIR" ]; then
        echo "error: $DIR is not writable by uid $(id -u): mount a volume there that it owns" >&2
        exit 2
    fi
    set -- --name "$RAINBRIDGE_NAME" --dir "$DIR" \
        --api-host "${RAINBRIDGE_API_HOST:-0.0.0.0}" --api-port "${RAINBRIDGE_API_PORT:-8443}" \
        --host "${RAINBRIDGE_DATA_PLANE_HOST:-0.0.0.0}" \
        --data-port "${RAINBRIDGE_DATA_PLANE_PORT:-9443}"
    if [ -n "${RAINBRIDGE_CRYPTO_MASTER_KEY_FILE:-}" ]; then
        set -- "$@" --master-key-file "$RAINBRIDGE_CRYPTO_MASTER_KEY_FILE"
    fi
    # (word splitting on commas only: a folder's name may hold spaces)
    old_ifs=$IFS
    IFS=,
    set -f
    for root in ${RAINBRIDGE_DATA_ROOTS:-}; do
        set -- "$@" --data-root "$root"
    done
    set +f
    IFS=$old_ifs
    rainbridge node init "$@"
fi

rainbridge node upgrade --dir "$DIR"
exec rainbridge node start --dir "$DIR"
