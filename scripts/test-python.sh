#!/usr/bin/env bash
# Run the Python SDK's test suite (clients/python/tests) against a real `minion serve`.
#
#   scripts/test-python.sh [pytest args...]
#
# Creates (or reuses) a virtualenv in target/python-venv, installs ./clients/python[test] into it,
# and runs pytest. The server binary is $MINION_BIN, by default target/debug/minion (build it
# first: cargo build). $PYTHON picks the interpreter (default python3, 3.10 or later).
# Exits non-zero when anything fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

python="${PYTHON:-python3}"
venv="$repo/target/python-venv"
export MINION_BIN="${MINION_BIN:-$repo/target/debug/minion}"

if [[ ! -x "$MINION_BIN" ]]; then
    echo "test-python: no minion binary at $MINION_BIN (run cargo build, or set MINION_BIN)" >&2
    exit 2
fi

"$python" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"test-python: Python 3.10 or later is needed, this is {sys.version.split()[0]}")
PY

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "test-python: creating the virtualenv $venv"
    rm -rf "$venv"
    mkdir -p "$repo/target"
    "$python" -m venv "$venv"
fi

echo "test-python: installing ./clients/python[test]"
# Then reinstall the SDK itself: its version number does not change with its code.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./clients/python[test]"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./clients/python

echo "test-python: running pytest with MINION_BIN=$MINION_BIN"
cd "$repo/clients/python"
exec "$venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
