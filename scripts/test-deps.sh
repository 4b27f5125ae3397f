#!/usr/bin/env bash
# Installs what the test suite needs when it is missing, so that `make test`
# passes on a fresh Debian machine with Go:
#   - PostgreSQL server binaries (initdb, postgres): the tests start their own
#     throwaway server on a loopback port.
#   - promtool (Debian package prometheus) and docker-compose (v1): test/deploy
#     checks the alert rules and the compose file with them; no Docker daemon.
set -euo pipefail

have_pg() {
	command -v initdb >/dev/null 2>&1 && return 0
	compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_pg || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)

if [ ${#missing[@]} -gt 0 ]; then
	echo "test-deps: installing ${missing[*]}" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
