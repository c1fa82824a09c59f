package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

func TestPayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"default", 256}, {"small", 16}, {"large", 4096}} {
		t.Run(tc.name, func(t *testing.T) {
			p := payload(tc.size)
			if len(p) != tc.size {
				t.Fatalf("len %d, want %d", len(p), tc.size)
			}
			if !json.Valid(p) {
				t.Fatalf("not JSON: %s", p)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	r := result{}
	for i := 1; i <= 100; i++ {
		r.lat = append(r.lat, time.Duration(i))
	}
	for _, tc := range []struct {
		name string
		q    float64
		want time.Duration
	}{{"p50", 0.5, 50}, {"p99", 0.99, 99}, {"max", 1, 100}, {"min", 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.percentile(tc.q); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if got := (result{}).percentile(0.5); got != 0 {
		t.Fatalf("empty: got %v", got)
	}
}

// TestProcCPU: /proc/PID/stat of this process agrees with getrusage after
// some work (both count every thread; /proc in 10 ms ticks).
func TestProcCPU(t *testing.T) {
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	start, deadline := selfCPU(), time.Now().Add(10*time.Second)
	for selfCPU() < start+200*time.Millisecond && time.Now().Before(deadline) {
		for range 1_000_000 {
		}
	}
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self := selfCPU(); after <= before || after > self+50*time.Millisecond || after < self-100*time.Millisecond {
		t.Fatalf("/proc says %v (from %v), getrusage %v", after, before, self)
	}
}
