package shadow

import (
	"bytes"
	"net/http"

	"github.com/shadowproxy/shadowproxy/compare"
)

// Handler serves the live aggregate report: JSON by default, or
// ?format=text or ?format=html (a self-contained page). It answers GET and
// HEAD on whatever path it is mounted at (the admin server mounts it at
// /report).
func (s *Shadower) Handler() http.Handler { return reportHandler(s.Snapshot) }

func reportHandler(snapshot func() *compare.Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var (
			write       func(*bytes.Buffer, *compare.Report) error
			contentType string
		)
		switch format := r.URL.Query().Get("format"); format {
		case "", "json":
			write = func(b *bytes.Buffer, rep *compare.Report) error { return compare.WriteJSON(b, rep) }
			contentType = "application/json"
		case "text":
			write = func(b *bytes.Buffer, rep *compare.Report) error { return compare.WriteText(b, rep) }
			contentType = "text/plain; charset=utf-8"
		case "html":
			write = func(b *bytes.Buffer, rep *compare.Report) error { return compare.WriteHTML(b, rep) }
			contentType = "text/html; charset=utf-8"
		default:
			http.Error(w, "unknown format "+format+" (want json, text or html)", http.StatusBadRequest)
			return
		}
		// Rendered in full first, so a rendering error is a clean 500.
		var buf bytes.Buffer
		if err := write(&buf, snapshot()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(buf.Bytes())
	})
}
