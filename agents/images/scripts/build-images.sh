#!/usr/bin/env bash
# Builds Outpost's container images (`make images`).
#
#   agents/images/scripts/build-images.sh [NAME...]        NAME: base claude codex gemini aider grok control-plane
#   IMAGES="base control-plane" make images  the same selection through the environment
#
# Every image is tagged outpost/<name>:<TAG> and outpost/<name>:latest. TAG defaults to the
# commit's short SHA (12 hex digits) with "-dirty" appended when tracked files differ from it;
# agents/images/scripts/publish-images.sh pushes only clean SHA tags.
#
# Engine: docker when `docker info` answers, else buildah (vfs storage, chroot isolation).
# base is built first; the agent images are FROM it (build argument BASE_IMAGE).
#
# Offline (buildah only, when the public base images cannot be pulled or OUTPOST_OFFLINE=1):
#   - the base images become a local debootstrap'd Debian (agents/images/scripts/bootstrap-base-image.sh);
#   - control-plane gets its wheels built on this host into build/wheelhouse/control-plane/,
#     which its Dockerfile installs from without an index.
# The agent images install their CLIs from PyPI (aider; Node.js for the others) and the npm
# registry inside the build, offline or not (with the extra CA bundle below).
#
# Extra CA bundle: every build gets OUTPOST_BUILD_CA_BUNDLE (default: the system bundle,
# /etc/ssl/certs/ca-certificates.crt, when present; "none" passes nothing) as the build-time
# secret `ca`, which the steps that reach a package registry trust while they run (a
# TLS-inspecting proxy, or a machine whose registries are reached through one). A secret is
# mounted for one RUN and never stored in a layer or the image's configuration.
#
# Environment: TAG, ENGINE (docker|buildah), OUTPOST_OFFLINE (1|0, default: detect),
# OUTPOST_BUILD_CA_BUNDLE, BUILDAH_STORAGE (overlay when it works, else vfs:
# agents/images/scripts/buildah-storage.sh), DOCKER_PLATFORM (e.g. linux/amd64, passed to docker
# build --platform).
set -euo pipefail

cd "$(dirname "$0")/../../.."
ROOT=$(pwd)

ALL_IMAGES=(base claude codex gemini aider grok control-plane)
PIP_IMAGES=" control-plane "
# The public images the Dockerfiles default to (keep in step with their ARG lines).
PUBLIC_BASE=docker.io/library/debian:bookworm-slim
PUBLIC_PYTHON=docker.io/library/python:3.11-slim-bookworm

log() { echo "build-images: $*" >&2; }
die() {
    log "$*"
    exit 1
}

dockerfile_for() {
    if [ "$1" = control-plane ]; then
        echo control_plane/Dockerfile
    else
        echo "agents/images/$1/Dockerfile"
    fi
}

# --- extra CA bundle ------------------------------------------------------------------------
SYSTEM_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CA_BUNDLE="${OUTPOST_BUILD_CA_BUNDLE:-}"
if [ -z "$CA_BUNDLE" ] && [ -f "$SYSTEM_CA_BUNDLE" ]; then
    CA_BUNDLE=$SYSTEM_CA_BUNDLE
fi
[ "$CA_BUNDLE" = none ] && CA_BUNDLE=
secret=()
if [ -n "$CA_BUNDLE" ]; then
    [ -f "$CA_BUNDLE" ] && [ -r "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ] \
        || die "OUTPOST_BUILD_CA_BUNDLE=$CA_BUNDLE is not a readable, non-empty file"
    secret=(--secret "id=ca,src=$(realpath "$CA_BUNDLE")")
fi

# --- selection ---------------------------------------------------------------------------
if [ "$#" -gt 0 ]; then
    read -r -a requested <<<"$*"
elif [ -n "${IMAGES:-}" ]; then
    read -r -a requested <<<"$IMAGES"
else
    requested=("${ALL_IMAGES[@]}")
fi
for name in "${requested[@]}"; do
    [[ " ${ALL_IMAGES[*]} " == *" $name "* ]] || die "unknown image '$name' (known: ${ALL_IMAGES[*]})"
done

# --- tag -----------------------------------------------------------------------------------
if [ -z "${TAG:-}" ]; then
    TAG=$(git rev-parse --short=12 HEAD 2>/dev/null) || die "not a git checkout; set TAG"
    if ! git diff --quiet HEAD -- 2>/dev/null; then
        TAG="$TAG-dirty"
    fi
fi
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "TAG '$TAG' is not a valid image tag"

# --- engine --------------------------------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v buildah >/dev/null 2>&1; then
        ENGINE=buildah
    else
        die "neither a running docker engine nor buildah; run agents/images/scripts/install-image-tools.sh"
    fi
fi
if [ "$ENGINE" = buildah ]; then
    BUILDAH_STORAGE="${BUILDAH_STORAGE:-$(agents/images/scripts/buildah-storage.sh)}"
    export BUILDAH_STORAGE
fi
STORAGE="${BUILDAH_STORAGE:-}"
bah() { buildah --storage-driver "$STORAGE" "$@"; }

have_or_pull() {
    bah inspect --type image "$1" >/dev/null 2>&1 || timeout 300 buildah --storage-driver "$STORAGE" \
        pull --quiet "$1" >/dev/null 2>&1
}

offline=0
local_base=
if [ "$ENGINE" = buildah ]; then
    case "${OUTPOST_OFFLINE:-}" in
    1) offline=1 ;;
    0) offline=0 ;;
    *) if ! have_or_pull "$PUBLIC_BASE" || ! have_or_pull "$PUBLIC_PYTHON"; then offline=1; fi ;;
    esac
    if [ "$offline" = 1 ]; then
        local_base=$(agents/images/scripts/bootstrap-base-image.sh)
        log "offline: base images are $local_base (debootstrap)"
    fi
