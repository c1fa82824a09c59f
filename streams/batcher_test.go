package streams

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testOp is an operation of the batcher under test: n identifies it, result
// is set by the fake send.
type testOp struct {
	pending
	n      int
	result int
}

// fakeSend records the batches a batcher sends and, while gated, holds every
// send until release is called. It completes each op with result n*10, or
// with failWith when set.
type fakeSend struct {
	mu       sync.Mutex
	batches  [][]int
	blocked  int // sends waiting at the gate
	gate     chan struct{}
	failWith error
}

func newFakeSend(gated bool) *fakeSend {
	f := &fakeSend{gate: make(chan struct{})}
	if !gated {
		close(f.gate)
	}
	return f
}

func (f *fakeSend) release() { close(f.gate) }

func (f *fakeSend) send(_ context.Context, batch []*testOp) {
	ns := make([]int, len(batch))
	for i, o := range batch {
		ns[i] = o.n
	}
	f.mu.Lock()
	f.batches = append(f.batches, ns)
	f.blocked++
	f.mu.Unlock()
	<-f.gate
	f.mu.Lock()
	f.blocked--
	f.mu.Unlock()
	for _, o := range batch {
		o.result = o.n * 10
		o.complete(f.failWith)
	}
}

func (f *fakeSend) snapshot() (batches [][]int, blocked int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		batches = append(batches, slices.Clone(b))
	}
	return batches, f.blocked
}

func (f *fakeSend) sent() []int {
	batches, _ := f.snapshot()
	var all []int
	for _, b := range batches {
		all = append(all, b...)
	}
	return all
}

// noLeaks checks, after every other cleanup, that the test left no
// goroutine behind.
func noLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// startBatcher starts a batcher over f and shuts it down at the test's end.
func startBatcher(t *testing.T, max int, f *fakeSend) *batcher[*testOp] {
	t.Helper()
	var wg sync.WaitGroup
	b := newBatcher(max, 5*time.Second, f.send)
	b.start(&wg)
	t.Cleanup(func() {
		b.shutdown()
		wg.Wait()
	})
	return b
}

// result is what one do call returned.
type result struct {
	op  *testOp
	err error
}

// doAsync runs b.do for op n in a goroutine and delivers its result on the
// returned channel.
func doAsync(ctx context.Context, b *batcher[*testOp], n int) (*testOp, <-chan result) {
	o := &testOp{n: n}
	ch := make(chan result, 1)
	go func() { ch <- result{o, b.do(ctx, o)} }()
	return o, ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("do did not return")
		return result{}
	}
}

func TestBatcherLoneOpGoesOutAtOnce(t *testing.T) {
	noLeaks(t)
	f := newFakeSend(false)
	b := startBatcher(t, 8, f)
	for i := 1; i <= 3; i++ {
		o := &testOp{n: i}
		if err := b.do(context.Background(), o); err != nil {
			t.Fatalf("do %d: %v", i, err)
		}
		if o.result != i*10 {
			t.Fatalf("op %d: result %d, want %d (do returned before send completed it)", i, o.result, i*10)
		}
	}
	// One after the other, nothing in flight: each goes out alone.
	if batches, _ := f.snapshot(); !slices.EqualFunc(batches, [][]int{{1}, {2}, {3}}, slices.Equal) {
		t.Fatalf("batches %v, want one per op", batches)
	}
}

func TestBatcherBatchesUnderLoad(t *testing.T) {
	noLeaks(t)
	tests := []struct {
		name   string
		max    int
		queued int // ops queued while the first two batches are held
	}{
		{"all queued fit one batch", 16, 5},
		{"batches never exceed max", 3, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSend(true)
			b := startBatcher(t, tc.max, f)
			// Op 0 is sent from its caller's goroutine (nothing in flight);
			// op 1 is taken by the loop, which then waits in send too.
			var chans []<-chan result
			_, ch := doAsync(context.Background(), b, 0)
			chans = append(chans, ch)
			waitFor(t, "op 0 in flight", func() bool { _, n := f.snapshot(); return n == 1 })
			_, ch = doAsync(context.Background(), b, 1)
			chans = append(chans, ch)
			waitFor(t, "op 1 in flight", func() bool { _, n := f.snapshot(); return n == 2 })
			// The rest queue in order while both batches are held.
			for i := 2; i < 2+tc.queued; i++ {
				_, ch := doAsync(context.Background(), b, i)
				chans = append(chans, ch)
				want := min(i-1, tc.max)
				waitFor(t, "op queued", func() bool { return len(b.queue) >= want || i-1 > tc.max })
			}
			f.release()
			for i, ch := range chans {
				r := await(t, ch)
				if r.err != nil || r.op.result != i*10 {
					t.Fatalf("op %d: err %v result %d", i, r.err, r.op.result)
				}
			}
			batches, _ := f.snapshot()
			if !slices.Equal(batches[0], []int{0}) || !slices.Equal(batches[1], []int{1}) {
				t.Fatalf("first batches %v, want [0] then [1]", batches[:2])
			}
			for _, bt := range batches {
				if len(bt) > tc.max {
					t.Fatalf("batch %v is larger than max %d", bt, tc.max)
				}
			}
			// The queued ops share batches of max (the last one maybe fewer).
			rest := batches[2:]
			if want := (tc.queued + tc.max - 1) / tc.max; tc.queued <= tc.max && len(rest) != want {
				t.Fatalf("queued ops went out in %d batches %v, want %d", len(rest), rest, want)
			}
			if len(rest[0]) != min(tc.queued, tc.max) {
				t.Fatalf("first batch of queued ops %v, want %d ops", rest[0], min(tc.queued, tc.max))
			}
			sent := f.sent()
			if len(sent) != 2+tc.queued {
				t.Fatalf("sent %v, want each of %d ops once", sent, 2+tc.queued)
			}
			if tc.queued <= tc.max && !slices.IsSorted(sent) {
				t.Fatalf("sent %v, want queue order", sent)
			}
		})
	}
}

