#!/usr/bin/env bash
# Backup and restore throughput of a generated MatrixOne tree, release
# build, embedded default, to a filesystem target and to a local s3s-fs
# server. Prints a table. SIZE (default 1GiB), WORK (default /tmp/mo-br-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1GiB}
WORK=${WORK:-/tmp/mo-br-bench}
scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins -q
bin=$PWD/target/release
rm -rf "$WORK" && mkdir -p "$WORK/s3root/bench" && cd "$WORK"
"$bin/mo-br-sample" --out mo --size "$SIZE" --seed 1 >/dev/null
# s3s-fs keeps each object's metadata in a file named after the base64 of
# its key, so keys over ~150 bytes fail there (not on real S3); the sample's
# deepest log-service snapshot files are that long and tiny: leave them out.
find mo/mo-data/logservice-data -type f | awk 'length($0) > 120' | xargs -r rm -f
bytes=$(du -sb mo/mo-data/shared2 mo/mo-data/logservice-data | awk '{s+=$1} END {print s}')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchsecret s3root >/dev/null 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true' EXIT
sleep 1
s3=(--endpoint "http://127.0.0.1:$port" --access_key_id bench --secret_access_key benchsecret --bucket bench --is_minio)

secs() { local t0 t1; sync; t0=$(date +%s.%N); "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); awk "BEGIN {print $t1 - $t0}"; }
id_of() { "$bin/mo_br" list --json | tail -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/'; }
row() { printf '| %-22s | %8.2f s | %8.1f MB/s |\n' "$1" "$2" "$(awk "BEGIN {print $bytes / $2 / 1000000}")"; }
sync

echo "data: $bytes bytes (SHARED + logservice-data), $(find mo/mo-data/shared2 -type f | wc -l) files"
echo "| operation              |     time   |   throughput  |"
echo "|------------------------|------------|---------------|"
t=$(secs "$bin/mo_br" backup --backup_dir filesystem --path "$WORK/fsbackup" --data_dir mo/mo-data --launch_config mo/etc/launch/launch.toml)
row "backup -> filesystem" "$t"
fsid=$(id_of)
t=$(secs "$bin/mo_br" restore "$fsid" --restore_dir filesystem --restore_path "$WORK/fsrestore")
row "restore <- filesystem" "$t"
t=$(secs "$bin/mo_br" check "$fsid")
row "check (filesystem)" "$t"
t=$(secs "$bin/mo_br" backup --backup_dir s3 "${s3[@]}" --filepath /b1 --data_dir mo/mo-data --launch_config mo/etc/launch/launch.toml)
row "backup -> s3s-fs" "$t"
s3id=$(id_of)
t=$(secs "$bin/mo_br" restore "$s3id" --backup_access_key_id bench --backup_secret_access_key benchsecret --restore_dir filesystem --restore_path "$WORK/s3restore")
row "restore <- s3s-fs" "$t"
diff -r -x '.tmp.*' mo/mo-data/shared2 s3restore/mo-data/shared2 && echo "restored trees verified identical"
