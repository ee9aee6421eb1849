#!/usr/bin/env bash
# Makes Outpost's offline base image: a Debian bookworm root file system from debootstrap,
# committed into buildah's storage. Used by agents/images/scripts/build-images.sh (buildah mode) when the
# public base images (debian:bookworm-slim, python:3.11-slim-bookworm) cannot be pulled, and
# by tests/images. Prints the image name on stdout; everything else goes to stderr.
#
# Cached: the image name carries a hash of everything that shapes the root file system, so a
# second run finds the image in buildah's storage and returns at once; the debootstrap'd
# tarball is also kept under the cache directory so a wiped buildah storage costs seconds.
#
#   OUTPOST_CACHE_DIR   where the root file system tarball is kept (~/.cache/outpost)
#   DEBIAN_MIRROR       the archive debootstrap reads (http://deb.debian.org/debian)
#   BUILDAH_STORAGE     buildah's storage driver (default: agents/images/scripts/buildah-storage.sh)
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
# python3-venv gives ensurepip (pip in a virtual environment); the rest is what the base and
# control-plane images would otherwise fetch from the archive.
INCLUDE=python3,python3-venv,ca-certificates,git
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STORAGE="${BUILDAH_STORAGE:-$("$(dirname "$0")"/buildah-storage.sh)}"
CACHE_DIR="${OUTPOST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost}"
FORMAT_VERSION=1  # bump to invalidate every cached base after changing this script's steps

log() { echo "bootstrap-base-image: $*" >&2; }

for tool in buildah debootstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "$tool is missing; run agents/images/scripts/install-image-tools.sh"
        exit 1
    fi
done

key=$(printf '%s\n' "$FORMAT_VERSION" "$SUITE" "$VARIANT" "$INCLUDE" "$MIRROR" "$(uname -m)" \
    | sha256sum | cut -c1-12)
image="localhost/outpost-bootstrap/debian-${SUITE}:${key}"
tarball="$CACHE_DIR/debian-${SUITE}-${key}.tar"

bah() { buildah --storage-driver "$STORAGE" "$@"; }

if bah inspect --type image "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

mkdir -p "$CACHE_DIR"
if [ ! -s "$tarball" ]; then
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs" "$tarball.partial"' EXIT
    log "debootstrap $SUITE ($VARIANT, +$INCLUDE) from $MIRROR"
    debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" >&2
    # What a registry's debian:bookworm-slim also leaves out: package lists and caches.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/* \
        "$rootfs"/debootstrap
    : >"$rootfs"/etc/hostname
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
fi

log "committing $image"
ctr=$(bah from --quiet scratch)
trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(bah mount "$ctr")
tar --numeric-owner --xattrs -C "$mnt" -xf "$tarball"
bah umount "$ctr" >/dev/null
bah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd /bin/bash \
    --label org.opencontainers.image.description="Outpost offline base: Debian $SUITE ($VARIANT) from debootstrap" \
    "$ctr"
bah commit --quiet --rm "$ctr" "$image" >/dev/null
trap - EXIT
echo "$image"
