package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shadowproxy/shadowproxy/compare"
)

const reportUsage = `usage: shadowproxy report [--format text|json|html] [--out FILE] DIR

Renders the shadow-read comparison events that the proxy wrote to DIR (its
shadow report directory) as one report.

Exit status, a bitmask for CI:
  0  no differences
  1  errors: a query failed on one side only (or in another SQLSTATE class),
     or timed out on the new database
  4  mismatches: data, order or column differences
  5  both
  2  usage error, or DIR could not be read
`

// runReport implements `shadowproxy report`. Flags may come before or
// after DIR.
func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", "text", "output format: text, json or html")
	out := fs.String("out", "", "write the report to `FILE` instead of standard output")
	usageErr := func(msg string) int {
		if msg != "" {
			fmt.Fprintf(stderr, "shadowproxy report: %s\n\n", msg)
		}
		fmt.Fprint(stderr, reportUsage)
		return 2
	}
	var dirs []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, reportUsage)
				return 0
			}
			return usageErr(err.Error())
		}
		if fs.NArg() == 0 {
			break
		}
		dirs = append(dirs, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(dirs) != 1 {
		return usageErr(fmt.Sprintf("want exactly one directory, got %d", len(dirs)))
	}
	var write func(io.Writer, *compare.Report) error
	switch *format {
	case "text":
		write = compare.WriteText
	case "json":
		write = compare.WriteJSON
	case "html":
		write = compare.WriteHTML
	default:
		return usageErr(fmt.Sprintf("unknown format %q (want text, json or html)", *format))
	}

	dir := dirs[0]
	if err := checkReportDir(dir); err != nil {
		fmt.Fprintf(stderr, "shadowproxy report: %v\n", err)
		return 2
	}
	rep, err := compare.LoadDir(dir)
	if err != nil {
		fmt.Fprintf(stderr, "shadowproxy report: %v\n", err)
		return 2
	}
	var buf bytes.Buffer
	if err := write(&buf, rep); err != nil {
		fmt.Fprintf(stderr, "shadowproxy report: %v\n", err)
		return 2
	}
	if *out == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			fmt.Fprintf(stderr, "shadowproxy report: %v\n", err)
			return 2
		}
	} else if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "shadowproxy report: %v\n", err)
		return 2
	}
	return compare.ExitCode(rep)
}

// checkReportDir explains a directory that cannot hold a report: missing,
// not a directory, or without event files (a proxy writing to it always
// has at least one, so none means the wrong directory).
func checkReportDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "events-") && strings.HasSuffix(e.Name(), ".jsonl") {
			return nil
		}
	}
	return fmt.Errorf("no event files (events-*.jsonl) in %s: is it the proxy's shadow report directory?", dir)
}
