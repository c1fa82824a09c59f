package integration

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/internal/bench"
)

// TestBenchInProcess runs `streamrpc bench -inprocess` against a real Redis
// for about two seconds. It asserts correctness and the Redis round-trip
// budget, never speed: every call answered with its params, no errors, and
// at most 4 commands per call sent by the edge and consumer; the floor
// (bare Redis streams) answers every call with its own params too.
func TestBenchInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2 s load run")
	}
	r := startRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, mode := range []string{"http", "ws"} {
		t.Run(mode, func(t *testing.T) {
			rep, err := bench.Run(ctx, bench.Config{
				Mode: mode, Concurrency: 16, Duration: time.Second, Warmup: 100 * time.Millisecond,
				Size: 256, RedisURL: r.URL, InProcess: true, Baseline: mode == "http", Floor: mode == "http",
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Result
			t.Logf("%s: %d calls, %.0f/s, p50 %.0fµs; redis %.2f commands per call (%.2f sent by the edge and consumer)",
				mode, res.Calls, res.Throughput, res.Latency.P50, rep.Redis.CommandsPerCall, rep.Redis.ClientCommandsPerCall)
			if res.Calls == 0 || res.OK != res.Calls {
				t.Fatalf("calls %d, ok %d, errors %v", res.Calls, res.OK, res.ErrorCodes)
			}
			if res.Errors != 0 {
				t.Fatalf("errors: %v", res.ErrorCodes)
			}
			if rep.Redis == nil || rep.Redis.ClientCommands == 0 {
				t.Fatalf("no client-side command count: %+v", rep.Redis)
			}
			if cpc := rep.Redis.ClientCommandsPerCall; cpc > 4 {
				t.Fatalf("%.2f Redis commands per call sent by the edge and consumer, want <= 4", cpc)
			}
			if mode == "http" && (rep.Baseline == nil || rep.Baseline.Errors != 0 || rep.Baseline.Calls == 0) {
				t.Fatalf("baseline: %+v", rep.Baseline)
			}
			// The floor's calls are each checked against their own reply.
			if mode == "http" && (rep.Floor == nil || rep.Floor.Errors != 0 || rep.Floor.Calls == 0 || rep.FloorRatios == nil) {
				t.Fatalf("floor: %+v", rep.Floor)
			}
		})
	}
}