fi

# --- plan ----------------------------------------------------------------------------------
plan=()
for name in "${ALL_IMAGES[@]}"; do
    [[ " ${requested[*]} " == *" $name "* ]] && plan+=("$name")
done

image_ref() {
    if [ "$ENGINE" = buildah ]; then echo "localhost/outpost/$1:$TAG"; else echo "outpost/$1:$TAG"; fi
}

# An agent image needs outpost/base:<TAG> and outpost/base-system:<TAG> (base without its
# runner layer); build base first unless both exist.
needs_base=0
for name in "${plan[@]}"; do
    [ "$name" = base ] || [ "$name" = control-plane ] || needs_base=1
done
if [ "$needs_base" = 1 ] && [[ " ${plan[*]} " != *" base "* ]]; then
    for image in base base-system; do
        if [ "$ENGINE" = buildah ]; then
            bah inspect --type image "$(image_ref $image)" >/dev/null 2>&1 && continue
        else
            docker image inspect "$(image_ref $image)" >/dev/null 2>&1 && continue
        fi
        plan=(base "${plan[@]}")
        break
    done
fi

# --- wheelhouses (offline pip images) ------------------------------------------------------
fill_wheelhouse() {
    local name=$1 dir="build/wheelhouse/$1" py="${PYTHON:-$ROOT/.venv/bin/python}"
    [ -x "$py" ] || py=python3
    local pip_log stamp
    set -- --no-deps --only-binary=:all: -r control_plane/requirements.txt
    stamp=$(sha256sum control_plane/requirements.txt | cut -c1-64)
    # Unchanged pins: the wheels are already there (and the build's layer cache still holds).
    if [ "$(cat "$dir.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    rm -rf "$dir" "$dir.stamp" && mkdir -p "$dir"
    pip_log=$(mktemp)
    log "$name: building the pinned wheels on this host into $dir"
    if ! "$py" -m pip wheel --disable-pip-version-check --progress-bar off "$@" -w "$dir" >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        rm -f "$pip_log"
        die "$name: could not build its wheels"
    fi
    rm -f "$pip_log"
    echo "$stamp" >"$dir.stamp"
}

# --- build ---------------------------------------------------------------------------------
# engine_build DOCKERFILE NAME [ARG...]: builds outpost/NAME:<TAG> (and :latest) with the
# Dockerfile's ignore file and the extra CA bundle.
engine_build() {
    local dockerfile=$1 name=$2 ref ignore=()
    shift 2
    ref=$(image_ref "$name")
    [ -f "$dockerfile.dockerignore" ] && ignore=(--ignorefile "$dockerfile.dockerignore")
    if [ "$ENGINE" = docker ]; then
        # BuildKit reads $dockerfile.dockerignore by itself.
        DOCKER_BUILDKIT=1 docker build ${DOCKER_PLATFORM:+--platform "$DOCKER_PLATFORM"} \
            "$@" "${secret[@]}" -f "$dockerfile" -t "$ref" -t "outpost/$name:latest" .
    else
        bah bud --quiet --format docker --isolation chroot --layers "${ignore[@]}" "$@" "${secret[@]}" \
            -f "$dockerfile" -t "$ref" -t "localhost/outpost/$name:latest" . >/dev/null
    fi
}

log "engine $ENGINE${STORAGE:+ ($STORAGE storage)}, tag $TAG, extra CA bundle ${CA_BUNDLE:-none}, images: ${plan[*]:-none}"
built=()
for name in "${plan[@]}"; do
    dockerfile=$(dockerfile_for "$name")
    case "$name" in
    base) args=(${local_base:+--build-arg "BASE_IMAGE=$local_base"}) ;;
    control-plane) args=(${local_base:+--build-arg "PYTHON_IMAGE=$local_base"}) ;;
    # The agent images stand on base without its runner, take the runner from base, and run
    # their build stages on base's own parent (BUILD_IMAGE).
    *) args=(--build-arg "BASE_IMAGE=$(image_ref base)" --build-arg "SYSTEM_IMAGE=$(image_ref base-system)"
        ${local_base:+--build-arg "BUILD_IMAGE=$local_base"}) ;;
    esac
    if [ "$offline" = 1 ] && [[ "$PIP_IMAGES" == *" $name "* ]]; then
        fill_wheelhouse "$name"
    elif [ -d "build/wheelhouse/$name" ]; then
        rm -rf "build/wheelhouse/$name" "build/wheelhouse/$name.stamp"  # online builds read the index, never a stale wheelhouse
    fi
    started=$SECONDS
    log "$name: building $(image_ref "$name") from $dockerfile"
    if [ "$name" = base ]; then
        engine_build "$dockerfile" base-system "${args[@]}" --target system
    fi
    engine_build "$dockerfile" "$name" "${args[@]}"
    log "$name: built in $((SECONDS - started)) s"
    built+=("$name")
done

echo "built (tag $TAG): ${built[*]:-none}"
