#!/usr/bin/env bash
# Runs the whole pipeline on this machine: ingest (with an embedded NATS
# JetStream server under ./data/nats) and one worker writing to SQLite
# (./data/levee.db). Ctrl-C stops both cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
export LEVEE_LOG__FORMAT="${LEVEE_LOG__FORMAT:-console}"
bin/ingest "$@" &
ingest=$!
bin/worker "$@" &
worker=$!
stop() { kill -TERM "$ingest" "$worker" 2>/dev/null || true; }
trap stop INT TERM
# Wait for either to exit; then stop the other and wait for both.
wait -n "$ingest" "$worker" || true
stop
wait "$ingest" "$worker" 2>/dev/null || true
