#!/usr/bin/env bash
# `mo_br catalog rebuild` over a bucket (s3s-fs on loopback) and a directory
# tree holding one real backup plus many unrelated objects: time and max
# RSS for each count, to show that the scan streams (memory stays flat as
# the listing grows; only backup_meta files are read).
#
#   COUNTS="1000 50000" BIN=target/debug WORK=/tmp/mo-br-bench-rebuild scripts/bench-rebuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-1000 50000}
BIN=$(realpath "${BIN:-target/debug}")
WORK=${WORK:-/tmp/mo-br-bench-rebuild}
export PATH="$HOME/.cargo/bin:$PATH"
rm -rf "$WORK" && mkdir -p "$WORK/s3/bucket" "$WORK/cwd" && cd "$WORK"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchsecret "$WORK/s3" >s3.log 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q . s3.log 2>/dev/null && break; sleep 0.1; done
"$BIN/mo-br-sample" --out node --size 4MiB >/dev/null
# s3s-fs refuses keys as long as some log service paths: not what is measured.
rm -rf node/mo-data/logservice-data
s3=(--endpoint "http://127.0.0.1:$port" --bucket bucket --access_key_id bench --secret_access_key benchsecret --is_minio)
(cd cwd && "$BIN/mo_br" backup --backup_dir s3 "${s3[@]}" --filepath /all/b1 \
  --data_dir "$WORK/node/mo-data" --launch_config "$WORK/node/etc/launch/launch.toml" >/dev/null)
(cd cwd && "$BIN/mo_br" backup --backup_dir filesystem --path "$WORK/fs/b1" \
  --data_dir "$WORK/node/mo-data" --launch_config "$WORK/node/etc/launch/launch.toml" >/dev/null)
printf '%-10s %10s %10s %12s\n' where objects seconds max_rss_kib
for n in $COUNTS; do
  python3 - "$WORK" "$n" <<'PY'
import os, sys
work, n = sys.argv[1], int(sys.argv[2])
for root in (f"{work}/s3/bucket/all/junk", f"{work}/fs/junk"):
    os.makedirs(root, exist_ok=True)
    have = len(os.listdir(root))
    for i in range(have, n):
        with open(f"{root}/obj{i:08d}", "wb") as f:
            f.write(b"x")
PY
  for where in s3 filesystem; do
    rm -f cwd/mo_br.meta
    if [ "$where" = s3 ]; then
      args=(--backup_dir s3 --backup_endpoint "http://127.0.0.1:$port" --backup_bucket bucket
        --backup_filepath all --backup_access_key_id bench --backup_secret_access_key benchsecret --backup_is_minio)
    else
      args=(--backup_dir filesystem --backup_path "$WORK/fs")
    fi
    (cd cwd && /usr/bin/time -f '%e %M' -o ../t "$BIN/mo_br" catalog rebuild "${args[@]}" >out) ||
      { cat cwd/out; exit 1; }
    grep -q "1 backup(s) added" cwd/out || { cat cwd/out; exit 1; }
    read -r secs rss <t
    printf '%-10s %10s %10s %12s\n' "$where" "$n" "$secs" "$rss"
  done
done
