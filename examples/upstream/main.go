// Command upstream is an example app for the streamrpc sidecar consumer
// (`streamrpc consumer`): a plain HTTP service, Go standard library only, that
// any language could replace in a few lines. The contract (see
// docs/sidecar.md):
//
//	GET  /healthz            200 once the app can take calls
//	POST /{method}           the params as a JSON body; headers
//	                         Streamrpc-Call-Id, Streamrpc-Attempt, Streamrpc-Deadline
//	  2xx + JSON body        the result
//	  4xx + {"error":{"code":N,"message":"…","data":…}}   a final error
//	  5xx (or no answer)     a retryable error: the call is tried again later
//
// Methods: echo → its params, byte for byte; greet {"name":"Ada"} →
// {"greeting":"Hello, Ada!"}; add {"a":1,"b":2} → {"sum":3}; fail → always 503
// (retried, then dead-lettered); flaky {"fail_attempts":N} → 503 on attempts
// 1..N, then {"attempt":A}; slow {"ms":N} → sleeps N ms (until the call's
// deadline at most); stream {"n":N,"ms":M} → streams N lines {"i":k} M ms
// apart as NDJSON, then {"counted":N}: the caller gets each line as a partial
// result and the last as the result (docs/streaming.md).
//
//	UPSTREAM_ADDR=:3000 go run ./examples/upstream
//	go run ./examples/upstream healthcheck   # exit 0 if /healthz answers 200 (for a container HEALTHCHECK)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := os.Getenv("UPSTREAM_ADDR")
	if addr == "" {
		addr = ":3000"
	}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(addr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: newMux(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("upstream listening", "addr", addr)
	select {
	case err := <-errc:
		slog.Error("upstream stopped", "err", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		slog.Error("upstream shutdown", "err", err)
		os.Exit(1)
	}
	<-errc
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// The params, byte for byte: the sidecar sends the caller's JSON as is.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": map[string]any{"code": -32602, "message": "params too large: " + err.Error()}})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("POST /greet", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Name string `json:"name"`
		}
		if !bind(w, r, &p) {
			return
		}
		if strings.TrimSpace(p.Name) == "" {
			// A business error: final, not retried. The caller gets 422.
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
				"code": 1001, "message": "name is required", "data": map[string]string{"field": "name"},
			}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"greeting": "Hello, " + p.Name + "!"})
	})
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			A *float64 `json:"a"`
			B *float64 `json:"b"`
		}
		if !bind(w, r, &p) {
			return
		}
		if p.A == nil || p.B == nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": -32602, "message": "want {\"a\": number, \"b\": number}"}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]float64{"sum": *p.A + *p.B})
	})
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			N  int `json:"n"`
			MS int `json:"ms"`
		}
		if !bind(w, r, &p) {
			return
		}
		// Each line is a partial result, the last one the result: the
		// sidecar relays them as they are flushed.
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher, _ := w.(http.Flusher)
		for i := 1; i <= p.N; i++ {
			fmt.Fprintf(w, "{\"i\":%d}\n", i)
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case <-time.After(time.Duration(p.MS) * time.Millisecond):
			case <-r.Context().Done(): // the call was cancelled, or its deadline passed
				return
			}
		}
		fmt.Fprintf(w, "{\"counted\":%d}\n", p.N)
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"message": "the database is down (attempt " + r.Header.Get("Streamrpc-Attempt") + ")"}})
	})
	mux.HandleFunc("POST /flaky", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			FailAttempts int `json:"fail_attempts"`
		}
		if !bind(w, r, &p) {
			return
		}
		attempt, _ := strconv.Atoi(r.Header.Get("Streamrpc-Attempt"))
		if attempt <= p.FailAttempts {
			http.Error(w, fmt.Sprintf("flaky: failing attempt %d of %d", attempt, p.FailAttempts), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"attempt": attempt})
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			MS int `json:"ms"`
		}
		if !bind(w, r, &p) {
			return
		}
		t := time.NewTimer(time.Duration(p.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done(): // the sidecar gave up: the call's deadline passed
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"slept": p.MS})
	})
	return mux
}

// bind decodes the JSON body into v, or answers 400 and returns false.
func bind(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": -32602, "message": "invalid params: " + err.Error()}})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// healthcheck GETs this app's /healthz: 0 if it answers 200, else 1.
func healthcheck(addr string) int {
	host := addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + host + "/healthz")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			return 0
		}
		err = errors.New(res.Status)
	}
	fmt.Fprintln(os.Stderr, "upstream healthcheck:", err)
	return 1
}
