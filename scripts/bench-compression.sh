#!/usr/bin/env bash
# What --compression costs and saves: backups of one generated MatrixOne tree
# with none / zstd:1 / zstd:3 / zstd:9 to a filesystem and to a local s3s-fs,
# then restore and check of each, release build, embedded default. Runs twice:
# on the sample generator's contents (3/4 random bytes, 1/4 counters: its
# ratio says little), and with every object replaced by LZ4-compressed
# column-like data (scripts/lz4-columns.py), closer to MatrixOne's objects.
# SIZE (default 256MiB), WORK (default /tmp/mo-br-bench-compression).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-256MiB}
WORK=${WORK:-/tmp/mo-br-bench-compression}
LEVELS=${LEVELS:-"none zstd:1 zstd:3 zstd:9"}
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
scripts=$PWD/scripts
rm -rf "$WORK" && mkdir -p "$WORK/s3root/bench" && cd "$WORK"
"$bin/mo-br-sample" --out mo --size "$SIZE" --seed 1 >/dev/null
# s3s-fs cannot store keys over ~150 bytes (see scripts/bench.sh).
find mo/mo-data/logservice-data -type f | awk 'length($0) > 120' | xargs -r rm -f

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchsecret s3root >/dev/null 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
s3=(--endpoint "http://127.0.0.1:$port" --access_key_id bench --secret_access_key benchsecret --bucket bench --is_minio)
keys=(--backup_access_key_id bench --backup_secret_access_key benchsecret)
src=(--data_dir mo/mo-data --launch_config mo/etc/launch/launch.toml)

secs() { local t0 t1; sync; t0=$(date +%s.%N); "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); awk "BEGIN {print $t1 - $t0}"; }
id_of() { "$bin/mo_br" list --json | tail -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/'; }
mbs() { awk "BEGIN {printf \"%.1f\", $1 / $2 / 1000000}"; }

run() {
  local what=$1 bytes n=0
  bytes=$(du -sb mo/mo-data/shared2 mo/mo-data/logservice-data | awk '{s+=$1} END {print s}')
  echo
  echo "$what: $bytes bytes (SHARED + logservice-data), $(find mo/mo-data/shared2 -type f | wc -l) files; MB/s of original bytes"
  echo "| compression | to | stored/original | backup MB/s | restore MB/s | check MB/s |"
  echo "|---|---|---|---|---|---|"
  for c in $LEVELS; do
    for to in filesystem s3; do
      n=$((n + 1))
      if [ "$to" = filesystem ]; then
        dst=(--backup_dir filesystem --path "$WORK/b$n"); stored_dir=$WORK/b$n; ka=()
      else
        dst=(--backup_dir s3 "${s3[@]}" --filepath "/b$n"); stored_dir=$WORK/s3root/bench/b$n; ka=("${keys[@]}")
      fi
      tb=$(secs "$bin/mo_br" backup "${dst[@]}" "${src[@]}" --compression "$c")
      id=$(id_of)
      stored=$(du -sb "$stored_dir/tae" "$stored_dir/logservice-data" 2>/dev/null | awk '{s+=$1} END {print s}')
      tr=$(secs "$bin/mo_br" restore "$id" "${ka[@]}" --restore_dir filesystem --restore_path "$WORK/r$n")
      tc=$(secs "$bin/mo_br" check "$id" "${ka[@]}")
      diff -rq -x '.tmp.*' mo/mo-data/shared2 "$WORK/r$n/mo-data/shared2" >/dev/null || { echo "restore $n differs" >&2; exit 1; }
      rm -rf "$WORK/r$n"
      printf '| %s | %s | %s | %s | %s | %s |\n' "$c" "$to" \
        "$(awk "BEGIN {printf \"%.3f\", $stored / $bytes}")" "$(mbs "$bytes" "$tb")" "$(mbs "$bytes" "$tr")" "$(mbs "$bytes" "$tc")"
      rm -rf "$stored_dir"
    done
  done
}

run "sample contents"
# Every object and ckp/gc file rewritten with LZ4 column data of its size.
total=$(find mo/mo-data/shared2 -type f ! -name '.tmp.*' -printf '%s\n' | sort -n | tail -1)
python3 "$scripts/lz4-columns.py" lz4cols.bin "$((total + 1))"
python3 - lz4cols.bin mo/mo-data/shared2 <<'PY'
import os, sys
blob = open(sys.argv[1], "rb").read()
off = 0
for d, _, files in os.walk(sys.argv[2]):
    for f in files:
        p = os.path.join(d, f)
        n = os.path.getsize(p)
        if n == 0:
            continue
        off = (off + 7919 * 4096) % max(1, len(blob) - n)
        with open(p, "r+b") as out:
            out.write(blob[off:off + n])
PY
run "LZ4 column-like contents"
