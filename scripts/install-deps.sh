#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, skipping what is
# already there: the s3s-fs S3-compatible server (a real server process the
# tests start on loopback). protoc needs no install: proto/build.rs uses the
# vendored one when no system protoc exists.
set -euo pipefail
S3S_VERSION=0.14.1
if command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
  echo "s3s-fs: present"
else
  echo "s3s-fs: installing $S3S_VERSION (takes a few minutes)"
  cargo install "s3s-fs@$S3S_VERSION" --locked --features binary
fi
