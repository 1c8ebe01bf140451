#!/usr/bin/env bash
# mo-br beside its peers, in one run, on the same trees and the same S3
# server program (s3s-fs on loopback, a fresh one for each client),
# release build, embedded default:
#   - the raw PUT and GET ceiling of the server (tests/src/bin/s3ceiling.rs:
#     requests from memory, no disk, no hashing, several counts in flight,
#     each object named as its file in the tree);
#   - rclone and restic (Debian packages, installed here when absent; their
#     rows say "skipped" if that fails);
#   - cp -a followed by sync, alternating twice with mo-br's backup to a
#     filesystem, the best of each kept (restores of the peers are timed
#     with a sync after them too: mo-br's end with their files durable);
#   - mo-br: backup to a filesystem and to S3, an incremental with 1 % new
#     objects, restore from both, check of both (every sha256). Its backup
#     to S3, restore from S3 and check of S3 run twice, alternating with
#     restic's restore and check, and the best of each counts, as the
#     ceiling's is the best of its runs.
# on a mixed MatrixOne-like tree (mo-br-sample, SIZE) and on a tree of many
# small objects (SMALL objects of 16 KiB). Prints a table of times, the
# peer or ceiling of each, and the ratio the goal is about, then the
# highest memory (max RSS) each mo_br run took.
#
#   SIZE=1GiB SMALL=20000 TREES="mixed small" WORK=/tmp/mo-br-bench scripts/bench.sh
#   S3_DIR=DIR: where the S3 servers keep their objects; by default a
#     directory in /dev/shm (RAM) when it has room for them, else in WORK.
#   PARALLELISM=N passes --parallelism N to mo_br.
#   DROP_CACHES=1 also empties the page cache before each timed step (root).
#   BIN=DIR uses the binaries (mo_br, mo-br-sample, s3ceiling) in DIR as they
#     are instead of a release build (the CI test runs it so on a tiny tree).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1GiB}
SMALL=${SMALL:-20000}
TREES=${TREES:-mixed small}
WORK=${WORK:-/tmp/mo-br-bench}
repo=$PWD
scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
peers=1
if ! command -v rclone >/dev/null || ! command -v restic >/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get -o DPkg::Lock::Timeout=120 install -y -q rclone restic >/dev/null 2>&1 ||
    { peers=0; echo "note: rclone and restic could not be installed from Debian; their rows are skipped"; }
fi
if [ -n "${BIN:-}" ]; then
  bin=$(cd "$BIN" && pwd)
else
  cargo build --release --bins -q
  bin=${CARGO_TARGET_DIR:-$repo/target}/release
fi
ceiling=$bin/s3ceiling

rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
log=$WORK/log
: >"$log"

# The S3 server stands for a remote service: what its storage costs is not
# what is measured, and this VM's disk swings several-fold from one minute
# to the next (the same ceiling PUT of the mixed tree took 3.4 s and 7.4 s,
# mo-br's backup 4.9 s and 15.4 s, minutes apart). In RAM, every client's
# S3 rows stand on the same ground. Room: about eight copies of the largest
# tree at once (the ceiling's three in-flight counts, rclone, restic,
# mo-br's two full backups and the incremental).
tree_bytes=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)([KMG]iB|B)?", sys.argv[1]); print(int(m.group(1)) << {"KiB":10,"MiB":20,"GiB":30}.get(m.group(2) or "B", 0) if m else 0)' "$SIZE")
small_bytes=$((SMALL * 16384))
if [ -z "${S3_DIR:-}" ]; then
  S3_DIR=$WORK
  need_kb=$(( ((tree_bytes > small_bytes ? tree_bytes : small_bytes) * 10) / 1024 ))
  if [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt "$need_kb" ]; then
    S3_DIR=/dev/shm/mo-br-bench-s3
  fi
fi
rm -rf "$S3_DIR/s3-"* && mkdir -p "$S3_DIR"

