#!/usr/bin/env bash
# A mo-br cluster on this machine with TLS and authentication on: 3
# coordinator replicas and 2 agents on loopback, certificates and tokens
# from `mo_br certs init`. Backs up a generated MatrixOne node, lists,
# checks and restores it as an operator, shows what a reader and a caller
# without credentials are refused, and stops everything.
#
# SIZE (default 64MiB): the node's size. WORK (default ./cluster-demo):
# where everything goes. PORT (default 17101): the first of the 5 ports
# used. BIN: a directory with the binaries (default: build them, release).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-64MiB}
WORK=${WORK:-$PWD/cluster-demo}
PORT=${PORT:-17101}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release --bins
  BIN=$PWD/target/release
fi
BIN=$(cd "$BIN" && pwd)
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

for p in $(seq "$PORT" $((PORT + 4))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use; pick others with PORT=..." >&2
    exit 1
  fi
done

# Waits until `file` holds `text` (a daemon's start or registration line).
wait_for() {
  local file=$1 text=$2
  for _ in $(seq 600); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for \"$text\" in $file:" >&2
  cat "$file" >&2
  exit 1
}

echo "== certificates and tokens for the cluster"
"$BIN/mo_br" certs init --out pki --hosts localhost >/dev/null
ls pki

echo "== 3 coordinators and 2 agents, TLS and authentication on"
peers="1=127.0.0.1:$PORT,2=127.0.0.1:$((PORT + 1)),3=127.0.0.1:$((PORT + 2))"
for id in 1 2 3; do
  "$BIN/mo-br-coordinator" --id "$id" --peers "$peers" --data_dir "raft$id" \
    --listen "127.0.0.1:$((PORT + id - 1))" --tls_dir pki >"coordinator$id.log" 2>&1 &
  pids+=($!)
done
"$BIN/mo-br-sample" --out matrixone --size "$SIZE" --seed 7 >/dev/null
coordinators=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
for n in 1 2; do
  "$BIN/mo-br-agent" --id "agent$n" --node node1 --listen "127.0.0.1:$((PORT + 2 + n))" \
    --data_dir matrixone/mo-data --coordinators "$coordinators" --tls_dir pki \
    >"agent$n.log" 2>&1 &
  pids+=($!)
done
for id in 1 2 3; do wait_for "coordinator$id.log" "listening on .* (TLS)"; done
for n in 1 2; do wait_for "agent$n.log" "registered with the coordinator"; done

cat >operator.toml <<EOF
coordinator = "$coordinators"
log_file = "console"
log_level = "warn"
[tls]
dir = "pki"
token_file = "pki/operator.token"
EOF
# The operator certificate is in pki/ too; the token alone must do.
mkdir -p token-only && cp pki/ca.pem token-only/
sed -e 's|^dir = "pki"|ca = "token-only/ca.pem"|' operator.toml >token.toml
sed -e 's|operator.token|reader.token|' token.toml >reader.toml

echo "== backup (as an operator, by token)"
"$BIN/mo_br" --config token.toml backup --backup_dir filesystem --path "$WORK/backup1" \
  --data_dir matrixone/mo-data --launch_config matrixone/etc/launch/launch.toml
id=$("$BIN/mo_br" --config token.toml list --json | tail -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/')

echo "== list (as a reader)"
"$BIN/mo_br" --config reader.toml list

echo "== check $id (as a reader)"
"$BIN/mo_br" --config reader.toml check "$id" | tail -n 2

echo "== restore $id (as an operator, by client certificate)"
sed -e '/token_file/d' operator.toml >cert.toml
"$BIN/mo_br" --config cert.toml restore "$id" --restore_dir filesystem --restore_path "$WORK/restored"
diff -r -x '.tmp.*' matrixone/mo-data/shared2 restored/mo-data/shared2
echo "restored SHARED is byte-identical"

echo "== refused: a reader deleting, a caller without credentials"
if "$BIN/mo_br" --config reader.toml delete "$id" 2>reader-delete.err; then
  echo "a reader deleted a backup" >&2
  exit 1
fi
cat reader-delete.err
printf 'coordinator = "%s"\nlog_file = "console"\n[tls]\nca = "pki/ca.pem"\n' "$coordinators" >anonymous.toml
if "$BIN/mo_br" --config anonymous.toml list 2>anonymous.err; then
  echo "a caller without credentials listed backups" >&2
  exit 1
fi
cat anonymous.err

echo "OK: TLS and authentication on every hop; stopping the cluster"
