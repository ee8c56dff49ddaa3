package dashboard

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Prefix is the path under which Handler serves; start-api answers it
// before routing to the emulated API.
const Prefix = "/_local/"

//go:embed dashboard.html
var page []byte

// Handler serves, with time.Now as the clock:
//
//	GET /_local/metrics  the Snapshot as JSON
//	GET /_local/         the dashboard page (self-contained: no external scripts, fonts or styles)
//	GET /_local          a redirect to /_local/
//
// Other paths under /_local/ are 404, other methods 405.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "Method Not Allowed"})
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		switch strings.TrimPrefix(r.URL.Path, Prefix) {
		case "metrics":
			writeJSON(w, http.StatusOK, m.Snapshot(time.Now()))
		case "", "index.html":
			h := w.Header()
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-store")
			h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
			_, _ = w.Write(page)
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the response failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
