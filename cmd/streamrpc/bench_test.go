package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/internal/bench"
)

func TestBenchFlags(t *testing.T) {
	var stderr bytes.Buffer
	f, err := parseBenchFlags([]string{"-mode", "ws", "-c", "8", "-d", "3s", "-size", "512", "-conns", "4",
		"-baseline", "-floor", "-redis", "redis://127.0.0.1:1/0", "-inprocess", "-json", "-handler", "h", "-method", "m"}, &stderr)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, stderr.String())
	}
	c := f.cfg
	if c.Mode != "ws" || c.Concurrency != 8 || c.Duration != 3*time.Second || c.Size != 512 || c.Conns != 4 ||
		!c.Baseline || !c.Floor || !c.InProcess || c.RedisURL != "redis://127.0.0.1:1/0" || !f.json || c.Handler != "h" || c.Method != "m" {
		t.Fatalf("parsed %+v json=%v", c, f.json)
	}

	f, err = parseBenchFlags(nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.Mode != "http" || f.cfg.Concurrency != 64 || f.cfg.Size != 256 || f.cfg.URL != "http://localhost:8080" ||
		f.cfg.Handler != "echo" || f.cfg.Method != "echo" || f.cfg.Rate != 0 {
		t.Fatalf("defaults %+v", f.cfg)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-nope"},
		{"-c", "0"},
		{"-c", "x"},
		{"-mode", "grpc"},
		{"-size", "5"},
		{"-rate", "-3"},
		{"-inprocess"},  // needs -redis
		{"-idle", "10"}, // needs -inprocess
		{"-floor"},      // needs -redis
		{"-floor", "-redis", "redis://127.0.0.1:1/0", "-rate", "10"}, // closed loop only
		{"-d", "0s"},
		{"-spawn"}, // needs -redis
		{"-spawn", "-inprocess", "-redis", "redis://127.0.0.1:1/0"},
		{"-pid", "edge"},
		{"stray"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"bench"}, args...), &stdout, &stderr); code != 2 {
			t.Errorf("bench %v: exit %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), "usage: streamrpc bench") {
			t.Errorf("bench %v: stderr has no usage: %q", args, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if _, err := parseBenchFlags([]string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestBenchParams(t *testing.T) {
	for _, n := range []int{bench.MinSize, 12, 256, 4096} {
		p := bench.Params(n)
		if len(p) != n || !strings.HasPrefix(string(p), `{"data":"`) || !strings.HasSuffix(string(p), `"}`) {
			t.Errorf("Params(%d) = %d bytes %.40q", n, len(p), p)
		}
	}
}

func TestBenchPercentiles(t *testing.T) {
	var h bench.Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 {
		t.Fatal("empty histogram is not zero")
	}
	// 1..1000 µs, each once.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	within := func(got, want time.Duration) bool {
		return got >= want && float64(got) <= float64(want)*1.01 // buckets round up, by under 1%
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, time.Millisecond}} {
		if got := h.Quantile(c.q); !within(got, c.want) {
			t.Errorf("p%g = %v, want %v (+1%%)", c.q*100, got, c.want)
		}
	}
	if h.Max() != time.Millisecond || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	if m := h.Mean(); m != 500500*time.Nanosecond {
		t.Errorf("mean %v, want 500.5µs", m)
	}
	// Small values are exact; huge ones are clamped, not lost.
	var s bench.Histogram
	s.Record(100 * time.Nanosecond)
	s.Record(-time.Second)
	s.Record(1000 * time.Hour)
	if got := s.Quantile(0.5); got != 100*time.Nanosecond {
		t.Errorf("p50 of {-1s→0, 100ns, 1000h} = %v, want 100ns", got)
	}
	if s.Count() != 3 {
		t.Errorf("count %d", s.Count())
	}
	// The summary is in microseconds.
	l := bench.Summarize(&h)
	if l.P50 < 500 || l.P50 > 505 || l.Max != 1000 {
		t.Errorf("summary %+v", l)
	}
}

func TestBenchRatios(t *testing.T) {
	ours := bench.Result{Throughput: 4000, Latency: bench.Latency{P50: 800, P99: 3000}}
	base := bench.Result{Throughput: 10000, Latency: bench.Latency{P50: 200, P99: 1000}}
	r := bench.Compare(ours, base)
	if r.Throughput != 0.4 || r.P50 != 4 || r.P99 != 3 {
		t.Fatalf("ratios %+v", r)
	}
	if bench.Ratio(1, 0) != 0 || bench.Ratio(2, 3) != 0.667 {
		t.Fatalf("Ratio rounding/zero: %v %v", bench.Ratio(1, 0), bench.Ratio(2, 3))
	}
}

func TestPrintReport(t *testing.T) {
	rep := &bench.Report{
		Load:        "http echo.echo",
		Result:      bench.Result{Target: "streamrpc", Calls: 10, Errors: 1, ErrorCodes: map[string]int64{"-32001": 1}, Throughput: 5},
		Baseline:    &bench.Result{Target: "baseline", Calls: 20, Throughput: 10},
		Ratios:      &bench.Ratios{Throughput: 0.5, P50: 2, P99: 3},
		Floor:       &bench.Result{Target: "floor", Calls: 15, Throughput: 7},
		FloorRatios: &bench.Ratios{Throughput: 0.7, P50: 1.5, P99: 2},
		Redis:       &bench.Redis{Commands: 30, CommandsPerCall: 3, ByCommand: map[string]int64{"evalsha": 20, "xread": 10}, ClientCommands: 25, ClientCommandsPerCall: 2.5},
	}
	var out bytes.Buffer
	printReport(&out, rep)
	for _, want := range []string{"streamrpc", "baseline", "-32001×1", "throughput 0.500×", "floor ", "floor's ratios to the baseline: throughput 0.700×", "EVALSHA 2.00", "2.50 (25 commands)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
