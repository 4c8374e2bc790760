#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it: the Rust workspace (unit, model,
# black-box and fault tests), then the Python SDK's tests against the binary that build produced.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked
# A no-op after the tests above (they build the binary); kept so the Python suite never runs an
# old one.
cargo build --locked --bin minion
MINION_BIN="$PWD/target/debug/minion" scripts/test-python.sh
