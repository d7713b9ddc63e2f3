// Command bench measures shadowproxy's overhead against a direct connection
// to Postgres and against pgbouncer; it backs `make bench` (scripts/bench.sh).
//
// Usage:
//
//	bench [--proxy bin/shadowproxy] [--duration 5s] [--rounds 5] [--clients 1,8]
//	      [--scale 10] [--idle-clients 2000] [--sections pgbench,dualwrite,shadowread,idle]
//	      [--dualwrite-duration 5s] [--dualwrite-rounds 4]
//	      [--shadowread-duration 5s] [--shadowread-rounds 5]
//	      [--cpuprofile FILE] [--strict] [--keep]
//
// It starts a throwaway Postgres (internal/testdb), loads a pgbench data set
// into it, and then runs sections, each one scenario sharing that setup:
//
//   - pgbench: `pgbench -S -M extended` at each client count against Postgres
//     directly, through the proxy (phase old-only) and through pgbouncer in
//     session mode. Runs are interleaved (round 1: direct, proxy, pgbouncer;
//     round 2: proxy, pgbouncer, direct; ...) so that the noise of a shared
//     machine falls on every target alike, and each target's median over
//     the rounds is reported.
//   - dualwrite: pgbench's TPC-B-like script (-c 4 -j 2 -M prepared)
//     through the proxy in phase old-only and in phase dual-write with the
//     new database (a second throwaway Postgres, loaded with the same
//     pgbench -i data) prompt, stopped, and 50 ms late behind
//     internal/delayproxy. Every run gets a fresh proxy and report
//     directory; the rounds are interleaved like pgbench's and fewer
//     (--dualwrite-rounds, --dualwrite-duration). It reports throughput
//     relative to old-only, the p99 transaction latency computed from
//     pgbench's per-transaction logs (--log), and the mirror's figures from
//     the proxy's /status after each run, and each process's CPU time per
//     transaction (the proxy's, the old and the new Postgres servers').
//     Then, without the proxy, it runs the same script directly on the old
//     database as written and with the RETURNING lists the proxy appends
//     to its writes (rewrite.PlanCapture), in rotating rounds: what the
//     capture costs the old database by itself, which no proxy can win
//     back on a machine whose CPUs the old database shares. For
//     comparison a third variant runs the script as written while
//     Postgres's logical decoding streams its changes (pgoutput, a slot per
//     run) to pg_recvlogical, which discards them: the cost of the other
//     way to capture the stored rows. These rounds restart the old
//     database with wal_level = logical and set it back after. It needs
//     the shadowproxy binary (--proxy): dual-write is wired up in
//     cmd/shadowproxy.
//   - shadowread: select-only pgbench (-c 8 -j 2 -M extended) through
//     the proxy in phase old-only and in phase shadow-read (`shadowproxy
//     serve --new … --phase shadow-read --report-dir …`, [shadow]
//     sample_rate in the file) shadowing 10% and 100% of the reads, and
//     10% with the new database 50 ms late behind internal/delayproxy. The
//     new database is a second throwaway Postgres; both are loaded afresh
//     with pgbench -i, so they hold the same rows. Fresh proxies, rotated
//     rounds and medians as in dualwrite (--shadowread-rounds,
//     --shadowread-duration). Besides throughput relative to old-only it
//     reports, per scenario, the shadower's figures: compared, matched and
//     mismatched from /report?format=json once the shadow queue has
//     drained, dropped and timed-out shadow queries from /metrics. A
//     mismatch between the identical databases is an error in the run:
//     it is printed loudly and the bench fails. Needs --proxy, like
//     dualwrite.
//   - idle: the proxy's resident memory per idle client connection, from
//     /proc/PID/status before and after opening --idle-clients connections.
//
// The final report goes to stdout, progress and per-run figures to stderr.
// The goals (proxy at least as fast as pgbouncer at 8 clients, at most
// 25 µs added per round trip at 1 client; in dual-write at least 0.9× the
// old-only throughput with the new database stopped, no measurable p99
// increase with it 50 ms late, no transaction lost; at most 64 KiB per idle
// client; in shadow-read at least 0.9× the old-only throughput at 10%
// sampling, unchanged, within the noise, by a new database 50 ms late, and
// no mismatch between identical databases) are reported as met or missed;
// --strict makes a missed goal an error. 100% sampling is reported as
// measured, with no goal: on a small machine the shadow queries compete
// with the client's for the CPUs.
//
// Without --proxy the proxy runs in a child process of this binary (the
// hidden "proxy-child" command, built from the same packages as
// cmd/shadowproxy). That is how --cpuprofile works: the child writes a CPU
// profile of the proxy during the pgbench section, for `go tool pprof`.
//
// New scenarios are added as sections (see sections): a function that gets
// the shared environment, starts whatever proxies it needs with their own
// configuration (proxySpec) and returns its part of the report.
package main
