#!/usr/bin/env bash
# Runs Levee's scale-out topology as plain processes on 127.0.0.1, no Docker:
#
#   3 nats-server nodes clustered over loopback routes, JetStream on each
#   PostgreSQL (initdb + postgres in the data directory)
#   2 ingest replicas (stream EVENTS at R3, each with its own spool)
#   3 workers sharing one durable consumer, writing to PostgreSQL
#   nginx on :8080 in front of the ingest replicas, if nginx is installed
#
#   scripts/cluster.sh up       build, then start what is not running (idempotent)
#   scripts/cluster.sh down     stop everything: SIGTERM (SIGINT for postgres), wait, then SIGKILL
#   scripts/cluster.sh status   each process, its PID and its health endpoint; exit 1 if any is down
#
# State (configs, stores, spools, logs, PID files) lives in ./data/cluster or
# $LEVEE_CLUSTER_DIR. CLUSTER_INGESTS and CLUSTER_WORKERS change the number of
# replicas (default 2 and 3). See docs/cluster.md.
set -euo pipefail

caller=$PWD
cd "$(dirname "$0")/.."
root=$PWD
dir=${LEVEE_CLUSTER_DIR:-$root/data/cluster}
case $dir in /*) ;; *) dir=$caller/$dir ;; esac
# The binaries read every LEVEE_* variable as a config key and refuse an
# unknown one: this one is the script's, not theirs.
unset LEVEE_CLUSTER_DIR
ingests=${CLUSTER_INGESTS:-2}
workers=${CLUSTER_WORKERS:-3}

# Loopback ports, away from `make run`'s (8080 public, 9464/9465 admin, 4222 NATS).
nats_client=(4231 4232 4233)   # clients: ingest, workers, nats CLI
nats_route=(6231 6232 6233)    # cluster routes between the nodes
nats_http=(8231 8232 8233)     # monitoring: /healthz, /jsz, /varz
pg_port=5433
proxy_port=8080                # nginx, when installed
ingest_port() { echo $((8080 + $1)); }   # ingest-1 on 8081, ingest-2 on 8082, ...
ingest_admin() { echo $((9400 + $1)); }  # metrics: 9401, 9402, ...
worker_admin() { echo $((9500 + $1)); }  # metrics: 9501, 9502, ...

run=$dir/run
logs=$dir/logs

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

# pid_of NAME prints the PID of NAME if its PID file names a live process
# whose command line contains the expected binary (not a recycled PID).
pid_of() {
	local f=$run/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(expected_bin "$1")" || return 1
	echo "$pid"
}

# alive PID: the process exists and has not exited. An exited process whose
# parent (init, for processes this script started earlier) has not reaped it
# yet is a zombie: kill -0 still succeeds on it.
alive() {
	local state
	state=$(awk '$1 == "State:" { print $2 }' "/proc/$1/status" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}

expected_bin() {
	case $1 in
	nats-*) echo nats-server ;;
	ingest-*) echo bin/ingest ;;
	worker-*) echo bin/worker ;;
	postgres) echo postgres ;;
	nginx) echo nginx ;;
	esac
}

# spawn NAME CMD...: starts CMD in the background, output appended to
# logs/NAME.log, and records its PID.
spawn() {
	local name=$1
	shift
	echo "=== $(date -Is) start: $*" >>"$logs/$name.log"
	nohup "$@" >>"$logs/$name.log" 2>&1 </dev/null &
	echo $! >"$run/$name.pid"
}

# wait_url URL SECONDS NAME: waits until URL answers 2xx; on timeout shows
# the end of NAME's log and fails.
wait_url() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
		if ! pid_of "$3" >/dev/null; then
			tail -n 20 "$logs/$3.log" >&2
			die "$3 exited; its log is $logs/$3.log"
		fi
		sleep 0.1
	done
	tail -n 20 "$logs/$3.log" >&2
	die "$3: $1 not ready after $2 s; its log is $logs/$3.log"
}

# pg_bindir finds the directory holding every PostgreSQL tool used here:
# initdb's on PATH (resolving a symlink), else Debian's newest
# /usr/lib/postgresql/*/bin.
pg_bindir() {
	local d tool ok
	for d in "$(dirname "$(readlink -f "$(command -v initdb || echo /nonexistent)")")" \
		$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
		ok=1
		for tool in initdb postgres pg_isready psql createdb; do
			[ -x "$d/$tool" ] || ok=0
		done
		[ $ok = 1 ] && { echo "$d"; return; }
	done
	die "PostgreSQL server binaries not found: apt-get install postgresql (or run make test-deps)"
}

