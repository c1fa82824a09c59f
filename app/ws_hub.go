package app

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// The WebSocket hub: every open socket of this edge, the per-address bound,
// and closing them all on shutdown.

// WSStats describes this edge's WebSocket connections.
type WSStats struct {
	Open       int   // connections open now
	InFlight   int   // calls in flight on them
	SlowClosed int64 // connections closed with 4008 since the edge started
}

// WebSockets returns the edge's WebSocket statistics.
func (e *Edge) WebSockets() WSStats { return e.ws.stats() }

// wsHub is the edge's registry of WebSocket connections: it bounds their
// number and closes them on Shutdown.
type wsHub struct {
	mu         sync.Mutex
	conns      map[*wsConn]struct{}
	max        int
	maxPerIP   int            // 0: no limit
	perIP      map[string]int // open connections per peer address
	closed     bool
	wg         sync.WaitGroup // one per connection, done when its goroutines are
	slowClosed atomic.Int64
}

func newWSHub(max, maxPerIP int) *wsHub {
	return &wsHub{conns: make(map[*wsConn]struct{}), max: max, maxPerIP: maxPerIP, perIP: make(map[string]int)}
}

// errTooManyFromIP: the peer's address holds STREAMRPC_WS_MAX_CONNS_PER_IP.
var errTooManyFromIP = errors.New("app: too many WebSocket connections from this address")

func (h *wsHub) add(c *wsConn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return errDraining
	case len(h.conns) >= h.max:
		return errors.New("app: too many WebSocket connections")
	case h.maxPerIP > 0 && h.perIP[c.remote] >= h.maxPerIP:
		return errTooManyFromIP
	}
	h.conns[c] = struct{}{}
	h.perIP[c.remote]++
	h.wg.Add(1)
	return nil
}

func (h *wsHub) remove(c *wsConn) {
	h.mu.Lock()
	delete(h.conns, c)
	if h.perIP[c.remote]--; h.perIP[c.remote] <= 0 {
		delete(h.perIP, c.remote)
	}
	h.mu.Unlock()
	h.wg.Done()
}

func (h *wsHub) state() (open int, closed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns), h.closed
}

// fullFor reports whether ip holds as many connections as it may.
func (h *wsHub) fullFor(ip string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxPerIP > 0 && h.perIP[ip] >= h.maxPerIP
}

func (h *wsHub) stats() WSStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := WSStats{Open: len(h.conns), SlowClosed: h.slowClosed.Load()}
	for c := range h.conns {
		s.InFlight += int(c.inFlight.Load())
	}
	return s
}

// shutdown stops every connection from reading, lets the calls in flight be
// answered until ctx ends, then closes the connections with 1001 and waits for
// their goroutines. New connections are refused from the start.
func (h *wsHub) shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	for c := range h.conns {
		c.drain()
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	h.mu.Lock()
	for c := range h.conns {
		c.abort()
	}
	h.mu.Unlock()
	<-done
}
