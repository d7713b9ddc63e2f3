// Command shadowproxy is a Postgres-wire proxy for migrating a live service
// to a new database without downtime. See the README for the phases.
//
// Usage:
//
//	shadowproxy serve [--config FILE] [flags]
//	shadowproxy report [--format text|json|html] [--out FILE] DIR
//	shadowproxy check [--config FILE] [--old URL] [--new URL] [--format text|json]
//	shadowproxy sequences [--config FILE] [--old URL] [--new URL] [--apply] [--format text|json]
//	shadowproxy version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// The time zone database, for sessions whose DateStyle is not ISO:
	// their timestamptz values are read back by zone (proxy/datestyle.go),
	// and slim images have no /usr/share/zoneinfo.
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: shadowproxy <command> [flags]

commands:
  serve     run the proxy
  report    render the shadow-read comparison report from a report directory
  check     compare the new database's tables with the old database's
  sequences list (--apply: move) the new database's sequences behind the old ones
  version   print the version

Run 'shadowproxy <command> -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "report":
		return runReport(args[1:], stdout, stderr)
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "sequences":
		return runSequences(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "shadowproxy", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "shadowproxy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintln(stderr, "shadowproxy:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")
