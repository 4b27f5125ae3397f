#!/usr/bin/env bash
# Checks the deployment artifacts under deploy/compose without starting
# anything (no Docker daemon needed):
#   - promtool: the alert rules, their unit tests, the Prometheus config;
#   - docker-compose config: the compose file (schema, anchors, variables);
#   - haproxy -c on the proxy config, when haproxy is installed;
#   - the Grafana dashboard is valid JSON.
# promtool and docker-compose come from Debian's prometheus and docker-compose
# packages (scripts/test-deps.sh installs them). `go test ./test/deploy/`
# runs the same checks and more: config keys and values, scrape targets,
# NATS routes, metric names against the real binaries' /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
compose=deploy/compose

fail=0
step() { printf '== %s\n' "$*"; }
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "check-deploy: $1 not found; run scripts/test-deps.sh" >&2
	exit 2
}

need promtool
step "promtool check rules"
(cd "$compose/prometheus" && promtool check rules alerts.yml) || fail=1
step "promtool test rules"
(cd "$compose/prometheus" && promtool test rules alerts_test.yml) || fail=1
step "promtool check config"
(cd "$compose/prometheus" && promtool check config prometheus.yml) || fail=1

step "compose config"
if command -v docker-compose >/dev/null 2>&1; then
	docker-compose -f "$compose/docker-compose.yml" config -q || fail=1
elif docker compose version >/dev/null 2>&1; then
	docker compose -f "$compose/docker-compose.yml" config -q || fail=1
else
	need docker-compose
fi

step "haproxy -c"
if command -v haproxy >/dev/null 2>&1; then
	# Outside the compose network the backend names do not resolve: that
	# warning is expected; syntax errors still fail.
	haproxy -c -f "$compose/haproxy/haproxy.cfg" || fail=1
else
	echo "haproxy not installed; skipped"
fi

step "grafana dashboards are JSON"
for f in "$compose"/grafana/dashboards/*.json; do
	python3 -m json.tool "$f" >/dev/null || { echo "invalid JSON: $f" >&2; fail=1; }
done

if [ "$fail" -ne 0 ]; then
	echo "check-deploy: FAILED" >&2
	exit 1
fi
echo "check-deploy: ok"
