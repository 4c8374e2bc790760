#!/usr/bin/env bash
# Browser tests of the web console (tests/browser): playwright-core driving Debian's chromium
# against real `minion serve` nodes that the tests start themselves.
#
#   MINION_BIN          server binary (default: target/debug/minion of this checkout)
#   MINION_CONSOLE_DIR  unset in CI, so the compiled-in console is what gets tested; set it to
#                       <repo>/console while working on the console to test the files on disk
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MINION_BIN="${MINION_BIN:-$root/target/debug/minion}"

if [[ ! -x "$MINION_BIN" ]]; then
  echo "test-browser: no server binary at $MINION_BIN (cargo build first, or set MINION_BIN)" >&2
  exit 1
fi

if [[ ! -x /usr/bin/chromium ]]; then
  echo "test-browser: installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

command -v node >/dev/null || { echo "test-browser: node (20 or later) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "test-browser: npm is required" >&2; exit 1; }

cd "$root/tests/browser"
# playwright-core never downloads a browser by itself; say so anyway
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null

start=$(date +%s)
node --test --test-reporter=spec console.test.mjs
echo "test-browser: passed in $(( $(date +%s) - start )) s"
