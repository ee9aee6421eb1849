#!/usr/bin/env bash
# Prints the storage driver Outpost's buildah commands use: $BUILDAH_STORAGE when set, else
# overlay when it works here (native overlay: layers are diffs, a build takes seconds), else vfs
# (works everywhere, but copies the whole root file system for every container and layer).
# buildah keeps each driver's images apart, so the two never mix.
set -euo pipefail
if [ -n "${BUILDAH_STORAGE:-}" ]; then
    echo "$BUILDAH_STORAGE"
    exit 0
fi
probe() {
    local ctr
    ctr=$(buildah --storage-driver overlay from --quiet scratch 2>/dev/null) || return 1
    if buildah --storage-driver overlay mount "$ctr" >/dev/null 2>&1; then
        buildah --storage-driver overlay rm "$ctr" >/dev/null 2>&1
        return 0
    fi
    buildah --storage-driver overlay rm "$ctr" >/dev/null 2>&1 || true
    return 1
}
if probe; then echo overlay; else echo vfs; fi
