package consumers

import (
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// A call is pending in Redis, and so "running" to its caller, who may cancel
// it, from the moment XREADGROUP (or a claim) hands it to this server: a
// moment before the reader records it in Server.running. A cancel heard in
// that moment names a call this server does not hold yet; dropped, it would be
// lost and the call would run to its end. So a cancel for a call not held is
// kept for a while (earlyCancelFor, at most earlyCancelMax of them: every
// consumer of a handler hears every cancel, most for calls held elsewhere),
// and the reader looks there as it records the calls it took.

const (
	// earlyCancelFor is how long a cancel for a call not (yet) held is kept.
	// The gap it covers is one reply's parsing and a goroutine hand-off;
	// the margin is for a machine under load.
	earlyCancelFor = 30 * time.Second
	// earlyCancelMax bounds the cancels kept; the oldest go first.
	earlyCancelMax = 4096
)

// earlyCancels holds the cancels heard for calls this server did not hold
// when they were heard. Its mutex also orders them against the reader's
// recording of calls taken (Server.hold): a cancel is either seen as held
// by cancelByCaller or found here by hold, never neither.
type earlyCancels struct {
	mu    sync.Mutex
	at    map[string]time.Time // call id -> when its cancel was heard
	order []string             // call ids, oldest first
}

// addLocked keeps the cancel of id, heard at now, dropping the expired and,
// past earlyCancelMax, the oldest.
func (e *earlyCancels) addLocked(id string, now time.Time) {
	if e.at == nil {
		e.at = make(map[string]time.Time)
	}
	for len(e.order) > 0 {
		oldest := e.order[0]
		if at, ok := e.at[oldest]; ok && now.Sub(at) < earlyCancelFor && len(e.order) < earlyCancelMax {
			break
		}
		delete(e.at, oldest)
		e.order[0] = ""
		e.order = e.order[1:]
	}
	if _, ok := e.at[id]; !ok {
		e.order = append(e.order, id)
	}
	e.at[id] = now
}

// takeLocked reports whether a cancel of id heard within earlyCancelFor of
// now is kept, and forgets it.
func (e *earlyCancels) takeLocked(id string, now time.Time) bool {
	at, ok := e.at[id]
	if !ok {
		return false
	}
	delete(e.at, id) // its entry in order goes when it reaches the front
	return now.Sub(at) < earlyCancelFor
}

// hold records the calls the reader took as held by this server (their
// leases renewed, their cancels heard), and marks cancelled those whose
// cancel was heard before they were recorded.
func (s *Server) hold(ds []streams.Delivery) {
	s.early.mu.Lock()
	defer s.early.mu.Unlock()
	now := time.Time{}
	for i := range ds {
		id := callID(&ds[i])
		s.running.Store(ds[i].StreamID, id)
		if len(s.early.at) == 0 || id == "" {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		if s.early.takeLocked(id, now) {
			s.cancelled.Store(id, struct{}{})
		}
	}
}
