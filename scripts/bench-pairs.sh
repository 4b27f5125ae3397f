#!/usr/bin/env bash
# Side-by-side measurements of one switch at a time, each against fresh
# services (ingest with its embedded NATS server, one worker on SQLite) on
# this machine's default ports, with bin/loadgen:
#
#   scripts/bench-pairs.sh lone    # a lone single-event client, packing on vs off
#   scripts/bench-pairs.sh fsync   # packing on vs off, nats.embedded.sync_interval 2m vs always,
#                                  # bulk (64 clients × 100 events) and single events (1000 clients),
#                                  # degraded path off so that every event goes through JetStream
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/ ./cmd/ingest ./cmd/worker ./cmd/loadgen
root=$(pwd)

run() { # title, loadgen flags, service flags...
  local title=$1 largs=$2; shift 2
  local dir; dir=$(mktemp -d)
  "$root/bin/ingest" -log.level warn -nats.embedded.store_dir "$dir/nats" -degrade.spool.dir "$dir/spool" \
    -nats.stream.max_bytes 17179869184 -degrade.spool.max_bytes 8589934592 "$@" > "$dir/ingest.log" 2>&1 &
  local ingest=$!
  sleep 1.5
  "$root/bin/worker" -log.level warn -sink.sqlite.path "$dir/levee.db" "$@" > "$dir/worker.log" 2>&1 &
  local worker=$!
  sleep 1.5
  # shellcheck disable=SC2086 # largs holds several flags
  "$root/bin/loadgen" run -target http://127.0.0.1:8080 -ingest-admin 127.0.0.1:9464 $largs -id-prefix pair > "$dir/run.txt" 2>&1 || true
  echo "== $title"
  grep -E "^sent|^latency" "$dir/run.txt"
  kill -TERM "$worker" "$ingest" 2>/dev/null || true
  wait "$worker" "$ingest" 2>/dev/null || true
  rm -rf "$dir"
}

case "${1:-}" in
lone)
  for p in true false; do
    run "lone client, packing=$p" "-mode closed -clients 1 -duration 20s -events 1" -optimization.packing=$p
  done ;;
fsync)
  for si in 2m always; do for p in true false; do
    run "bulk 100/request, 64 clients, sync_interval=$si packing=$p" "-mode closed -clients 64 -duration 15s -events 100" \
      -optimization.packing=$p -nats.embedded.sync_interval=$si -optimization.degrade=false
    run "single, 1000 clients, sync_interval=$si packing=$p" "-mode closed -clients 1000 -duration 15s -events 1" \
      -optimization.packing=$p -nats.embedded.sync_interval=$si -optimization.degrade=false
  done; done ;;
*)
  echo "usage: $0 lone|fsync" >&2; exit 2 ;;
esac
