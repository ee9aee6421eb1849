#!/usr/bin/env bash
# Regenerates control_plane/requirements.txt: the runtime dependencies of Outpost's control
# plane (pyproject.toml's [project] dependencies and their closure) pinned to the versions in
# requirements.lock. Resolves with pip's --dry-run, so nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY="${PYTHON:-.venv/bin/python}"
report=$(mktemp)
trap 'rm -f "$report"' EXIT

mapfile -t deps < <("$PY" -c '
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    print(dep)
')
"$PY" -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
    --report "$report" -c requirements.lock "${deps[@]}" 2>/dev/null

{
    sed -n '1,/^[^#]/{/^#/p}' control_plane/requirements.txt
    "$PY" -c '
import json, sys
report = json.load(open(sys.argv[1]))
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    meta = item["metadata"]
    print(meta["name"] + "==" + meta["version"])
' "$report"
} >control_plane/requirements.txt.new
mv control_plane/requirements.txt.new control_plane/requirements.txt
echo "control_plane/requirements.txt: $(grep -c '==' control_plane/requirements.txt) pins"
