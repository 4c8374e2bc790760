#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it: the Rust workspace (unit, model,
# black-box and fault tests), then the Python SDK's tests and the console's browser tests against
# the binary that build produced.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked
# The tests above built target/debug/minion (the black-box tests run it), so the Python suite runs
# this tree's binary. (A separate `cargo build --bin minion` would resolve features for the root
# package alone and rebuild it.)
MINION_BIN="$PWD/target/debug/minion" scripts/test-python.sh
MINION_BIN="$PWD/target/debug/minion" scripts/test-browser.sh