build() {
	say "building bin/ingest bin/worker bin/nats-server"
	go build -o bin/ ./cmd/ingest ./cmd/worker
	# nats-server at the version go.mod pins.
	go build -o bin/nats-server github.com/nats-io/nats-server/v2
}

nats_conf() {
	local i=$1 n=$(($1 + 1)) routes=""
	for p in "${nats_route[@]}"; do routes+="nats-route://127.0.0.1:$p, "; done
	cat <<EOF
# nats-server node n$n of the Levee loopback cluster (written by scripts/cluster.sh on every up).
server_name: n$n
listen: 127.0.0.1:${nats_client[$i]}
http: 127.0.0.1:${nats_http[$i]}
jetstream {
  store_dir: "$dir/nats/n$n"
  # sync_interval: how often JetStream fsyncs its files. The stream is R3: a
  # PubAck (and so ingest's 202) means a quorum of two nodes has the message
  # written, not necessarily fsynced. A process crash (kill -9) loses nothing,
  # since the kernel still writes the page cache; only a power loss of two
  # nodes within one interval could lose acknowledged messages. "always"
  # fsyncs before every PubAck: that survives power loss, at a large cost in
  # throughput (docs/cluster.md). 2m is nats-server's default, set here so
  # that the choice is visible.
  sync_interval: 2m
}
cluster {
  name: levee
  listen: 127.0.0.1:${nats_route[$i]}
  # Every node, itself included (a node ignores the route to itself).
  routes: [${routes%, }]
}
EOF
}

up_nats() {
	local i name
	mkdir -p "$dir/nats"
	for i in 0 1 2; do
		name=nats-$((i + 1))
		nats_conf "$i" >"$dir/nats/n$((i + 1)).conf"
		if pid_of "$name" >/dev/null; then
			say "$name already running"
			continue
		fi
		spawn "$name" "$root/bin/nats-server" -c "$dir/nats/n$((i + 1)).conf"
	done
	# /healthz answers 200 once the node's JetStream is up and current with
	# the cluster's meta leader: it needs a quorum of the nodes running.
	for i in 0 1 2; do
		wait_url "http://127.0.0.1:${nats_http[$i]}/healthz" 60 "nats-$((i + 1))"
	done
}

up_postgres() {
	local bin data=$dir/pg/data asuser=()
	bin=$(pg_bindir)
	if pid_of postgres >/dev/null; then
		say "postgres already running"
		return
	fi
	mkdir -p "$dir/pg"
	if [ "$(id -u)" -eq 0 ]; then
		# PostgreSQL refuses to run as root: run it as the postgres user
		# (as internal/pgtest does), which must own its directory.
		id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (apt-get install postgresql creates it)"
		chown -R postgres:postgres "$dir/pg"
		asuser=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		say "initdb $data"
		"${asuser[@]}" "$bin/initdb" -D "$data" -U levee --auth=trust -E UTF8 >>"$logs/postgres.log" 2>&1 ||
			die "initdb failed; see $logs/postgres.log"
	fi
	# setpriv execs postgres itself, so $! is the postmaster.
	spawn postgres "${asuser[@]}" "$bin/postgres" -D "$data" -p "$pg_port" \
		-c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir/pg" -c max_connections=200
	local i
	for ((i = 0; i < 300; i++)); do
		"$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
		pid_of postgres >/dev/null || { tail -n 20 "$logs/postgres.log" >&2; die "postgres exited"; }
		sleep 0.1
	done
	"$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || die "postgres not ready after 30 s; see $logs/postgres.log"
	if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$pg_port" -U levee -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'levee'")" ]; then
		"$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U levee levee
	fi
}

