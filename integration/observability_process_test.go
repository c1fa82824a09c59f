package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/streamrpc/streamrpc/app"
)

// TestSidecarProcessObservability runs `streamrpc consumer` as a process with
// metrics on their own address, debug JSON logs and tracing to an OTLP/HTTP
// collector (a fake one in this process), and checks each from outside: the
// metrics count the call, the health endpoint is ready, the call's log line
// has its id and not its params, the upstream app got the call's
// traceparent, and the spans reached the collector.
func TestSidecarProcessObservability(t *testing.T) {
	edgeTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	t.Cleanup(func() { _ = edgeTP.Shutdown(context.Background()) })
	st := newStack(t, stackOptions{noConsume: true, edge: app.Config{TracerProvider: edgeTP}})
	up := newFakeUpstream(t)

	var exports atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && len(b) > 0 {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(collector.Close)

	health, metrics := freeAddr(t), freeAddr(t)
	p := startProcess(t, binary(t, "streamrpc"), []string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=app", "STREAMRPC_UPSTREAM_URL=" + up.URL,
		"STREAMRPC_METHODS=echo", "STREAMRPC_HEALTH_ADDR=" + health, "STREAMRPC_METRICS_ADDR=" + metrics,
		"STREAMRPC_LOG_LEVEL=debug", "OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100",
	}, "consumer")
	waitUntil(t, 30*time.Second, func() error {
		if code := healthStatus("http://" + health + "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d", code)
		}
		return nil
	})

	const secret = "hunter2-secret"
	r := post(t, st.url, "/rpc/app/echo", []byte(`{"password":"`+secret+`"}`), map[string]string{"traceparent": callerParent})
	if r.status != http.StatusOK {
		t.Fatalf("call: %d %s", r.status, r.body)
	}

	t.Run("metrics on their own address", func(t *testing.T) {
		fams := scrape(t, "http://"+metrics)
		if v := metricValue(fams, "streamrpc_consumer_runs_total", map[string]string{"handler": "app", "method": "echo", "outcome": "ok"}); v != 1 {
			t.Fatalf("runs ok = %v, want 1", v)
		}
		if v := metricValue(fams, "process_resident_memory_bytes", nil); v <= 0 {
			t.Fatalf("process_resident_memory_bytes = %v", v)
		}
		if code := healthStatus("http://" + health + "/metrics"); code != http.StatusNotFound {
			t.Fatalf("/metrics on the health address: %d, want 404 (served on STREAMRPC_METRICS_ADDR)", code)
		}
	})
	t.Run("upstream got the trace context", func(t *testing.T) {
		hs := up.headers()
		if len(hs) != 1 {
			t.Fatalf("upstream got %d calls", len(hs))
		}
		tp := hs[0].Get("traceparent")
		if !strings.HasPrefix(tp, "00-"+callerTraceID+"-") || strings.Contains(tp, callerSpanID) {
			t.Fatalf("upstream traceparent %q: want the caller's trace, a span of ours", tp)
		}
	})
	t.Run("json call log line", func(t *testing.T) {
		waitUntil(t, 10*time.Second, func() error {
			if !strings.Contains(p.stderr.String(), r.requestID) {
				return fmt.Errorf("no line names call %s", r.requestID)
			}
			return nil
		})
		if strings.Contains(p.stderr.String(), secret) {
			t.Fatalf("the logs hold the params:\n%s", p.stderr)
		}
		var found bool
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("a log line is not JSON: %q", sc.Text())
			}
			if line["msg"] == "call" && line["call_id"] == r.requestID && line["outcome"] == "ok" && line["handler"] == "app" {
				found = true
			}
		}
		if !found {
			t.Fatalf("no call line for %s:\n%s", r.requestID, p.stderr)
		}
	})

	if code := p.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if exports.Load() == 0 {
		t.Fatal("no spans reached the OTLP collector (exported on shutdown at the latest)")
	}
}
