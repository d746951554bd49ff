#!/usr/bin/env bash
# make image: the Rainbridge OCI image, built without an image registry.
#
# The root file system is Debian bookworm's own packages (debootstrap, minbase, plus python3,
# python3-venv and ca-certificates; bookworm's python3 is 3.11, the wheel's cp311), with
# dist/'s wheel and its postgres and mysql extras installed into a venv at /opt/rainbridge
# from a wheelhouse downloaded here (the chroot needs no network). A user `rainbridge` (uid/gid 10001) owns the volume
# /var/lib/rainbridge, the node's directory; the entry point initialises the node there on
# its first start (deploy/image/entrypoint.sh) and runs it. buildah packs the tree as one
# layer, from scratch, into build/image/: an OCI archive, and a Docker-format archive that
# also carries the HEALTHCHECK (the OCI image configuration has no field for one).
#
# Needs root (debootstrap, chroot), debootstrap and buildah (Debian: apt-get install
# debootstrap buildah podman). Debian's mirror is the one this machine's apt uses, or
# $DEBIAN_MIRROR. The debootstrapped base is kept in build/image/base between builds
# (delete it to refresh the packages); everything else is made anew.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=build/image
BASE=$OUT/base
ROOTFS=$OUT/rootfs
SUITE=bookworm
NODE_UID=10001
VENV=/opt/rainbridge
HOST_PY=${HOST_PY:-.venv/bin/python}
# the database drivers a production node may be configured with (its state on PostgreSQL,
# datasets on PostgreSQL or MySQL/MariaDB), since an image cannot add them later;
# IMAGE_EXTRAS= (empty) builds without them (mysql's ConnectorX alone is some 180 MB)
EXTRAS=${IMAGE_EXTRAS-postgres,mysql}
# buildah's own storage under build/image, apart from any other container work on this
# machine; vfs needs no overlay mount (so it works inside sandboxes), and with a single
# layer its copying costs little
BUILDAH=(buildah --root "$PWD/$OUT/storage" --runroot "$PWD/$OUT/run" --storage-driver vfs)

