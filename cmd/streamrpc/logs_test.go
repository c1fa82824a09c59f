package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLoggerSelection: STREAMRPC_LOG_LEVEL filters, STREAMRPC_LOG_FORMAT
// overrides the subcommand's default format (json for edge and consumer,
// text for dev), and bad values are refused.
func TestLoggerSelection(t *testing.T) {
	cases := []struct {
		name, level, format, def string
		wantJSON                 bool
		wantInfo                 bool // an info line is written
		wantErr                  string
	}{
		{name: "edge default", level: "info", def: logJSON, wantJSON: true, wantInfo: true},
		{name: "dev default", level: "info", def: logText, wantInfo: true},
		{name: "text override", level: "info", format: "text", def: logJSON, wantInfo: true},
		{name: "json override", level: "info", format: "JSON", def: logText, wantJSON: true, wantInfo: true},
		{name: "warn drops info", level: "warn", def: logJSON, wantJSON: true},
		{name: "debug", level: "debug", def: logJSON, wantJSON: true, wantInfo: true},
		{name: "bad level", level: "loud", def: logJSON, wantErr: "STREAMRPC_LOG_LEVEL"},
		{name: "bad format", level: "info", format: "xml", def: logJSON, wantErr: "STREAMRPC_LOG_FORMAT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := logSettings{LogLevel: tc.level, LogFormat: tc.format}.logger(&buf, tc.def)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello", "k", "v")
			log.Warn("careful")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if want := map[bool]int{true: 2, false: 1}[tc.wantInfo]; len(lines) != want {
				t.Fatalf("%d lines, want %d: %q", len(lines), want, buf.String())
			}
			for _, line := range lines {
				isJSON := json.Valid([]byte(line))
				if isJSON != tc.wantJSON {
					t.Fatalf("line %q: JSON %v, want %v", line, isJSON, tc.wantJSON)
				}
				if !tc.wantJSON && !strings.Contains(line, "msg=") {
					t.Fatalf("line %q is not slog's text format", line)
				}
			}
		})
	}
}

// go-redis's own lines go through the process's logger: JSON for the edge,
// and its per-command dial failures only at debug level, so that an outage
// is not one plain-text line per command.
func TestRedisLogsThroughSlog(t *testing.T) {
	cases := []struct {
		name      string
		level     string
		wantLines bool // go-redis's dial failures are written
	}{
		{name: "info: the outage's per-command lines are not written", level: "info", wantLines: false},
		{name: "debug: written, as JSON", level: "debug", wantLines: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuf
			if _, err := (logSettings{LogLevel: tc.level}).logger(&buf, logJSON); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { redis.SetLogger(discardRedis{}) })
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
			t.Cleanup(func() { _ = rdb.Close() })
			for range 5 {
				if err := rdb.Ping(t.Context()).Err(); err == nil {
					t.Fatal("a Redis answers on port 1")
				}
			}
			out := buf.String()
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !tc.wantLines {
				if strings.TrimSpace(out) != "" {
					t.Fatalf("wrote %q, want nothing at info level", out)
				}
				return
			}
			found := false
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Fatalf("line %q is not JSON", l)
				}
				found = found || strings.Contains(l, "failed to dial") && strings.Contains(l, `"component":"go-redis"`)
			}
			if !found {
				t.Fatalf("no go-redis dial failure in %q", out)
			}
		})
	}
}

type discardRedis struct{}

func (discardRedis) Printf(context.Context, string, ...any) {}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
