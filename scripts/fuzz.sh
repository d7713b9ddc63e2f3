#!/usr/bin/env bash
# Runs every fuzz target in the module, one after the other, each for
# FUZZTIME (first argument, default 10s): `make test` runs them briefly,
# `make fuzz` for longer. New crashers are written to the package's
# testdata/fuzz/<Target>/ and fail the run; commit them with the fix so
# they become regression tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${1:-10s}
go=${GO:-go}

# Only packages whose tests define a fuzz target: `go test -list` compiles
# a test binary, which is slow to do for every package.
mapfile -t dirs < <(
	grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
		grep -v -e '/testdata/' -e '^\./\.' |
		xargs -r -n1 dirname | sort -u
)

count=0
for dir in "${dirs[@]}"; do
	list=$("$go" test -list '^Fuzz' "$dir")
	mapfile -t targets < <(grep '^Fuzz' <<<"$list" || true)
	for target in "${targets[@]}"; do
		echo "fuzz: $dir $target for $fuzztime"
		"$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir"
		count=$((count + 1))
	done
done

if ((count == 0)); then
	echo "fuzz: no fuzz targets found"
else
	echo "fuzz: $count target(s) passed"
fi
