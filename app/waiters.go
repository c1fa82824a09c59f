package app

import (
	"hash/maphash"
	"sync"
	"time"

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
	m  map[string]*waiter
}

// waiter is one call waiting for its reply.
type waiter struct {
	ch chan streams.Reply
	// check is when to look the call's result up in Redis, in case its reply
	// was lost on the way (see replyReader.recoverLost); every look doubles the
	// wait to the next one.
	check time.Time
	every time.Duration
	// sink gets the call's streamed events; nil: the caller does not
	// stream, and they are dropped.
	sink *eventSink
}

// firstResultCheck is how long a call waits for its reply before the edge
// first looks its result up by id. Replies normally arrive in well under a
// millisecond; a reply is lost only when a consumer dies between settling a
// call and publishing its reply, or when a failover loses the reply stream's
// latest writes.
const firstResultCheck = 2 * time.Second

func newWaiters() *waiters {
	w := &waiters{seed: maphash.MakeSeed()}
	for i := range w.shards {
		w.shards[i].m = make(map[string]*waiter)
	}
	return w
}

func (w *waiters) shard(id string) *waiterShard {
	return &w.shards[maphash.String(w.seed, id)%uint64(len(w.shards))]
}

// add registers id before its call is enqueued, so a reply can never arrive
// before its waiter. The channel holds one reply, so delivery never blocks.
func (w *waiters) add(id string) chan streams.Reply { return w.addStream(id, nil) }

// addStream is add for a caller that streams: the call's events go to sink.
func (w *waiters) addStream(id string, sink *eventSink) chan streams.Reply {
	ch, _ := w.free.Get().(chan streams.Reply)
	if ch == nil {
		ch = make(chan streams.Reply, 1)
	}
	wt := &waiter{ch: ch, check: time.Now().Add(firstResultCheck), every: firstResultCheck, sink: sink}
	s := w.shard(id)
	s.mu.Lock()
	s.m[id] = wt
	s.mu.Unlock()
	return wt.ch
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

// deliver hands r to its waiter, if one still waits. It reports whether one
// did. Streamed events (r.Events) go to the waiter's sink, and it waits on.
func (w *waiters) deliver(r streams.Reply) bool {
	s := w.shard(r.ID)
	if r.Events != nil {
		s.mu.Lock()
		wt, ok := s.m[r.ID]
		s.mu.Unlock()
		if ok && wt.sink != nil {
			wt.sink.push(r.Events)
		}
		return ok
	}
	s.mu.Lock()
	wt, ok := s.m[r.ID]
	delete(s.m, r.ID)
	s.mu.Unlock()
	if ok {
		wt.ch <- r
	}
	return ok
}

// due returns the ids of the calls whose result should be looked up now,
// and schedules their next look.
func (w *waiters) due(now time.Time) []string {
	var ids []string
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, wt := range s.m {
			if !wt.check.After(now) {
				ids = append(ids, id)
				wt.every *= 2
				wt.check = now.Add(wt.every)
			}
		}
		s.mu.Unlock()
	}
	return ids
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
