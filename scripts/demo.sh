#!/usr/bin/env bash
# `make demo`: a throwaway old Postgres and new MariaDB, seeded with a small
# "demo" database, behind a shadowproxy in phase old-only. Runs in the
# foreground; Ctrl-C stops everything and removes the servers' data
# (comparison reports stay in $DEMO_DIR/reports).
#
# The databases come from internal/cmd/devdb, i.e. the same code the tests
# use (internal/testdb): loopback only, free ports, data under $DEMO_DIR.
#
# Environment:
#   DEMO_DIR     where the servers keep their files (default .demo). When run
#                as root the servers run as the postgres/mysql users, which
#                must be able to enter it: a checkout under /root will not do.
#   DEMO_LISTEN  the proxy's client address (default 127.0.0.1:6432)
#   DEMO_ADMIN   the proxy's admin HTTP address (default 127.0.0.1:9187)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=${DEMO_DIR:-.demo}
listen=${DEMO_LISTEN:-127.0.0.1:6432}
admin=${DEMO_ADMIN:-127.0.0.1:9187}

# port_in_use HOST:PORT succeeds when something accepts connections there.
port_in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$listen" "$admin"; do
	if port_in_use "$addr"; then
		echo "demo: $addr is already in use; set DEMO_LISTEN / DEMO_ADMIN to free addresses" >&2
		exit 1
	fi
done

scripts/install-deps.sh
mkdir -p bin "$dir"
echo "demo: building bin/shadowproxy and bin/devdb"
go build -o bin/shadowproxy ./cmd/shadowproxy
go build -o bin/devdb ./internal/cmd/devdb

devdb_pid=""
proxy_pid=""
# stop PID: ask the process to finish and wait for it (each cleans up after
# itself on SIGTERM: devdb stops the servers and removes their data).
stop() {
	[[ -n $1 ]] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "demo: stopping"
	stop "$proxy_pid"
	stop "$devdb_pid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

env_file=$dir/env
rm -f "$env_file"
bin/devdb --dir "$dir" --env "$env_file" --seed &
devdb_pid=$!
# devdb writes the file (atomically) once both servers are up and seeded.
until [[ -f $env_file ]]; do
	if ! kill -0 "$devdb_pid" 2>/dev/null; then
		wait "$devdb_pid" || true
		devdb_pid=""
		echo "demo: devdb failed to start the databases (see its messages above)" >&2
		exit 1
	fi
	sleep 0.1
done
# shellcheck source=/dev/null
source "$env_file"

mkdir -p "$dir/reports"
bin/shadowproxy serve \
	--listen "$listen" --admin "$admin" \
	--old "$DEVDB_OLD_URL" --new "$DEVDB_NEW_URL" \
	--phase old-only --report-dir "$dir/reports" &
proxy_pid=$!

cat <<EOF

================================================================================
 shadowproxy demo (phase old-only) -- Ctrl-C stops everything
================================================================================
 Connect through the proxy (user demo, password demo):

   psql 'postgres://demo:demo@${listen}/demo?sslmode=disable'

   SELECT * FROM accounts;
   INSERT INTO accounts (email, balance) VALUES ('you@example.com', 10);

 Proxy status and metrics:

   curl http://${admin}/status
   curl http://${admin}/metrics

 Behind the proxy:

   old (Postgres 127.0.0.1:${DEVDB_PG_PORT}):  psql '${DEVDB_OLD_URL}'
   new (MariaDB 127.0.0.1:${DEVDB_MARIADB_PORT}):  mariadb -h 127.0.0.1 -P ${DEVDB_MARIADB_PORT} -u demo -pdemo demo

 Server logs: ${DEVDB_PG_LOG}
              ${DEVDB_MARIADB_LOG}
 Reports:     ${dir}/reports
================================================================================

EOF

if wait "$proxy_pid"; then
	echo "demo: shadowproxy exited"
else
	echo "demo: shadowproxy exited with status $?" >&2
fi
proxy_pid=""
