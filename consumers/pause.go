package consumers

import (
	"sync"
)

// An operator's pause (POST /handlers/{name}/pause): the heartbeat's script
// says whether the handler is paused (no round trip of its own, none per
// call), and the reader takes no calls while it is. A call already handed
// to this consumer runs. The pause takes effect at the next heartbeat
// (HeartbeatInterval, 1 s by default) plus a read already waiting (at most
// the read block): within 2 s at the defaults.

// pauseGate holds the reader while the handler is paused.
type pauseGate struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed when the handler is resumed
}

// set records the heartbeat's answer; it reports whether it changed.
func (g *pauseGate) set(paused bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == paused {
		return false
	}
	g.paused = paused
	if paused {
		g.resume = make(chan struct{})
	} else {
		close(g.resume)
	}
	return true
}

func (g *pauseGate) isPaused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// wait returns true at once while not paused, else once resumed; false if
// stop ends first.
func (g *pauseGate) wait(stop <-chan struct{}) bool {
	g.mu.Lock()
	paused, resume := g.paused, g.resume
	g.mu.Unlock()
	if !paused {
		return true
	}
	select {
	case <-resume:
		return true
	case <-stop:
		return false
	}
}

// pausedByOperator records whether the handler is paused, as the heartbeat
// learnt it; on a change the registry hears of it at once.
func (s *Server) pausedByOperator(paused bool) {
	if !s.pause.set(paused) {
		return
	}
	if paused {
		s.log.Info("the handler is paused: taking no calls until it is resumed (they wait in the stream)")
	} else {
		s.log.Info("the handler is resumed: taking calls")
	}
	s.beat.poke()
}