func TestBatcherSendErrorReachesEveryCaller(t *testing.T) {
	noLeaks(t)
	boom := errors.New("boom")
	f := newFakeSend(true)
	f.failWith = boom
	b := startBatcher(t, 8, f)
	_, ch0 := doAsync(context.Background(), b, 0)
	waitFor(t, "op 0 in flight", func() bool { _, n := f.snapshot(); return n == 1 })
	_, ch1 := doAsync(context.Background(), b, 1)
	waitFor(t, "op 1 in flight", func() bool { _, n := f.snapshot(); return n == 2 })
	f.release()
	for _, ch := range []<-chan result{ch0, ch1} {
		if r := await(t, ch); !errors.Is(r.err, boom) {
			t.Fatalf("op %d: err %v, want %v", r.op.n, r.err, boom)
		}
	}
}

func TestBatcherContextCancellation(t *testing.T) {
	noLeaks(t)
	t.Run("cancelled before do is never sent", func(t *testing.T) {
		f := newFakeSend(false)
		b := startBatcher(t, 8, f)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.do(ctx, &testOp{n: 1}); !errors.Is(err, context.Canceled) {
			t.Fatalf("do: %v, want context.Canceled", err)
		}
		if sent := f.sent(); len(sent) != 0 {
			t.Fatalf("sent %v, want nothing", sent)
		}
	})
	t.Run("cancelled while queued returns at once and is not sent", func(t *testing.T) {
		f := newFakeSend(true)
		b := startBatcher(t, 8, f)
		_, ch0 := doAsync(context.Background(), b, 0)
		waitFor(t, "op 0 in flight", func() bool { _, n := f.snapshot(); return n == 1 })
		_, ch1 := doAsync(context.Background(), b, 1)
		waitFor(t, "op 1 in flight", func() bool { _, n := f.snapshot(); return n == 2 })
		ctx, cancel := context.WithCancel(context.Background())
		o2, ch2 := doAsync(ctx, b, 2)
		waitFor(t, "op 2 queued", func() bool { return len(b.queue) == 1 })
		cancel()
		// The caller hears at once, while both batches are still held.
		if r := await(t, ch2); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("op 2: %v, want context.Canceled", r.err)
		}
		_, ch3 := doAsync(context.Background(), b, 3) // queued behind op 2
		waitFor(t, "op 3 queued", func() bool { return len(b.queue) == 2 })
		f.release()
		for _, ch := range []<-chan result{ch0, ch1, ch3} {
			if r := await(t, ch); r.err != nil {
				t.Fatalf("op %d: %v", r.op.n, r.err)
			}
		}
		if sent := f.sent(); slices.Contains(sent, 2) {
			t.Fatalf("sent %v: the cancelled op 2 was sent after its caller gave up", sent)
		}
		select {
		case <-o2.done: // completed by the loop, not left dangling
		case <-time.After(10 * time.Second):
			t.Fatal("the cancelled op was never completed")
		}
	})
}

func TestBatcherShutdown(t *testing.T) {
	noLeaks(t)
	f := newFakeSend(true)
	var wg sync.WaitGroup
	b := newBatcher(8, 5*time.Second, f.send)
	b.start(&wg)
	_, ch0 := doAsync(context.Background(), b, 0) // the caller's own send
	waitFor(t, "op 0 in flight", func() bool { _, n := f.snapshot(); return n == 1 })
	_, ch1 := doAsync(context.Background(), b, 1) // the loop's send
	waitFor(t, "op 1 in flight", func() bool { _, n := f.snapshot(); return n == 2 })
	_, ch2 := doAsync(context.Background(), b, 2) // queued
	waitFor(t, "op 2 queued", func() bool { return len(b.queue) == 1 })

	stopped := make(chan struct{})
	go func() { b.shutdown(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("shutdown returned while the loop's batch was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	f.release()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return")
	}
	wg.Wait()
	// Batches in flight finish with their results.
	for _, ch := range []<-chan result{ch0, ch1} {
		if r := await(t, ch); r.err != nil || r.op.result != r.op.n*10 {
			t.Fatalf("in-flight op %d: err %v result %d", r.op.n, r.err, r.op.result)
		}
	}
	// A queued op is either sent by the loop's last turn or fails with
	// errClosed: it never hangs.
	if r := await(t, ch2); r.err != nil && !errors.Is(r.err, errClosed) {
		t.Fatalf("queued op: %v, want nil or errClosed", r.err)
	}
	before := len(f.sent())
	if err := b.do(context.Background(), &testOp{n: 9}); !errors.Is(err, errClosed) {
		t.Fatalf("do after shutdown: %v, want errClosed", err)
	}
	if len(f.sent()) != before {
		t.Fatal("an op was sent after shutdown")
	}
	b.shutdown() // safe to call again
}
