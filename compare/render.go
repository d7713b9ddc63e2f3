package compare

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Exit code bits, after pt-upgrade: CI fails on errors and on differences
// separately.
const (
	ExitErrors     = 1 // a query failed on one side (or in another SQLSTATE class), or timed out
	ExitMismatches = 4 // data, order or shape differences
)

// ExitCode returns the CI exit-code bitmask of a report.
func ExitCode(r *Report) int {
	code := 0
	for t, n := range r.Differences {
		if n == 0 {
			continue
		}
		if t == DiffError || t == DiffTimeout {
			code |= ExitErrors
		} else {
			code |= ExitMismatches
		}
	}
	return code
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// WriteText writes r for a terminal: totals, then one block per class in
// impact order.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "shadowproxy comparison report, generated %s\n", r.Generated.Format(time.RFC3339))
	fmt.Fprintf(&b, "compared %d  matched %d  mismatched %d  noise %d  ignored %d  mismatch rate %s\n",
		r.Compared, r.Matched, r.Mismatched, r.Noise, r.Ignored, percent(r.MismatchRate()))
	fmt.Fprintf(&b, "errors on one side %d  errors on both %d  timeouts %d\n", r.ErrorsOneSide, r.ErrorsBoth, r.Timeouts)
	fmt.Fprintf(&b, "differences: %s\n", diffCounts(r.Differences))
	if r.Untracked > 0 {
		fmt.Fprintf(&b, "events of untracked classes (over the class limit): %d\n", r.Untracked)
	}
	for i := range r.Classes {
		c := &r.Classes[i]
		fmt.Fprintf(&b, "\n== %s: %d mismatched of %d compared (%s)\n", c.Fingerprint, c.Mismatched, c.Compared, percent(c.MismatchRate()))
		fmt.Fprintf(&b, "   query:       %s\n", oneLine(c.Query))
		if len(c.Tables) > 0 {
			fmt.Fprintf(&b, "   tables:      %s\n", strings.Join(c.Tables, ", "))
		}
		fmt.Fprintf(&b, "   seen:        %s .. %s\n", c.FirstSeen.Format(time.RFC3339), c.LastSeen.Format(time.RFC3339))
		fmt.Fprintf(&b, "   counts:      matched %d  noise %d  errors one side %d  both %d  timeouts %d\n",
			c.Matched, c.Noise, c.ErrorsOneSide, c.ErrorsBoth, c.Timeouts)
		if len(c.Differences) > 0 {
			fmt.Fprintf(&b, "   differences: %s\n", diffCounts(c.Differences))
		}
		if len(c.Columns) > 0 {
			fmt.Fprintf(&b, "   columns:     %s\n", sortedCounts(c.Columns))
		}
		if len(c.Ignored) > 0 {
			fmt.Fprintf(&b, "   ignored:     %s\n", sortedCounts(c.Ignored))
		}
		if len(c.Partial) > 0 {
			fmt.Fprintf(&b, "   partial:     %s\n", sortedCounts(c.Partial))
		}
		slow := ""
		if c.SlowOnNew {
			slow = "  SLOW ON NEW (p95 >= 10x)"
		}
		fmt.Fprintf(&b, "   latency ms:  old p50 %s p95 %s p99 %s | new p50 %s p95 %s p99 %s%s\n",
			ms(c.OldLatency.P50), ms(c.OldLatency.P95), ms(c.OldLatency.P99),
			ms(c.NewLatency.P50), ms(c.NewLatency.P95), ms(c.NewLatency.P99), slow)
		for _, ex := range c.Examples {
			fmt.Fprintf(&b, "   - [%s]", ex.Type)
			if ex.Column != "" {
				fmt.Fprintf(&b, " column %s", ex.Column)
			}
			if ex.RowKey != "" {
				fmt.Fprintf(&b, " at %s", ex.RowKey)
			}
			fmt.Fprintf(&b, ": old %s | new %s", oneLine(ex.Old), oneLine(ex.New))
			if ex.Rule != "" {
				fmt.Fprintf(&b, "  (%s)", ex.Rule)
			}
			if len(ex.Params) > 0 {
				fmt.Fprintf(&b, "  params [%s]", strings.Join(ex.Params, ", "))
			}
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write text report: %w", err)
	}
	return nil
}

func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" }

func ms(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// diffCounts lists difference counts in DiffTypes order.
func diffCounts(m map[DiffType]int64) string {
	var parts []string
	for _, t := range DiffTypes {
		if n := m[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// sortedCounts lists counts, largest first, then by name.
func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

//go:embed report.html.tmpl
var htmlTemplateText string

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"percent":     percent,
	"ms":          ms,
	"rfc3339":     func(t time.Time) string { return t.Format(time.RFC3339) },
	"diffCounts":  diffCounts,
	"sortedCount": sortedCounts,
}).Parse(htmlTemplateText))

// chart is the inline SVG mismatch-rate chart.
type chart struct {
	Width, Height int
	Points        string // polyline points
	Dots          []chartDot
	MaxRate       string
	From, To      string
}

type chartDot struct {
	X, Y  string
	Title string
}

const chartW, chartH, chartPad = 720, 160, 24

func buildChart(r *Report) chart {
	c := chart{Width: chartW, Height: chartH + 2*chartPad, MaxRate: "0%"}
	if len(r.Series) == 0 {
		return c
	}
	maxRate := 0.0
	for _, p := range r.Series {
		maxRate = max(maxRate, p.Rate)
	}
	if maxRate == 0 {
		maxRate = 1 // a flat line at the bottom
	}
	c.MaxRate = percent(maxRate)
	c.From = r.Series[0].Start.Format(time.RFC3339)
	c.To = r.Series[len(r.Series)-1].Start.Add(r.SeriesBucket).Format(time.RFC3339)
	var pts []string
	for i, p := range r.Series {
		x := float64(chartPad)
		if len(r.Series) > 1 {
			x += float64(i) * float64(chartW-2*chartPad) / float64(len(r.Series)-1)
		}
		y := float64(chartPad) + float64(chartH)*(1-p.Rate/maxRate)
		xs, ys := strconv.FormatFloat(x, 'f', 1, 64), strconv.FormatFloat(y, 'f', 1, 64)
		pts = append(pts, xs+","+ys)
		c.Dots = append(c.Dots, chartDot{X: xs, Y: ys, Title: fmt.Sprintf("%s: %d of %d mismatched (%s)", p.Start.Format(time.RFC3339), p.Mismatched, p.Compared, percent(p.Rate))})
	}
	c.Points = strings.Join(pts, " ")
	return c
}

// WriteHTML writes r as one self-contained HTML page: inline CSS, an inline
// SVG chart of the mismatch rate over time, the totals, classes by impact
// and their examples side by side.
func WriteHTML(w io.Writer, r *Report) error {
	data := struct {
		*Report
		Chart     chart
		DiffTypes []DiffType
		Exit      int
	}{r, buildChart(r), DiffTypes, ExitCode(r)}
	if err := htmlTemplate.Execute(w, data); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}
