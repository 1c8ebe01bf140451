#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, skipping what is
# already there: the s3s-fs S3-compatible server (a real server process the
# tests start on loopback) and Prometheus with promtool. protoc needs no install: proto/build.rs uses the
# vendored one when no system protoc exists.
set -euo pipefail
S3S_VERSION=0.14.1
if command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
  echo "s3s-fs: present"
else
  echo "s3s-fs: installing $S3S_VERSION (takes a few minutes)"
  cargo install "s3s-fs@$S3S_VERSION" --locked --features binary
fi
# Prometheus and promtool (Debian's package, ~100 MB): the monitoring tests
# run the real server against the daemons with deploy/prometheus/alerts.yml.
# Without recommends: none of its exporters or web assets are needed.
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "prometheus: present"
elif command -v apt-get >/dev/null 2>&1; then
  echo "prometheus: installing Debian's package"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends prometheus >/dev/null \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends prometheus >/dev/null; }
else
  echo "prometheus: not found and no apt-get; install prometheus and promtool (2.x) by hand" >&2
  exit 1
fi
# Chromium (Debian's package): the status page's test drives it headless
# over the DevTools protocol.
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: present"
elif command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's package"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends chromium >/dev/null \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends chromium >/dev/null; }
else
  echo "chromium: not found and no apt-get; install chromium by hand" >&2
  exit 1
fi
