package integration

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/consumers"
)

// settleGate, once armed, holds every script pipeline a client sends (the
// consumer's settles) until released, on real Redis: the settle round trip
// takes as long as the test wants.
type settleGate struct {
	armed  atomic.Bool
	mu     sync.Mutex
	open   chan struct{}
	held   chan struct{} // one token per pipeline held
	opened bool
}

func newSettleGate() *settleGate {
	return &settleGate{open: make(chan struct{}), held: make(chan struct{}, 64)}
}

func (g *settleGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.opened = true
		close(g.open)
	}
}

func (g *settleGate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (g *settleGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *settleGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if g.armed.Load() && len(cmds) > 0 && strings.HasPrefix(cmds[0].Name(), "eval") {
			select {
			case g.held <- struct{}{}:
			default:
			}
			select {
			case <-g.open:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return next(ctx, cmds)
	}
}

// TestSettleDoesNotHoldHandlerSlot: with one handler slot, a second call runs
// while the first one's settle round trip is still under way — the slot is
// free when the handler returns, not when Redis answers the settle — and both
// calls are then answered.
func TestSettleDoesNotHoldHandlerSlot(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	ran := make(chan string, 2)
	mux := consumers.NewMux()
	mux.HandleFunc("tick", func(_ context.Context, r *consumers.Request) (any, error) {
		ran <- string(r.Params)
		return r.Params, nil
	})
	gate := newSettleGate()
	t.Cleanup(gate.release)
	rdb := st.connect(t)
	rdb.AddHook(gate)
	srv, err := consumers.NewServer(rdb, consumers.Config{Handler: "slots", Concurrency: 1, Logger: testLogger(t)}, mux)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	gate.armed.Store(true)

	type answer struct {
		status int
		err    error
	}
	results := make(chan answer, 2)
	for _, body := range []string{`{"n":1}`, `{"n":2}`} {
		go func() {
			resp, err := httpClient.Post(st.url+"/rpc/slots/tick", "application/json", strings.NewReader(body))
			if err != nil {
				results <- answer{err: err}
				return
			}
			_ = resp.Body.Close()
			results <- answer{status: resp.StatusCode}
		}()
	}
	deadline := time.After(10 * time.Second)
	for i := range 2 {
		select {
		case <-ran:
		case <-deadline:
			t.Fatalf("%d of 2 handlers ran while the first settle was held: the settle holds the only slot", i)
		}
	}
	select {
	case <-gate.held:
	case <-deadline:
		t.Fatal("no settle was held: the gate did not see the settle pipeline")
	}
	gate.release()
	for range 2 {
		select {
		case r := <-results:
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("got %d %v, want 200", r.status, r.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a call was not answered after the settles were let through")
		}
	}
}
