#!/usr/bin/env bash
# Runs the conformance suite: a virtualenv with the pinned AWS clients, then
# pytest (which builds and starts the test server itself). Arguments go to
# pytest, e.g. `tests/conformance/run.sh -k sigv4`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HEARTH_CONFORMANCE_VENV:-$here/.venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
