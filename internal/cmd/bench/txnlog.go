package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// pgbench's summary has the average latency but no percentiles; with
// --log it writes one line per transaction, from which they are computed
// here. The format (pgbench 15, "Per-Transaction Logging"):
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]
//
// where time is the transaction's latency in µs, or "failed" (the
// transaction ended in an error) or "skipped" (only with --rate and
// --latency-limit, which the bench does not use). Each pgbench thread
// writes its own file: PREFIX.PID for the first, PREFIX.PID.N for others.

// txnLatencies are the latencies of one run's transactions.
type txnLatencies struct {
	MS      []float64 // each transaction's latency, in milliseconds
	Failed  int       // transactions logged as failed
	Skipped int       // transactions logged as skipped
}

// parseTxnLog reads one per-transaction log and appends to l.
func parseTxnLog(r io.Reader, l *txnLatencies) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return fmt.Errorf("line %d: want at least 6 fields, got %q", n, line)
		}
		switch f[2] {
		case "failed":
			l.Failed++
			continue
		case "skipped":
			l.Skipped++
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 {
			return fmt.Errorf("line %d: latency %q is not a number of µs", n, f[2])
		}
		l.MS = append(l.MS, float64(us)/1000)
	}
	return sc.Err()
}

// readTxnLogs reads every log pgbench wrote with --log-prefix prefix. A
// run with failed transactions is an error, like parsePGBench's: a p99
// without them would flatter the target.
func readTxnLogs(prefix string) (txnLatencies, error) {
	var l txnLatencies
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return l, err
	}
	if len(files) == 0 {
		return l, fmt.Errorf("no pgbench transaction logs %s.*", prefix)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return l, err
		}
		err = parseTxnLog(f, &l)
		f.Close()
		if err != nil {
			return l, fmt.Errorf("%s: %w", name, err)
		}
	}
	switch {
	case l.Failed > 0:
		return l, fmt.Errorf("pgbench logged %d failed transactions", l.Failed)
	case len(l.MS) == 0:
		return l, errors.New("pgbench logged no transactions")
	}
	return l, nil
}

// percentile returns the p-th percentile (0 < p ≤ 100) of xs by the
// nearest-rank method: the smallest value that at least p% of the values
// are less than or equal to. Unlike interpolation, it is always a latency
// some transaction actually had. NaN for no values.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// The epsilon keeps a rank that is a whole number in exact arithmetic
	// (p=99.9 of 1000 values: 999) from rounding up to the next one.
	rank := int(math.Ceil(p*float64(len(s))/100 - 1e-9))
	return s[max(rank, 1)-1]
}
