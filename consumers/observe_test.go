package consumers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamrpc/streamrpc/streams"
)

// TestRunLogAndMetrics runs handlers through serve (no Redis: serve is the
// part that runs the handler) and checks the run's log line and metrics.
func TestRunLogAndMetrics(t *testing.T) {
	const secret = "hunter2-secret"
	mux := NewMux()
	mux.HandleFunc("ok", func(context.Context, *Request) (any, error) { return map[string]string{"token": secret}, nil })
	mux.HandleFunc("fail", func(context.Context, *Request) (any, error) { return nil, Errorf(4001, "declined") })
	mux.HandleFunc("boom", func(context.Context, *Request) (any, error) { panic("boom") })
	cases := []struct {
		method, wantOutcome string
	}{
		{"ok", "ok"},
		{"fail", "handler_error"},
		{"boom", "internal_error"},
		{"nope", "method_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			reg := prometheus.NewRegistry()
			obs, err := newObserver(Config{Handler: "billing", Registerer: reg}, log, mux)
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{log: log, handler: mux, obs: obs}
			req := &Request{ID: "CALL1", Handler: "billing", Method: tc.method, Params: json.RawMessage(`{"card":"` + secret + `"}`),
				Attempt: 1, EnqueuedAt: time.Now().Add(-50 * time.Millisecond)}
			_, _ = s.serve(context.Background(), req)

			var runLine map[string]any
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if strings.Contains(l, secret) {
					t.Fatalf("a line logs the params or result: %s", l)
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
				if m["call_id"] != "CALL1" {
					t.Fatalf("a line about the call has no call_id: %s", l)
				}
				if m["msg"] == "call" {
					runLine = m
				}
			}
			if runLine == nil || runLine["outcome"] != tc.wantOutcome {
				t.Fatalf("run line %v, want outcome %s (log %s)", runLine, tc.wantOutcome, buf.String())
			}
			method := tc.method
			if method == "nope" {
				method = labelUnknown
			}
			outcome := streams.OutcomeOK
			if tc.wantOutcome != "ok" {
				outcome = tc.wantOutcome
			}
			if got := testutil.ToFloat64(obs.m.runs.WithLabelValues("billing", method, outcome)); got != 1 {
				t.Errorf("runs{%s,%s} = %v, want 1", method, outcome, got)
			}
			if got := testutil.CollectAndCount(obs.m.queueWait); got != 1 {
				t.Errorf("queue wait series = %d, want 1", got)
			}
		})
	}
}

// TestObserverSharedRegisterer: two servers on one Registerer share the
// metrics instead of failing to register them twice.
func TestObserverSharedRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := newObserver(Config{Handler: "h", Registerer: reg}, slog.New(slog.DiscardHandler), NewMux()); err != nil {
			t.Fatalf("observer %d: %v", i, err)
		}
	}
	if _, err := newConsumerMetrics(failingRegisterer{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("a registry error is %v, want ErrConfig", err)
	}
}

type failingRegisterer struct{ prometheus.Registerer }

func (failingRegisterer) Register(prometheus.Collector) error { return errors.New("no") }

// TestWithTiming: a run's reply carries its queue wait and processing time;
// a call that did not run carries none; clock skew never makes it negative.
func TestWithTiming(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name           string
		enqueued       time.Time
		run            streams.Run
		wantQ, wantRun time.Duration
	}{
		{"ran", now.Add(-time.Second), streams.Run{Started: now, Took: 20 * time.Millisecond}, time.Second, 20 * time.Millisecond},
		{"not run", now.Add(-time.Second), streams.Run{}, 0, 0},
		{"edge clock ahead", now.Add(time.Second), streams.Run{Started: now, Took: time.Millisecond}, 0, time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := withTiming(streams.ResultReply("x", json.RawMessage(`1`)), &streams.Call{EnqueuedAt: tc.enqueued}, tc.run)
			if r.QueueWait != tc.wantQ || r.Processing != tc.wantRun {
				t.Fatalf("timing %v %v, want %v %v", r.QueueWait, r.Processing, tc.wantQ, tc.wantRun)
			}
		})
	}
}