# levee_config writes the config every ingest and worker reads, once: edit
# it freely ([live] keys are reloaded within reload.interval); delete it to
# get this one back. What differs between replicas is given by flags.
levee_config() {
	local urls="" p
	[ -f "$dir/levee.yaml" ] && return
	for p in "${nats_client[@]}"; do urls+="nats://127.0.0.1:$p,"; done
	cat >"$dir/levee.yaml" <<EOF
# Levee config of the loopback cluster, written once by scripts/cluster.sh:
# edit freely ([live] keys apply within reload.interval), delete to regenerate.
# Every key and its default: configs/levee.yaml. Per-process listen addresses
# and spool directories are flags on the command lines (see logs/*.log).
nats:
  url: "${urls%,}"
  stream:
    replicas: 3          # every message on three nodes; a PubAck needs two
sink:
  kind: postgres
  postgres:
    dsn: "postgres://levee@127.0.0.1:$pg_port/levee?sslmode=disable"
log:
  format: json
EOF
}

up_ingests() {
	local i name
	for ((i = 1; i <= ingests; i++)); do
		name=ingest-$i
		if pid_of "$name" >/dev/null; then
			say "$name already running"
			continue
		fi
		mkdir -p "$dir/$name"
		spawn "$name" "$root/bin/ingest" -config "$dir/levee.yaml" \
			-ingest.listen "127.0.0.1:$(ingest_port "$i")" -ingest.admin_listen "127.0.0.1:$(ingest_admin "$i")" \
			-degrade.spool.dir "$dir/$name/spool"
	done
	for ((i = 1; i <= ingests; i++)); do
		wait_url "http://127.0.0.1:$(ingest_admin "$i")/readyz" 60 "ingest-$i"
	done
}

up_workers() {
	local i name
	for ((i = 1; i <= workers; i++)); do
		name=worker-$i
		if pid_of "$name" >/dev/null; then
			say "$name already running"
			continue
		fi
		spawn "$name" "$root/bin/worker" -config "$dir/levee.yaml" -worker.admin_listen "127.0.0.1:$(worker_admin "$i")"
	done
	for ((i = 1; i <= workers; i++)); do
		wait_url "http://127.0.0.1:$(worker_admin "$i")/readyz" 60 "worker-$i"
	done
}

nginx_conf() {
	local i
	cat <<EOF
# nginx in front of the ingest replicas (written by scripts/cluster.sh on every up).
pid $dir/nginx/nginx.pid;
error_log $logs/nginx-error.log warn;
worker_processes 1;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/tmp/body;
  proxy_temp_path $dir/nginx/tmp/proxy;
  fastcgi_temp_path $dir/nginx/tmp/fastcgi;
  uwsgi_temp_path $dir/nginx/tmp/uwsgi;
  scgi_temp_path $dir/nginx/tmp/scgi;
  upstream ingest {
EOF
	for ((i = 1; i <= ingests; i++)); do
		echo "    server 127.0.0.1:$(ingest_port "$i") max_fails=1 fail_timeout=2s;"
	done
	cat <<EOF
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$proxy_port;
    client_max_body_size 2m;          # above ingest.max_body_bytes, so that ingest answers 413 itself
    client_body_buffer_size 2m;       # keep request bodies in memory
    location / {
      proxy_pass http://ingest;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 70s;         # above ingest.http.write_timeout
      # A replica that refuses the connection or times out before the
      # request is sent: try the other. A POST already sent is not retried
      # (nginx's default for non-idempotent requests): events without an id
      # would get new ids and be stored twice. Clients retry those with the
      # same ids themselves.
      proxy_next_upstream error timeout;
    }
  }
}
EOF
}

