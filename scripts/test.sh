#!/usr/bin/env bash
# Runs every test: unit tests and the integration tests, which start real
# processes (s3s-fs, mo-br-coordinator, mo-br-agent, mo_br) on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The integration tests run the binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
