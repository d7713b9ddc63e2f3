#!/usr/bin/env bash
# `make bench`: shadowproxy against Postgres direct and pgbouncer (pgbench
# -S, interleaved runs), and the proxy's memory per idle client connection.
# The work is done by internal/cmd/bench; this script installs what it
# needs and builds it. Takes about six minutes.
#
# Arguments are passed to the bench, e.g.
#   scripts/bench.sh --rounds 3 --duration 3s --sections pgbench
#   scripts/bench.sh --cpuprofile /tmp/proxy.prof    # profile the proxy
# (see `go doc ./internal/cmd/bench` or bin/bench --help). $BENCH_FLAGS is
# added too, for make: make bench BENCH_FLAGS='--rounds 3'.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
mkdir -p bin
go build -o bin/shadowproxy ./cmd/shadowproxy
go build -o bin/bench ./internal/cmd/bench
# BENCH_FLAGS is split on spaces on purpose: it holds several flags.
# shellcheck disable=SC2086
exec bin/bench --proxy bin/shadowproxy ${BENCH_FLAGS:-} "$@"