up_nginx() {
	local nginx
	nginx=$(command -v nginx || true)
	[ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx
	if [ -z "$nginx" ]; then
		say "nginx not installed (apt-get install nginx puts it in front on :$proxy_port); post to the replicas directly:"
		return
	fi
	mkdir -p "$dir/nginx/tmp"
	chmod 0777 "$dir/nginx/tmp" # nginx's workers run as an unprivileged user under root
	nginx_conf >"$dir/nginx/nginx.conf"
	if pid_of nginx >/dev/null; then
		say "nginx already running"
		return
	fi
	"$nginx" -t -q -p "$dir/nginx" -c "$dir/nginx/nginx.conf" 2>>"$logs/nginx.log" || die "nginx config invalid; see $logs/nginx.log"
	spawn nginx "$nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g "daemon off;"
	wait_url "http://127.0.0.1:$proxy_port/readyz" 30 nginx
}

cmd_up() {
	command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
	mkdir -p "$run" "$logs"
	build
	up_nats
	up_postgres
	levee_config
	up_ingests # they create the stream (R3) and the DLQ stream
	up_workers
	up_nginx
	local i
	say "up; state in $dir"
	if pid_of nginx >/dev/null; then
		say "  post to http://127.0.0.1:$proxy_port/v1/events (nginx → $ingests ingest replicas)"
	fi
	for ((i = 1; i <= ingests; i++)); do
		say "  ingest-$i: http://127.0.0.1:$(ingest_port "$i")/v1/events  metrics http://127.0.0.1:$(ingest_admin "$i")/metrics"
	done
	for ((i = 1; i <= workers; i++)); do
		say "  worker-$i: metrics http://127.0.0.1:$(worker_admin "$i")/metrics"
	done
	say "  nats: nats://127.0.0.1:${nats_client[0]},nats://127.0.0.1:${nats_client[1]},nats://127.0.0.1:${nats_client[2]}"
	say "  postgres: postgres://levee@127.0.0.1:$pg_port/levee"
}

# names in the order they are stopped: intake first, the database last.
stop_order() {
	local f n
	echo nginx
	for f in "$run"/ingest-*.pid; do [ -e "$f" ] && basename "$f" .pid; done | sort -V
	for f in "$run"/worker-*.pid; do [ -e "$f" ] && basename "$f" .pid; done | sort -V
	for n in 1 2 3; do echo "nats-$n"; done
	echo postgres
}

# stop NAME SIGNAL SECONDS
stop() {
	local pid i
	if ! pid=$(pid_of "$1"); then
		rm -f "$run/$1.pid"
		return
	fi
	kill "-$2" "$pid" 2>/dev/null || true
	for ((i = 0; i < $3 * 10; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		say "$1 ($pid) still running after $3 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	else
		say "$1 stopped"
	fi
	rm -f "$run/$1.pid"
}

cmd_down() {
	local name
	[ -d "$run" ] || { say "nothing to stop in $dir"; return; }
	for name in $(stop_order); do
		case $name in
		# SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients to leave).
		postgres) stop "$name" INT 30 ;;
		# Ingest: stop intake, finish publishes, sync the spool (ingest.shutdown_timeout 15s).
		# Worker: flush and ack the last batches (worker.shutdown_timeout 30s).
		ingest-* | worker-*) stop "$name" TERM 45 ;;
		*) stop "$name" TERM 30 ;;
		esac
	done
}

# health NAME: the health endpoint's answer.
health() {
	local url
	case $1 in
	nats-*) url="http://127.0.0.1:${nats_http[$((${1#nats-} - 1))]}/healthz" ;;
	ingest-*) url="http://127.0.0.1:$(ingest_admin "${1#ingest-}")/readyz" ;;
	worker-*) url="http://127.0.0.1:$(worker_admin "${1#worker-}")/readyz" ;;
	nginx) url="http://127.0.0.1:$proxy_port/readyz" ;;
	postgres)
		if "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then echo "accepting connections"; else echo "not accepting connections"; fi
		return
		;;
	esac
	local code body
	body=$(curl -sS --max-time 2 -w '\n%{http_code}' "$url" 2>&1) || true
	code=${body##*$'\n'}
	body=${body%$'\n'*}
	echo "${url#http://127.0.0.1} $code $(echo "$body" | tr '\n' ' ' | cut -c1-80)"
}

cmd_status() {
	local i name pid h bad=0 names=()
	for ((i = 1; i <= 3; i++)); do names+=("nats-$i"); done
	names+=(postgres)
	for ((i = 1; i <= ingests; i++)); do names+=("ingest-$i"); done
	for ((i = 1; i <= workers; i++)); do names+=("worker-$i"); done
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] && names+=(nginx)
	printf '%-10s %-8s %-8s %s\n' NAME PID STATE HEALTH
	for name in "${names[@]}"; do
		if pid=$(pid_of "$name"); then
			h=$(health "$name")
			printf '%-10s %-8s %-8s %s\n' "$name" "$pid" running "$h"
			case $h in *" 200 "* | "accepting connections") ;; *) bad=1 ;; esac
		else
			printf '%-10s %-8s %-8s\n' "$name" - stopped
			bad=1
		fi
	done
	return $bad
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 up|down|status   (state in ./data/cluster or \$LEVEE_CLUSTER_DIR)" >&2
	exit 2
	;;
esac
