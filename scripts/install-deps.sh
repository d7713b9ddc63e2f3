#!/usr/bin/env bash
# Installs the Debian packages that shadowproxy's tests, demo and benchmarks
# need, when they are missing. Idempotent: with everything installed it only
# checks, in well under a second.
#
#   postgresql, postgresql-contrib  the old database (tests start throwaway
#                                   servers from these binaries; pgbench)
#   mariadb-server, mariadb-client  the new database for the MySQL target
#   pgbouncer                       the baseline in scripts/bench.sh
#   openssl                         TLS material for manual testing
#   gcc, libc6-dev                  cgo, which pg_query_go needs
#
# Must run as root (or with password-less sudo). Otherwise it prints what is
# missing and exits 1.
#
# The servers these packages would start as system services are never used:
# the tests and the demo run their own on free ports (internal/testdb). A
# policy-rc.d that forbids starting services is put in place for the
# duration of the install, so none is left running on 5432 or 3306.
set -euo pipefail

packages=(
	postgresql postgresql-contrib
	mariadb-server mariadb-client
	pgbouncer
	openssl
	gcc libc6-dev
)

if ! command -v dpkg-query >/dev/null; then
	echo "install-deps: not a Debian-like system; install by hand: ${packages[*]}" >&2
	exit 1
fi

missing_packages() {
	local p status
	for p in "${packages[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[[ $status == *" installed" ]] || echo "$p"
	done
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} == 0)); then
	exit 0
fi

sudo=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		echo "install-deps: missing Debian packages: ${missing[*]}" >&2
		echo "install-deps: run this script as root, or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi

# internal/testdb installs packages too (when a test needs a server), under
# the same lock, so parallel test binaries and this script take turns.
# (Only as root: the lock file belongs to root.)
if ((EUID == 0)) && command -v flock >/dev/null; then
	exec 9>>/tmp/shadowproxy-testdb-apt.lock
	flock -w 600 9
fi
mapfile -t missing < <(missing_packages)
if ((${#missing[@]} == 0)); then
	exit 0
fi

policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# Written by shadowproxy scripts/install-deps.sh.\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "install-deps: installing ${missing[*]}"
apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
"${apt_get[@]}" update
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}"

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} > 0)); then
	echo "install-deps: still missing after apt-get install: ${missing[*]}" >&2
	exit 1
fi
