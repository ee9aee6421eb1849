#!/usr/bin/env bash
# Installs what Outpost needs to build its container images without a Docker engine:
# buildah (builds and runs images rootless-style with the vfs driver and chroot isolation)
# and debootstrap (makes the offline Debian base image). Idempotent: installs nothing when
# the tools are already there. Needs root (or sudo) and Debian's package archive.
set -euo pipefail

PACKAGES=(buildah debootstrap)

missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$0" "$@"
    fi
    echo "install-image-tools: need root to install ${missing[*]} (apt-get)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-image-tools: no apt-get; install ${PACKAGES[*]} with this system's package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-image-tools: installed ${missing[*]}"
