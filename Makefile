GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build run test test-deps lint bench clean

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

## bench: Go benchmarks of the hot paths
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN) data
