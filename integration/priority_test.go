package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// startRecorder is a handler that records the order calls start in.
type startRecorder struct {
	mu     sync.Mutex
	starts []string // call ids
}

func (r *startRecorder) mux() *consumers.Mux {
	m := consumers.NewMux()
	m.HandleFunc("work", func(ctx context.Context, req *consumers.Request) (any, error) {
		r.mu.Lock()
		r.starts = append(r.starts, req.ID)
		r.mu.Unlock()
		return map[string]int{"attempt": req.Attempt}, nil
	})
	return m
}

func (r *startRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.starts)
}

// enqueueDirect enqueues n calls of prio.work with priority p straight
// through the streams client, from 32 goroutines (the enqueue batcher packs
// them), and returns their ids.
func enqueueDirect(t *testing.T, sc *streams.Client, n int, p streams.Priority) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				now := time.Now()
				ids[i] = streams.NewCallID("prio")
				if _, err := sc.Enqueue(context.Background(), &streams.Call{
					ID: ids[i], Handler: "prio", Method: "work", Params: json.RawMessage(`{}`),
					Deadline: now.Add(5 * time.Minute), Attempt: 1, EnqueuedAt: now,
				}, streams.EnqueueOptions{Priority: p}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// TestPriorityHighCallOvertakesLowBacklog: 10,000 low calls queued while no
// consumer runs, then a high call through the HTTP door, then 2,000 more
// high calls. A consumer starts: the first high call starts within its
// first batch (the read count: its concurrency), and low calls keep
// starting while the high backlog drains (1 read in 10 takes low first).
func TestPriorityHighCallOvertakesLowBacklog(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	sc := st.streamsClient(t)
	rec := &startRecorder{}
	const batch = 16
	cfg := consumers.Config{Handler: "prio", Concurrency: batch}
	st.register(t, cfg, rec.mux())

	if r := post(t, st.url, "/rpc/prio/work", []byte(`{}`), map[string]string{"Streamrpc-Priority": "urgent"}); r.status != http.StatusBadRequest || r.Error == nil || !strings.Contains(r.Error.Message, "Streamrpc-Priority") {
		t.Fatalf("an unknown priority: %d %s, want 400 naming the header", r.status, r.body)
	}
	low := enqueueDirect(t, sc, 10_000, streams.PriorityLow)
	acc := post(t, st.url, "/rpc/prio/work", []byte(`{}`), map[string]string{"Prefer": "respond-async", "Streamrpc-Priority": "high"})
	if acc.status != http.StatusAccepted {
		t.Fatalf("high call: %d %s", acc.status, acc.body)
	}
	first := acc.requestID
	if g := get(t, st.url+"/rpc/calls/"+first); g.State != "queued" || !strings.Contains(string(g.body), `"priority":"high"`) {
		t.Fatalf("the high call's status: %s", g.body)
	}
	high := enqueueDirect(t, sc, 2_000, streams.PriorityHigh)
	d, err := sc.HandlerDetail(context.Background(), "prio")
	if err != nil || d.BacklogLow != 10_000 || d.BacklogHigh != 2_001 {
		t.Fatalf("backlog before the consumer: low %d high %d, %v", d.BacklogLow, d.BacklogHigh, err)
	}

	st.startConsumer(t, cfg, rec.mux())
	lastHigh := high[len(high)-1]
	var starts []string
	waitUntil(t, 60*time.Second, func() error {
		starts = rec.snapshot()
		if !slices.Contains(starts, lastHigh) {
			return fmt.Errorf("%d calls started, not yet every high one", len(starts))
		}
		return nil
	})
	at := slices.Index(starts, first)
	t.Logf("the first high call started %d-th, behind %d low calls queued before it (batch %d)", at+1, at, batch)
	if at < 0 || at > batch {
		t.Fatalf("the first high call started at position %d, want within the first batch of %d", at, batch)
	}
	isLow := make(map[string]bool, len(low))
	for _, id := range low {
		isLow[id] = true
	}
	lowsBefore := 0
	for _, id := range starts[:slices.Index(starts, lastHigh)] {
		if isLow[id] {
			lowsBefore++
		}
	}
	t.Logf("%d low calls started while the 2,001 high ones drained", lowsBefore)
	if lowsBefore < 10 {
		t.Fatalf("%d low calls started while high calls were queued: starved", lowsBefore)
	}
	// Every call runs.
	waitUntil(t, 120*time.Second, func() error {
		if n := len(rec.snapshot()); n < 12_001 {
			return fmt.Errorf("%d of 12,001 calls started", n)
		}
		return nil
	})
}

// TestPriorityHighCallOfAKilledConsumerRerun: a low call over JSON-RPC, then
// a consumer process killed
// while it runs a high call: the call is claimed from the high stream by the
// live consumer and run again.
func TestPriorityHighCallOfAKilledConsumerRerun(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	sc := st.streamsClient(t)
	a := st.echoConsumer(t, "a")
	waitOnline(t, sc, "echo", "a")
	// The JSON-RPC door: "_meta":{"priority":…}.
	rpc := rawCall(st.url, "/jsonrpc", []byte(`[{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"n":1},"_meta":{"priority":"low"}},`+
		`{"jsonrpc":"2.0","id":2,"method":"echo.echo","params":{"n":2},"_meta":{"priority":"urgent"}}]`))
	if rpc.err != nil || rpc.status != http.StatusOK || !strings.Contains(string(rpc.body), `"id":1,"result":{"n":1}`) || !strings.Contains(string(rpc.body), `"id":2,"error":{"code":-32600`) {
		t.Fatalf("JSON-RPC with _meta.priority: %d %s", rpc.status, rpc.body)
	}
	acc := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":3000}`), map[string]string{"Prefer": "respond-async", "Streamrpc-Priority": "high"})
	if acc.status != http.StatusAccepted {
		t.Fatalf("high call: %d %s", acc.status, acc.body)
	}
	id := acc.requestID
	waitUntil(t, 15*time.Second, func() error {
		if _, ok := a.runs()[id]; !ok {
			return fmt.Errorf("consumer a has not started the high call")
		}
		return nil
	})
	b := st.echoConsumer(t, "b")
	waitOnline(t, sc, "echo", "b")
	a.signal(t, syscall.SIGKILL, 10*time.Second)
	if r := get(t, st.url+"/rpc/calls/"+id+"?wait=30s"); r.State != "done" || string(r.Result) != `{"slept":3000}` {
		t.Fatalf("the high call after the kill: %d %s", r.status, r.body)
	}
	if got := b.runs()[id]; !slices.Equal(got, []int{2}) {
		t.Fatalf("consumer b ran attempts %v of the high call, want [2]", got)
	}
}
