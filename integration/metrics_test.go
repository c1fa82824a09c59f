package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
)

// scrape GETs url's /metrics and parses the text exposition.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// metricValue is the value of the series of family name whose labels
// include labels (a counter's or gauge's value, a histogram's count); -1
// if there is no such series.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// gathered parses a registry's metrics as they would be scraped.
func gathered(t testing.TB, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestMetricsCountCalls makes calls with known outcomes and checks every
// metric that counts them: the edge's calls, latencies (its own, and the
// consumer's queue wait and processing carried in the replies), the
// consumer's runs, and the queue gauges read from Redis.
func TestMetricsCountCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := newStack(t, stackOptions{consumer: consumers.Config{Registerer: reg, MaxAttempts: 1}})
	const okCalls, failCalls, unknownCalls = 5, 3, 2
	for i := range okCalls {
		if r := post(t, st.url, "/rpc/echo/echo", fmt.Appendf(nil, `{"i":%d}`, i), nil); r.status != http.StatusOK {
			t.Fatalf("echo: %d %s", r.status, r.body)
		}
	}
	for range failCalls {
		if r := post(t, st.url, "/rpc/echo/fail", []byte(`{"message":"no"}`), nil); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("fail: %d %s", r.status, r.body)
		}
	}
	for range unknownCalls {
		if r := post(t, st.url, "/rpc/echo/nope", []byte(`{}`), nil); r.status != http.StatusNotFound {
			t.Fatalf("nope: %d %s", r.status, r.body)
		}
	}
	if r := post(t, st.url, "/rpc/nobody/nope", []byte(`{}`), nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown handler: %d %s", r.status, r.body)
	}

	edge := scrape(t, st.url)
	cases := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"ok calls", "streamrpc_calls_total", map[string]string{"handler": "echo", "method": "echo", "outcome": "ok"}, okCalls},
		{"handler errors", "streamrpc_calls_total", map[string]string{"handler": "echo", "method": "fail", "outcome": "handler_error"}, failCalls},
		{"unknown method", "streamrpc_calls_total", map[string]string{"handler": "echo", "method": "_unknown", "outcome": "method_not_found"}, unknownCalls},
		{"unknown handler", "streamrpc_calls_total", map[string]string{"handler": "_unknown", "method": "_unknown", "outcome": "method_not_found"}, 1},
		{"end-to-end latency", "streamrpc_call_duration_seconds", map[string]string{"handler": "echo", "method": "echo"}, okCalls},
		{"queue wait from replies", "streamrpc_queue_wait_seconds", map[string]string{"handler": "echo", "method": "echo"}, okCalls},
		{"processing from replies", "streamrpc_processing_seconds", map[string]string{"handler": "echo", "method": "fail"}, failCalls},
		{"nothing in flight", "streamrpc_calls_in_flight", nil, 0},
		{"no websockets", "streamrpc_websocket_connections", nil, 0},
		{"backlog drained", "streamrpc_handler_backlog", map[string]string{"handler": "echo"}, 0},
		{"one consumer online", "streamrpc_handler_consumers_online", map[string]string{"handler": "echo"}, 1},
		{"no dead letters", "streamrpc_handler_dead_letters", map[string]string{"handler": "echo"}, 0},
		{"no redis errors", "streamrpc_redis_errors_total", map[string]string{"op": "enqueue"}, 0},
	}
	for _, tc := range cases {
		t.Run("edge/"+tc.name, func(t *testing.T) {
			if got := metricValue(edge, tc.metric, tc.labels); got != tc.want {
				t.Fatalf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}

	consumer := gathered(t, reg)
	ccases := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"ok runs", "streamrpc_consumer_runs_total", map[string]string{"handler": "echo", "method": "echo", "outcome": "ok"}, okCalls},
		{"failed runs", "streamrpc_consumer_runs_total", map[string]string{"handler": "echo", "method": "fail", "outcome": "handler_error"}, failCalls},
		{"queue wait", "streamrpc_consumer_queue_wait_seconds", map[string]string{"handler": "echo", "method": "echo"}, okCalls},
		{"processing", "streamrpc_consumer_processing_seconds", map[string]string{"handler": "echo", "method": "fail"}, failCalls},
		{"idle", "streamrpc_consumer_in_flight", map[string]string{"handler": "echo", "method": "echo"}, 0},
	}
	for _, tc := range ccases {
		t.Run("consumer/"+tc.name, func(t *testing.T) {
			if got := metricValue(consumer, tc.metric, tc.labels); got != tc.want {
				t.Fatalf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
}

// TestMetricsQueueGauges: calls waiting for a handler with no consumer show
// in its backlog gauge once the scrape cache (2s) has expired.
func TestMetricsQueueGauges(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	st.register(t, consumers.Config{Handler: "idle"}, echo.Mux())
	if v := metricValue(scrape(t, st.url), "streamrpc_handler_backlog", map[string]string{"handler": "idle"}); v != 0 {
		t.Fatalf("backlog before any call = %v, want 0", v)
	}
	for range 3 {
		if r := post(t, st.url, "/rpc/idle/echo", []byte(`{}`), map[string]string{"Prefer": "respond-async"}); r.status != http.StatusAccepted {
			t.Fatalf("async call: %d %s", r.status, r.body)
		}
	}
	waitUntil(t, 10*time.Second, func() error {
		fams := scrape(t, st.url)
		if v := metricValue(fams, "streamrpc_handler_backlog", map[string]string{"handler": "idle"}); v != 3 {
			return fmt.Errorf("backlog %v, want 3", v)
		}
		if v := metricValue(fams, "streamrpc_calls_total", map[string]string{"handler": "idle", "method": "echo", "outcome": "accepted"}); v != 3 {
			return fmt.Errorf("accepted calls %v, want 3", v)
		}
		return nil
	})
	// The exposition is valid for Prometheus: every family has HELP and TYPE.
	res, err := httpClient.Get(st.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, name := range []string{"streamrpc_calls_total", "streamrpc_handler_backlog", "streamrpc_call_duration_seconds"} {
		if !strings.Contains(string(body), "# HELP "+name+" ") || !strings.Contains(string(body), "# TYPE "+name+" ") {
			t.Errorf("%s has no HELP or TYPE line", name)
		}
	}
}

// smembersCounter counts SMEMBERS commands: the registry read that begins
// each HandlerSummaries, once per scrape that reads Redis.
type smembersCounter struct{ n atomic.Int64 }

func (c *smembersCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *smembersCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "smembers" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *smembersCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestMetricsScrapeCache: scrapes within 2s of each other share one read of
// the queues from Redis; a scrape after that reads again.
func TestMetricsScrapeCache(t *testing.T) {
	st := newStack(t, stackOptions{})
	rdb := st.connect(t)
	var counter smembersCounter
	rdb.AddHook(&counter)
	edge, err := app.New(rdb, app.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = edge.Serve(ln) }()
	t.Cleanup(func() { _ = edge.Close() })
	url := "http://" + ln.Addr().String()

	start := time.Now()
	for range 5 {
		if v := metricValue(scrape(t, url), "streamrpc_handler_consumers_online", map[string]string{"handler": "echo"}); v != 1 {
			t.Fatalf("consumers online %v, want 1", v)
		}
	}
	if time.Since(start) < 2*time.Second && counter.n.Load() != 1 {
		t.Fatalf("5 scrapes within 2s read the registry %d times, want 1", counter.n.Load())
	}
	// Once the cache has expired, a scrape reads Redis again.
	waitUntil(t, 10*time.Second, func() error {
		scrape(t, url)
		if n := counter.n.Load(); n < 2 {
			return fmt.Errorf("%d registry reads after %s", n, time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
}
