# widgetq — see README.md.
GO      ?= go
# bash, for pipefail: a test run piped into its summary keeps go test's exit code.
SHELL   := /bin/bash
PKGS    := ./...
FUZZTIME ?= 1m
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: all test build lint fuzz faults sandbox demo bench bench-short bench-bulk bench-go clean

all: lint test build

## test: the whole suite with the race detector (REDIS_URL set: a real Redis; unset: miniredis).
## It ends with every skipped test and why (a test skips when a program it needs,
## such as redis-server or chromium, is missing; with CI=true it fails instead) and the counts.
test:
	@echo "$(GO) test -race -count=1 -json $(PKGS) | $(GO) run ./internal/testsummary"
	@set -o pipefail; $(GO) test -race -count=1 -json $(PKGS) | $(GO) run ./internal/testsummary

## faults: the fault suite alone, verbose (real worker and enqueue processes; also part of test)
faults:
	$(GO) test -race -count=1 -v ./faults

## build: the commands into ./bin
build:
	$(GO) build -o bin/ ./cmd/...

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz: run each fuzz test for FUZZTIME (new findings land in testdata/fuzz). A target that fails
## with only "context deadline exceeded" and writes no input is Go 1.26's fuzz-coordinator race at
## the end of -fuzztime (go.dev/issue/75804, fixed in Go 1.27), not a finding: it runs again, twice at most.
FUZZ_TARGETS := ./internal/kommohost:FuzzCheck ./internal/kommohost:FuzzBaseOf ./internal/webhook:FuzzVerify ./tasks:FuzzDecodeConnectAccount ./internal/bulk:FuzzReader ./internal/kommo:FuzzErrorBody ./internal/kommo:FuzzParseClaims ./internal/kommo:FuzzValidateSettings ./internal/kommo:FuzzWidget ./internal/kommo:FuzzInstalledAnswer ./internal/store:FuzzEncodeResult ./tasks:FuzzDecodeInstallWidget ./tasks:FuzzDecodeInstallFast ./internal/bulk:FuzzParseJSONLineFast ./tasks:FuzzNamesMatchTheirPatterns ./internal/seal:FuzzOpen ./cmd/enqueue:FuzzAccountLine ./cmd/enqueue:FuzzRedisURL
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		for try in 1 2 3; do \
			if $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) >$$out 2>&1; then cat $$out; break; fi; \
			cat $$out; \
			if grep -q 'Failing input written to' $$out || ! grep -q 'context deadline exceeded' $$out || [ $$try = 3 ]; then exit 1; fi; \
			echo "fuzz: $$fn: the coordinator's deadline race (go.dev/issue/75804), no input written: again"; \
		done; \
	done

## demo: the whole job in one process: embedded Redis, a Kommo sandbox with faults, 300 accounts
demo:
	$(GO) run ./cmd/demo

## bench: every scenario with real processes (REDIS_URL, else a redis-server it starts); table + bench/out/results.json
bench: build
	./bin/widgetq-bench -bin bin -out bench/out

## bench-short: the same scenarios with smaller counts (about 90 s)
bench-short: build
	./bin/widgetq-bench -short -bin bin -out bench/out

## bench-go: Go benchmarks of the hot paths (benchstat-friendly: add COUNT=10 and compare)
COUNT ?= 1
bench-go:
	REDIS_URL=$(BENCH_REDIS_URL) $(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) ./tasks ./internal/kommo ./internal/ratelimit ./internal/store ./internal/worker

## bench-bulk: enqueue bulk of 100,000 lines vs plain parallel asynq Enqueue, same Redis, same run
bench-bulk:
	REDIS_URL=$(BENCH_REDIS_URL) $(GO) test ./cmd/enqueue -run '^$$' -bench Bulk -benchtime 3x

## sandbox: serve the fake Kommo on 127.0.0.1:8090 with 3 accounts
sandbox:
	$(GO) run ./cmd/kommo-sandbox -addr 127.0.0.1:8090 -accounts 3

clean:
	rm -rf bin
