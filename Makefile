# shadowproxy developer tasks. `make test` is what CI runs (.ci/run).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO ?= go
# staticcheck 2026.2.x, which supports Go 1.26. Run with `go run
# pkg@version`, so it is neither in go.mod nor installed globally.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
# Per fuzz target: briefly in `make test`, longer in `make fuzz`.
FUZZTIME ?= 10s
LONG_FUZZTIME ?= 2m

.PHONY: help build test deps lint fmt-check vet staticcheck unit fuzz-smoke fuzz bench demo cover clean

## build: compile bin/shadowproxy (cgo is required by pg_query_go)
build:
	mkdir -p bin
	CGO_ENABLED=1 $(GO) build -o bin/shadowproxy ./cmd/shadowproxy

## test: everything CI checks: system packages, lint, race tests, brief fuzzing
test: deps lint unit fuzz-smoke

## deps: install the Debian packages tests and benchmarks need (root)
deps:
	scripts/install-deps.sh

## lint: gofmt, go vet and staticcheck
lint: fmt-check vet staticcheck

fmt-check:
	@files=$$(find . -name '*.go' -not -path './.*' -not -path '*/testdata/*'); \
	unformatted=$$(gofmt -l $$files); \
	if [[ -n $$unformatted ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

vet:
	$(GO) vet ./...

# Skipped (loudly) only when the tool itself cannot be built, e.g. offline;
# findings always fail.
staticcheck:
	@if $(STATICCHECK) -version >/dev/null 2>&1; then \
		echo "$(STATICCHECK) ./..."; $(STATICCHECK) ./...; \
	else \
		echo "staticcheck $(STATICCHECK_VERSION) cannot be built here (offline, or no support for $$($(GO) env GOVERSION)); SKIPPING it"; \
	fi

## unit: the tests, with the race detector
unit:
	$(GO) test -race -count=1 -timeout 12m ./...

fuzz-smoke:
	scripts/fuzz.sh $(FUZZTIME)

## fuzz: every fuzz target for LONG_FUZZTIME
fuzz:
	scripts/fuzz.sh $(LONG_FUZZTIME)

## bench: the benchmark suite (scripts/bench.sh)
bench: deps
	scripts/bench.sh

## demo: old Postgres + new MariaDB behind a proxy in phase old-only; Ctrl-C ends it
demo:
	scripts/demo.sh

## cover: test coverage summary (coverage.out, coverage.html)
cover:
	$(GO) test -count=1 -coverprofile=coverage.out ./...
	$(GO) tool cover -html=coverage.out -o coverage.html
	$(GO) tool cover -func=coverage.out | tail -n 1

## clean: remove build output, demo leftovers and coverage files
clean:
	rm -rf bin .demo coverage.out coverage.html

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