# Every client measured gets an s3s-fs of its own, started empty: s3s-fs
# keeps two metadata files per object in one directory at its root, and a
# create there slows as that directory grows (its lock, its index), so a
# server shared by all would make whoever runs later pay for the objects of
# whoever ran before (seen: mo-br's backup 6.5 s on a fresh server, 15 s
# after the ceiling's and the peers' 70,000 metadata files).
s3pids=()
trap 'kill "${s3pids[@]}" 2>/dev/null || true; rm -rf "$S3_DIR/s3-"*' EXIT
# start_s3 NAME: a new server on $S3_DIR/s3-NAME; sets endpoint and s3root.
start_s3() {
  s3root=$S3_DIR/s3-$1
  mkdir -p "$s3root"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchsecret "$s3root" >>"$log" 2>&1 &
  s3pids+=($!)
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do sleep 0.1; done
  endpoint=http://127.0.0.1:$port
  export RCLONE_CONFIG_S3_ENDPOINT=$endpoint
}
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret RESTIC_PASSWORD=bench
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other \
  RCLONE_CONFIG_S3_ACCESS_KEY_ID=bench RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=benchsecret \
  RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
unset AWS_CA_BUNDLE

# PARALLELISM=N passes --parallelism N to every mo_br run (default: mo_br's own).
par=()
[ -n "${PARALLELISM:-}" ] && par=(--parallelism "$PARALLELISM")
declare -A T RSS
# measure KEY CMD...: wall seconds into T[KEY], the command's max RSS (MiB) into RSS[KEY].
measure() {
  local key=$1; shift
  sync
  if [ "${DROP_CACHES:-0}" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
  local out
  out=$(python3 - "$log" "$@" <<'PY'
import resource, subprocess, sys, time
log = open(sys.argv[1], "a")
t0 = time.monotonic()
r = subprocess.run(sys.argv[2:], stdout=log, stderr=log)
t1 = time.monotonic()
if r.returncode != 0:
    sys.exit(f"failed ({r.returncode}): {' '.join(sys.argv[2:])}")
print(f"{t1 - t0:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024}")
PY
) || { echo "bench: $key failed; see $log" >&2; exit 1; }
  T[$key]=${out% *}
  RSS[$key]=${out#* }
}

# best KEY K1 K2: the shorter time of K1 and K2 into T[KEY], the larger
# max RSS into RSS[KEY].
best() {
  T[$1]=$(awk "BEGIN {print (${T[$2]} < ${T[$3]}) ? ${T[$2]} : ${T[$3]}}")
  RSS[$1]=$(( RSS[$2] > RSS[$3] ? RSS[$2] : RSS[$3] ))
}

bucket() { mkdir -p "$s3root/$1"; }
id_of() { "$bin/mo_br" list --json | tail -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/'; }
s3() { echo --backup_dir s3 --endpoint "$endpoint" --access_key_id bench --secret_access_key benchsecret --bucket "$1" --is_minio; }

# A tree: the node's data dir (mo/mo-data, with its launch config) and the
# part of it that is backed up (SHARED + logservice-data).
make_tree() {
  local t=$1
  case $t in
  mixed) "$bin/mo-br-sample" --out "$t" --size "$SIZE" --seed 1 >/dev/null ;;
  small)
    "$bin/mo-br-sample" --out "$t" --size 1MiB --seed 1 >/dev/null
    "$bin/mo-br-sample" grow --out "$t" --round 1 --count "$SMALL" --object-size 16KiB --seed 1 >/dev/null
    ;;
  esac
  # s3s-fs keeps each object's metadata in a file named after the base64 of
  # its key, so keys over ~150 bytes fail there (not on real S3); the
  # sample's deepest log-service snapshot files are that long and tiny.
  find "$t/mo-data/logservice-data" -type f | awk 'length($0) > 120' | xargs -r rm -f
}

run_tree() {
  local t=$1 d=$WORK/$1
  make_tree "$t"
  local files bytes
  files=$(find "$t/mo-data/shared2" "$t/mo-data/logservice-data" -type f | wc -l)
  bytes=$(du -sb "$t/mo-data/shared2" "$t/mo-data/logservice-data" | awk '{s+=$1} END {print s}')
  echo "$t: $files files, $bytes bytes" >>"$WORK/trees"
  local launch=$t/etc/launch/launch.toml
  # What mo-br backs up of the node, hard-linked into one directory for the
  # peers and the ceiling (same files, same page cache).
  rm -rf "$t.set" && mkdir "$t.set" && cp -al "$t/mo-data/shared2" "$t/mo-data/logservice-data" "$t.set/"

  # The ceiling, on the same sizes, each in-flight count on a fresh server;
  # after a sync, as every timed step, so the tree just made is not being
  # written back meanwhile.
  : >"$d.ceiling"
  sync
  for n in 32 64 128; do
    start_s3 "ceil$n-$t"
    bucket "ceil-$t"
    "$ceiling" --endpoint "$endpoint" --bucket "ceil-$t" --key bench --secret benchsecret \
      --tree "$t.set" --inflight "$n" 2>>"$log" | grep '^inflight' >>"$d.ceiling"
  done
  T[$t.put_ceiling]=$(sed -nE 's/.*put_s=([0-9.]+).*/\1/p' "$d.ceiling" | sort -n | head -1)
  T[$t.get_ceiling]=$(sed -nE 's/.*get_s=([0-9.]+).*/\1/p' "$d.ceiling" | sort -n | head -1)


  if [ $peers = 1 ]; then
    start_s3 "rclone-$t"
    bucket "rclone-$t"
    measure "$t.rclone_up" rclone copy --transfers 16 --checkers 16 "$t.set" "s3:rclone-$t/"
    # Restores are timed until their files are on disk, as mo-br's are
    # (neither rclone nor restic syncs what it writes).
    measure "$t.rclone_down" sh -c "rclone copy --transfers 16 --checkers 16 's3:rclone-$t/' '$d.rclone/' && sync"
    start_s3 "restic-$t"
    bucket "restic-$t"
    restic_repo=s3:$endpoint/restic-$t
    restic -r "$restic_repo" init -q >>"$log" 2>&1
    measure "$t.restic_backup" restic -r "$restic_repo" backup -q "$t.set"
  fi

  rm -f mo_br.meta
  # cp and mo-br's backup to a filesystem alternate, twice, and the best
  # of each counts: this VM's disk takes anywhere from 1 s to 5 s to write
  # and sync the same 1 GiB, from one minute to the next, which a single
  # sample of each cannot tell from a difference between the two.
  for round in 1 2; do
    measure "$t.cp$round" sh -c "cp -a '$t.set' '$d.cp$round' && sync"
    measure "$t.backup_fs$round" "$bin/mo_br" backup "${par[@]}" --backup_dir filesystem --path "$d.fsbackup$round" --data_dir "$t/mo-data" --launch_config "$launch"
  done
  best "$t.cp" "$t.cp1" "$t.cp2"
  best "$t.backup_fs" "$t.backup_fs1" "$t.backup_fs2"
  local fsid; fsid=$(id_of)
  measure "$t.restore_fs" "$bin/mo_br" restore "${par[@]}" "$fsid" --restore_dir filesystem --restore_path "$d.fsrestore"
  diff -r -q -x '.tmp.*' "$t/mo-data/shared2" "$d.fsrestore/mo-data/shared2" >>"$log" || { echo "bench: restored tree differs" >&2; exit 1; }
  measure "$t.check_fs" "$bin/mo_br" check "${par[@]}" "$fsid"

  # Each backup to S3 on a fresh server; the second one stays for the
  # restores, the checks and the incremental.
  for round in 1 2; do
    start_s3 "mobr$round-$t"
    bucket "mobr-$t"
    # shellcheck disable=SC2046
    measure "$t.backup_s3$round" "$bin/mo_br" backup "${par[@]}" $(s3 "mobr-$t") --filepath /full --data_dir "$t/mo-data" --launch_config "$launch"
  done
  best "$t.backup_s3" "$t.backup_s3"1 "$t.backup_s3"2
  local s3id; s3id=$(id_of)
  # Restores and checks from S3 alternate with restic's, twice: this VM's
  # swing between minutes is larger than the difference measured.
  for round in 1 2; do
    measure "$t.restore_s3$round" "$bin/mo_br" restore "${par[@]}" "$s3id" --backup_access_key_id bench --backup_secret_access_key benchsecret \
      --restore_dir filesystem --restore_path "$d.s3restore$round"
    diff -r -q -x '.tmp.*' "$t/mo-data/shared2" "$d.s3restore$round/mo-data/shared2" >>"$log" || { echo "bench: restored tree differs" >&2; exit 1; }
    if [ $peers = 1 ]; then
      measure "$t.restic_restore$round" sh -c "restic -r '$restic_repo' restore latest -q --target '$d.restic$round' && sync"
    fi
  done
  for round in 1 2; do
    measure "$t.check_s3$round" "$bin/mo_br" check "${par[@]}" "$s3id"
    if [ $peers = 1 ]; then
      # restic's listing of data/ on s3s-fs reports every pack as missing
      # (an s3s-fs listing quirk) and so exits 1, after reading and hashing
      # every pack: count the run when that read reached 100 %.
      measure "$t.restic_check$round" sh -c "restic -r '$restic_repo' check --read-data 2>&1 | tee -a '$log' |
        grep -A1 'read all data' | grep -q '100.00%'"
    fi
  done
  best "$t.restore_s3" "$t.restore_s3"1 "$t.restore_s3"2
  best "$t.check_s3" "$t.check_s3"1 "$t.check_s3"2
  if [ $peers = 1 ]; then
    best "$t.restic_restore" "$t.restic_restore"1 "$t.restic_restore"2
    best "$t.restic_check" "$t.restic_check"1 "$t.restic_check"2
  fi

  # 1 % new objects, of the tree's kind (16 KiB ones in the small tree),
  # then an incremental on the S3 backup.
  local grow_size=()
  [ "$t" = small ] && grow_size=(--object-size 16KiB)
  "$bin/mo-br-sample" grow --out "$t" --round 2 --count $(((files + 99) / 100)) "${grow_size[@]}" --seed 2 >/dev/null
  find "$t/mo-data/logservice-data" -type f | awk 'length($0) > 120' | xargs -r rm -f
  # shellcheck disable=SC2046
  measure "$t.incremental" "$bin/mo_br" backup "${par[@]}" $(s3 "mobr-$t") --filepath /incr --data_dir "$t/mo-data" --launch_config "$launch" \
    --backup_type incremental --base_id "$s3id"
  kill "${s3pids[@]}" 2>/dev/null || true
  s3pids=()
  # What is on disk is removed only at the end of the run: ext4 without a
  # journal (this VM's) makes every file creation slower for up to a few
  # minutes after many files were deleted (it skips each recently freed
  # inode, reading its inode table block: seen, a restore of 20,000 files
  # taking 9.6 s instead of 4.9 s right after another's were removed),
  # which would weigh on the next tree's steps, not on the one that made
  # them. The S3 servers' objects go now (by default in RAM: no such cost).
  rm -rf "$S3_DIR/s3-"*"-$t"
  leftovers+=("$d".{cp1,cp2,rclone,restic1,restic2,fsbackup1,fsbackup2,fsrestore,s3restore1,s3restore2} "$WORK/$t" "$WORK/$t.set")
  if [ "$(df -Pk "$WORK" | awk 'NR==2 {print $4}')" -lt "$disk_need_kb" ]; then
    rm -rf "${leftovers[@]}"
    leftovers=()
  fi
}

# Room on disk for the next tree's copies (about twelve of the larger
# tree), else a tree's are removed when it is done after all.
disk_need_kb=$(( ((tree_bytes > small_bytes ? tree_bytes : small_bytes) * 12) / 1024 ))
leftovers=()
for t in $TREES; do run_tree "$t"; done
rm -rf "${leftovers[@]}"

# The table: time, what it is compared with, and the ratio (>= 1 means as
# fast as or faster than the peer; for backup -> filesystem it is cp's share).
row() { printf '| %-28s | %9s | %-30s | %9s | %s |\n' "$@"; }
secs() { [ -n "${T[$1]:-}" ] && printf '%.2f s' "${T[$1]}" || echo "skipped"; }
ratio() { # peer_key mine_key -> peer_time / my_time
  if [ -n "${T[$1]:-}" ] && [ -n "${T[$2]:-}" ]; then awk "BEGIN {printf \"%.2f\", ${T[$1]} / ${T[$2]}}"; else echo "-"; fi
}
echo
cat "$WORK/trees"
echo
row "operation" "mo-br" "compared with" "ratio" "goal"
row "---" "---" "---" "---" "---"
for t in $TREES; do
  row "[$t] backup -> S3" "$(secs "$t.backup_s3")" "PUT ceiling $(secs "$t.put_ceiling")" "$(ratio "$t.put_ceiling" "$t.backup_s3")" ">= 0.90"
  row "[$t] backup -> S3" "" "rclone copy $(secs "$t.rclone_up")" "$(ratio "$t.rclone_up" "$t.backup_s3")" ""
  row "[$t] backup -> S3" "" "restic backup $(secs "$t.restic_backup")" "$(ratio "$t.restic_backup" "$t.backup_s3")" ""
  row "[$t] backup -> filesystem" "$(secs "$t.backup_fs")" "cp -a + sync (best of 2) $(secs "$t.cp")" "$(ratio "$t.cp" "$t.backup_fs")" ">= 0.77 (<= 1.3x cp)"
  row "[$t] incremental, 1 % new" "$(secs "$t.incremental")" "full backup $(secs "$t.backup_s3")" \
    "$(awk "BEGIN {printf \"%.3f\", ${T[$t.incremental]} / ${T[$t.backup_s3]}}")" "<= 0.05 of full"
  row "[$t] restore <- S3" "$(secs "$t.restore_s3")" "restic restore+sync $(secs "$t.restic_restore")" "$(ratio "$t.restic_restore" "$t.restore_s3")" "$([ "$t" = mixed ] && echo ">= 1" || echo "")"
  row "[$t] restore <- S3" "" "GET ceiling $(secs "$t.get_ceiling")" "$(ratio "$t.get_ceiling" "$t.restore_s3")" "$([ "$t" = small ] && echo ">= 0.80" || echo "")"
  row "[$t] restore <- S3" "" "rclone copy+sync $(secs "$t.rclone_down")" "$(ratio "$t.rclone_down" "$t.restore_s3")" ""
  row "[$t] restore <- filesystem" "$(secs "$t.restore_fs")" "restic restore+sync $(secs "$t.restic_restore")" "$(ratio "$t.restic_restore" "$t.restore_fs")" "$([ "$t" = mixed ] && echo ">= 1" || echo "")"
  row "[$t] check S3" "$(secs "$t.check_s3")" "restic check --read-data $(secs "$t.restic_check")" "$(ratio "$t.restic_check" "$t.check_s3")" "$([ "$t" = mixed ] && echo ">= 1" || echo "")"
  row "[$t] check S3" "" "GET ceiling $(secs "$t.get_ceiling")" "$(ratio "$t.get_ceiling" "$t.check_s3")" "$([ "$t" = small ] && echo ">= 0.80" || echo "")"
  row "[$t] check filesystem" "$(secs "$t.check_fs")" "restic check --read-data $(secs "$t.restic_check")" "$(ratio "$t.restic_check" "$t.check_fs")" ""
done
echo
echo "max RSS of mo_br (MiB):"
for t in $TREES; do
  printf '  %-6s' "$t"
  for op in backup_fs backup_s3 incremental restore_fs restore_s3 check_fs check_s3; do printf ' %s=%s' "$op" "${RSS[$t.$op]}"; done
  echo
done
echo "both runs of the steps counted by their best (s):"
for t in $TREES; do
  printf '  %-6s' "$t"
  for op in cp backup_fs backup_s3 restore_s3 restic_restore check_s3 restic_check; do
    if [ -n "${T[$t.${op}1]:-}" ]; then printf ' %s=%s/%s' "$op" "${T[$t.${op}1]}" "${T[$t.${op}2]}"; fi
  done
  echo
done
echo "(PUT/GET ceilings: best of $(grep -c '^inflight' "$WORK/mixed.ceiling" 2>/dev/null || echo 3) in-flight counts, see $WORK/<tree>.ceiling;"
echo " mo-br's backup, restore and check on S3 and restic's restore and check: best of 2, alternating;"
echo " rclone with --transfers 16; log: $log)"