die() { echo "make image: $*" >&2; exit 2; }
# commands in the image's tree get a clean environment, not this machine's pip or Python
# settings
in_root() { chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"
for tool in debootstrap buildah chroot; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap buildah podman)"
done
# $WHEEL: a wheel built elsewhere; else make dist's
WHEEL=${WHEEL:-$(ls -t dist/rainbridge-*-cp311-cp311-*.whl 2>/dev/null | head -n1 || true)}
[ -n "$WHEEL" ] && [ -f "$WHEEL" ] || die "no cp311 wheel in dist/: run make dist"
VERSION=$(basename "$WHEEL" | cut -d- -f2)

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    # the first Debian archive this machine's apt is configured with (deb822 or one-line)
    { awk '/^URIs:/ { print $2 }' /etc/apt/sources.list.d/*.sources 2>/dev/null
      awk '$1 == "deb" { print ($2 ~ /^\[/ ? $3 : $2) }' /etc/apt/sources.list \
          /etc/apt/sources.list.d/*.list 2>/dev/null; } | grep -v -- '-security' | head -n1
}

mkdir -p "$OUT"
if [ ! -e "$BASE/.complete" ]; then
    MIRROR=$(mirror)
    [ -n "$MIRROR" ] || die "no Debian mirror configured for apt: set DEBIAN_MIRROR"
    rm -rf "$BASE"
    echo "== debootstrap $SUITE (minbase + python3 python3-venv ca-certificates)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$BASE" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 \
        || die "debootstrap failed (see $OUT/debootstrap.log)"
    touch "$BASE/.complete"
fi
IMAGE_PY=$(chroot "$BASE" env -i python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$IMAGE_PY" = 3.11 ] || die "the base's python3 is $IMAGE_PY; the wheel is for 3.11"

echo "== wheelhouse: $(basename "$WHEEL")${EXTRAS:+[$EXTRAS]} and its dependencies (cp311, this platform)"
rm -rf "$OUT/wheelhouse"
"$HOST_PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    -d "$OUT/wheelhouse" "$WHEEL${EXTRAS:+[$EXTRAS]}"

echo "== root file system"
rm -rf "$ROOTFS"
cp -a "$BASE" "$ROOTFS"
rm -f "$ROOTFS/.complete"
mkdir -p "$ROOTFS/tmp/install"
cp "$OUT"/wheelhouse/*.whl "$ROOTFS/tmp/install/"
in_root python3 -m venv "$VENV"
in_root "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
    --no-index --find-links /tmp/install "/tmp/install/$(basename "$WHEEL")${EXTRAS:+[$EXTRAS]}"
in_root "$VENV/bin/pip" check
# pip itself is not needed to run a node
in_root "$VENV/bin/pip" uninstall -q -y pip
install -m 0755 deploy/image/entrypoint.sh "$ROOTFS/usr/local/bin/rainbridge-entrypoint"
{ echo "#!$VENV/bin/python"; cat deploy/image/healthcheck.py; } > "$ROOTFS/usr/local/bin/rainbridge-healthcheck"
chmod 0755 "$ROOTFS/usr/local/bin/rainbridge-healthcheck"
in_root groupadd --gid "$NODE_UID" rainbridge
in_root useradd --uid "$NODE_UID" --gid "$NODE_UID" --home-dir /var/lib/rainbridge \
    --no-create-home --shell /usr/sbin/nologin rainbridge
install -d -m 0700 -o "$NODE_UID" -g "$NODE_UID" "$ROOTFS/var/lib/rainbridge"
# what a node never uses at run time: package lists and caches, documentation, the installer
rm -rf "$ROOTFS/tmp/install" "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/*
: > "$ROOTFS/etc/resolv.conf"   # the runtime provides its own
in_root "$VENV/bin/rainbridge" --version

echo "== OCI image rainbridge:$VERSION"
"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
"${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
# the working container in Docker format, which has a field for the HEALTHCHECK
ctr=$("${BUILDAH[@]}" from --format docker scratch)
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${BUILDAH[@]}" mount "$ctr")
cp -a "$ROOTFS/." "$mnt/"
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" config \
    --user "$NODE_UID:$NODE_UID" \
    --workingdir /var/lib/rainbridge \
    --env RAINBRIDGE_DIR=/var/lib/rainbridge \
    --env "PATH=$VENV/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --env LANG=C.UTF-8 \
    --volume /var/lib/rainbridge \
    --port 8443/tcp --port 9443/tcp \
    --entrypoint '["/usr/local/bin/rainbridge-entrypoint"]' \
    --cmd '["start"]' \
    --stop-signal SIGTERM \
    --healthcheck 'CMD ["/usr/local/bin/rainbridge-healthcheck"]' \
    --healthcheck-interval 30s --healthcheck-timeout 10s \
    --healthcheck-start-period 30s --healthcheck-retries 3 \
    --label org.opencontainers.image.title=rainbridge \
    --label "org.opencontainers.image.version=$VERSION" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.description=Rainbridge node (Debian $SUITE, Python $IMAGE_PY)" \
    --label io.rainbridge.healthcheck=/usr/local/bin/rainbridge-healthcheck \
    "$ctr"
"${BUILDAH[@]}" commit -q --format docker "$ctr" "localhost/rainbridge:$VERSION" >/dev/null 2>&1
rm -f "$OUT"/rainbridge-*.tar
"${BUILDAH[@]}" push -q --format oci "localhost/rainbridge:$VERSION" \
    "oci-archive:$OUT/rainbridge-$VERSION.oci.tar:localhost/rainbridge:$VERSION" 2>/dev/null
"${BUILDAH[@]}" push -q --format v2s2 "localhost/rainbridge:$VERSION" \
    "docker-archive:$OUT/rainbridge-$VERSION.docker.tar:localhost/rainbridge:$VERSION"
"${BUILDAH[@]}" rm "$ctr" >/dev/null
trap - EXIT
# the build's storage is only a means: the archives are the product
"${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true

echo "== built"
ls -l "$OUT"/rainbridge-"$VERSION".*.tar
echo "root file system: $(du -sh "$ROOTFS" | cut -f1); user rainbridge ($NODE_UID); volume /var/lib/rainbridge"
