package bench

import (
	"context"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/internal/redistest"
	"go.uber.org/goleak"
)

// TestFloor runs the floor's closed loop briefly on a real Redis: every
// call is answered with its own params (a reply matched to another request is
// an error), Redis's CPU is read around it, its workers stop and its keys are
// gone afterwards. Speed is not asserted.
func TestFloor(t *testing.T) {
	r := redistest.StartSingle(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the container's own goroutines are older
	rdb := r.Client()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Floor: true, RedisURL: r.URL(), Concurrency: 4, Duration: 200 * time.Millisecond}.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := measureFloor(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls == 0 || res.Errors != 0 || res.OK != res.Calls {
		t.Fatalf("floor: %d calls, %d ok, errors %v", res.Calls, res.OK, res.ErrorCodes)
	}
	if len(res.Procs) != 1 || res.Procs[0].Name != "redis" || res.Procs[0].Err != "" || res.Procs[0].CPUPerCall <= 0 {
		t.Errorf("floor's Redis CPU per call: %+v, want one reading above 0", res.Procs)
	}
	if keys, err := rdb.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left behind: %v %v", keys, err)
	}
}

func TestFloorStale(t *testing.T) {
	f := &floor{seqs: []uint64{0, 7}}
	for id, want := range map[string]bool{"1.6": true, "1.1": true, "1.7": false, "0.3": false, "1.x": false, "16": false} {
		if got := f.stale(1, id); got != want {
			t.Errorf("stale(1, %q) = %v, want %v", id, got, want)
		}
	}
}

func TestFloorNeedsRedisAndClosedLoop(t *testing.T) {
	for _, c := range []Config{
		{Floor: true},
		{Floor: true, RedisURL: "redis://x", Rate: 10},
		{Floor: true, RedisURL: "redis://x", Concurrency: 2000},
	} {
		if err := c.Defaults().Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
