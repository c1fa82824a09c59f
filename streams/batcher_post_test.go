package streams

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcherPost: post returns without waiting, and its then runs exactly
// once, after the operation completed, whichever goroutine sends it.
func TestBatcherPost(t *testing.T) {
	for _, tc := range []struct {
		name string
		// busy holds a batch in flight (sent by another caller) while the op
		// is posted, so that it is queued for the loop instead.
		busy    bool
		stopped bool
		wantErr error
	}{
		{name: "idle: sent from the caller's goroutine"},
		{name: "busy: queued and sent by the loop", busy: true},
		{name: "stopped: completes with errClosed", stopped: true, wantErr: errClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var sent atomic.Int32
			b := newBatcher(8, time.Second, func(_ context.Context, batch []*testOp) {
				for _, o := range batch {
					if o.n == 0 { // the op that keeps a batch in flight
						<-release
					}
					sent.Add(1)
					o.complete(nil)
				}
			})
			var wg sync.WaitGroup
			b.start(&wg)
			t.Cleanup(func() { b.shutdown(); wg.Wait() })
			if tc.stopped {
				b.shutdown()
			}
			blockerDone := make(chan error, 1)
			if tc.busy {
				go func() { blockerDone <- b.do(context.Background(), &testOp{n: 0}) }()
				deadline := time.Now().Add(5 * time.Second)
				for b.inflight.Load() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the blocking batch never got in flight")
					}
					time.Sleep(time.Millisecond)
				}
			}
			var thens atomic.Int32
			done := make(chan error, 2)
			o := &testOp{n: 1}
			posted := make(chan struct{})
			go func() {
				b.post(context.Background(), o, func() {
					thens.Add(1)
					done <- o.err
				})
				close(posted)
			}()
			select {
			case <-posted:
			case <-time.After(5 * time.Second):
				t.Fatal("post waited for the operation")
			}
			if tc.busy {
				close(release)
				if err := <-blockerDone; err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("then saw %v, want %v", err, tc.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("then never ran")
			}
			if n := thens.Load(); n != 1 {
				t.Fatalf("then ran %d times", n)
			}
			if want := int32(0); tc.wantErr == nil {
				if got := sent.Load(); got < 1 {
					t.Fatalf("sent %d ops", got)
				}
			} else if got := sent.Load(); got != want {
				t.Fatalf("a stopped batcher sent %d ops", got)
			}
		})
	}
}
