GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build run test test-deps lint bench bench-smoke fuzz-smoke cluster-up cluster-down cluster-status clean

all: build

## build: compile ingest and worker into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: the whole pipeline on this machine (embedded NATS + SQLite); Ctrl-C stops it
run: build
	./scripts/run.sh

## test: vet, then every test with the race detector (installs PostgreSQL if missing)
test: test-deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-deps:
	./scripts/test-deps.sh

## lint: go vet and gofmt
lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

## bench: Go benchmarks of the hot paths, then the load-test plan (scripts/bench.sh:
## every scenario before/after, ceilings, report in ./report); BENCH_ARGS adds flags,
## e.g. make bench BENCH_ARGS='-scenarios peak -scale 0.1 -ablation peak'
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	./scripts/bench.sh $(BENCH_ARGS)

## bench-smoke: every scenario at 1/200 of its length (1.5-3 s), ceilings, count check; ~40 s (report in ./report/smoke)
bench-smoke:
	./scripts/bench.sh -scale 0.005 -drain-timeout 10s -out report/smoke $(BENCH_ARGS)

## fuzz-smoke: run every Go fuzz target (func FuzzX in a *_test.go) for FUZZTIME each (default 10s).
## Not part of `make test` (CI time); CI runs it after the tests with FUZZTIME=5s. An input that
## fails is written to the package's testdata/fuzz and fails the target.
FUZZTIME ?= 10s
fuzz-smoke:
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  dir=$$(dirname $$file); \
	  for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
	    echo "fuzz-smoke: $$fn in $$dir for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$dir; \
	  done; \
	done

## cluster-up: the scale-out topology as processes on 127.0.0.1, no Docker: 3 clustered
## nats-server (stream R3), PostgreSQL, 2 ingest, 3 workers, nginx on :8080 if installed;
## state in ./data/cluster (or $$LEVEE_CLUSTER_DIR); running twice starts no duplicates
cluster-up:
	./scripts/cluster.sh up

## cluster-down: stop every process of the cluster (SIGTERM, wait, then SIGKILL)
cluster-down:
	./scripts/cluster.sh down

## cluster-status: each process of the cluster, its PID and health endpoint
cluster-status:
	./scripts/cluster.sh status

clean:
	rm -rf $(BIN) data
