package app

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

func TestWaitersAddDeliverRemove(t *testing.T) {
	w := newWaiters()
	if n := w.len(); n != 0 {
		t.Fatalf("new waiters len = %d, want 0", n)
	}
	ch := w.add("a")
	chB := w.add("b")
	if n := w.len(); n != 2 {
		t.Fatalf("len after two adds = %d, want 2", n)
	}
	if cap(ch) != 1 {
		t.Fatalf("waiter channel capacity = %d, want 1 so that delivery never blocks", cap(ch))
	}

	want := streams.ResultReply("a", json.RawMessage(`{"ok":true}`))
	if !w.deliver(want) {
		t.Fatal("deliver to a waiting id = false, want true")
	}
	select {
	case got := <-ch:
		if got.ID != "a" || !got.OK || string(got.Body) != `{"ok":true}` {
			t.Fatalf("waiter got %+v, want %+v", got, want)
		}
	default:
		t.Fatal("deliver returned true but the waiter's channel is empty")
	}
	if n := w.len(); n != 1 {
		t.Fatalf("len after delivery = %d, want 1 (a delivered waiter is gone)", n)
	}
	if w.deliver(want) {
		t.Fatal("second deliver to the same id = true, want false")
	}

	w.remove("b")
	if n := w.len(); n != 0 {
		t.Fatalf("len after remove = %d, want 0", n)
	}
	if w.deliver(streams.ResultReply("b", json.RawMessage(`1`))) {
		t.Fatal("deliver to a removed id = true, want false")
	}
	select {
	case r := <-chB:
		t.Fatalf("removed waiter received %+v", r)
	default:
	}
	w.remove("never-added") // removing an unknown id is a no-op
	if n := w.len(); n != 0 {
		t.Fatalf("len after removing an unknown id = %d, want 0", n)
	}
}

func TestWaitersDeliverUnknown(t *testing.T) {
	tests := []struct {
		name string
		add  []string
		id   string
	}{
		{name: "empty", id: "x"},
		{name: "other ids waiting", add: []string{"a", "b", "c"}, id: "x"},
		{name: "empty id", add: []string{"a"}, id: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWaiters()
			for _, id := range tt.add {
				w.add(id)
			}
			if w.deliver(streams.ResultReply(tt.id, json.RawMessage(`1`))) {
				t.Fatalf("deliver(%q) = true, want false", tt.id)
			}
			if n := w.len(); n != len(tt.add) {
				t.Fatalf("len = %d, want %d: an unknown delivery must not remove waiters", n, len(tt.add))
			}
		})
	}
}

// Many goroutines add and deliver at once, as the edge's handlers and its reply
// reader do; run with -race. Every reply reaches its own waiter exactly once.
func TestWaitersConcurrent(t *testing.T) {
	const goroutines, perG = 32, 200
	w := newWaiters()
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				id := strconv.Itoa(g) + "-" + strconv.Itoa(i)
				ch := w.add(id)
				// Deliver from another goroutine, like the reply reader.
				delivered := make(chan bool, 1)
				go func() { delivered <- w.deliver(streams.ResultReply(id, json.RawMessage(strconv.Itoa(i)))) }()
				r := <-ch
				if !<-delivered {
					errs <- "deliver(" + id + ") = false"
					return
				}
				if r.ID != id || string(r.Body) != strconv.Itoa(i) {
					errs <- "waiter " + id + " got reply " + r.ID + " " + string(r.Body)
					return
				}
				if i%2 == 0 {
					// A late duplicate finds no waiter.
					if w.deliver(streams.ResultReply(id, json.RawMessage(`0`))) {
						errs <- "duplicate deliver(" + id + ") = true"
						return
					}
				}
				// Some waiters give up instead: they are removed.
				gone := id + "-gone"
				w.add(gone)
				w.remove(gone)
			}
		}()
	}
	// len() runs concurrently with the rest.
	stop := make(chan struct{})
	lenDone := make(chan struct{})
	go func() {
		defer close(lenDone)
		for {
			select {
			case <-stop:
				return
			default:
				if n := w.len(); n < 0 || n > 2*goroutines {
					errs <- "len() = " + strconv.Itoa(n)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-lenDone
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := w.len(); n != 0 {
		t.Fatalf("len after every call finished = %d, want 0", n)
	}
}

// A released channel may come back from add for another call: it must come
// back empty, and carry only that call's reply.
func TestWaitersReleaseReuse(t *testing.T) {
	w := newWaiters()
	for i := range 100 {
		id := "call-" + strconv.Itoa(i)
		ch := w.add(id)
		if len(ch) != 0 {
			t.Fatalf("add(%s) returned a channel holding %d replies", id, len(ch))
		}
		if !w.deliver(streams.ResultReply(id, json.RawMessage(`1`))) {
			t.Fatalf("deliver %s: no waiter", id)
		}
		if got := <-ch; got.ID != id {
			t.Fatalf("waiter of %s got the reply of %s", id, got.ID)
		}
		w.release(ch)
	}
	if n := w.len(); n != 0 {
		t.Fatalf("len = %d, want 0", n)
	}
}
