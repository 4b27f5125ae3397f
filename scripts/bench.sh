#!/usr/bin/env bash
# Load-test plan: builds bin/ingest, bin/worker and bin/loadgen, makes sure
# natscli is available for the JetStream ceiling (best effort: installs
# v0.5.0 into $(go env GOPATH)/bin, else loadgen uses its built-in
# publisher), then runs `bin/loadgen bench` with the arguments given.
#
#   scripts/bench.sh                         # every scenario at full length (~45 min), SQLite, report in ./report
#   scripts/bench.sh -scale 0.01             # smoke: 3-6 s per scenario
#   scripts/bench.sh -scenarios peak -ablation peak -sink postgres -pg-dsn postgres://…
#
# Every load goes to services this script starts on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"

"$GO" build -o bin/ ./cmd/ingest ./cmd/worker ./cmd/loadgen

gobin="$($GO env GOPATH)/bin"
nats_bin="$(command -v nats || true)"
case " $* " in
*" -no-ceilings "*) exec bin/loadgen bench -bin-dir bin -nats-bin none "$@" ;; # no JetStream ceiling: no natscli needed
esac
if [ -z "$nats_bin" ] && [ -x "$gobin/nats" ]; then
  nats_bin="$gobin/nats"
fi
if [ -z "$nats_bin" ]; then
  echo "bench.sh: natscli not found; installing github.com/nats-io/natscli/nats@v0.5.0 into $gobin" >&2
  if GOBIN="$gobin" timeout 900 "$GO" install github.com/nats-io/natscli/nats@v0.5.0; then
    nats_bin="$gobin/nats"
  else
    echo "bench.sh: natscli unavailable; the JetStream ceiling uses loadgen's built-in publisher" >&2
  fi
fi

exec bin/loadgen bench -bin-dir bin -nats-bin "${nats_bin:-none}" "$@"
