package app

import (
	"hash/maphash"
	"sync"

	"github.com/streamrpc/streamrpc/streams"
)

// waiters maps the id of each call this edge is waiting on to the channel its
// reply is handed to. Sharded, so that thousands of concurrent calls and the
// one reply reader rarely meet on a lock.
type waiters struct {
	seed   maphash.Seed
	shards [64]waiterShard
	// free holds reply channels whose reply was received, for reuse: one
	// allocation less per call. Only those: a channel given up on (its call
	// timed out) may still get a late reply, so it is left to the GC.
	free sync.Pool
}

type waiterShard struct {
	mu sync.Mutex
	m  map[string]chan streams.Reply
}

func newWaiters() *waiters {
	w := &waiters{seed: maphash.MakeSeed()}
	for i := range w.shards {
		w.shards[i].m = make(map[string]chan streams.Reply)
	}
	return w
}

func (w *waiters) shard(id string) *waiterShard {
	return &w.shards[maphash.String(w.seed, id)%uint64(len(w.shards))]
}

// add registers id before its call is enqueued, so a reply can never arrive
// before its waiter. The channel holds one reply, so delivery never blocks.
func (w *waiters) add(id string) chan streams.Reply {
	ch, _ := w.free.Get().(chan streams.Reply)
	if ch == nil {
		ch = make(chan streams.Reply, 1)
	}
	s := w.shard(id)
	s.mu.Lock()
	s.m[id] = ch
	s.mu.Unlock()
	return ch
}

// release gives back ch, from add, once its reply has been received: deliver
// took it out of the map before sending, so no one else holds it and it is empty.
func (w *waiters) release(ch chan streams.Reply) { w.free.Put(ch) }

func (w *waiters) remove(id string) {
	s := w.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// deliver hands r to its waiter, if one still waits. It reports whether one did.
func (w *waiters) deliver(r streams.Reply) bool {
	s := w.shard(r.ID)
	s.mu.Lock()
	ch, ok := s.m[r.ID]
	delete(s.m, r.ID)
	s.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

func (w *waiters) len() int {
	n := 0
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
