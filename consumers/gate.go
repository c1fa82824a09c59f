package consumers

import "sync"

// gate holds the reader while it is shut: while the sidecar's app is down
// (appDown), or while an operator paused the handler (pause.go).
type gate struct {
	mu     sync.Mutex
	shut   bool
	reopen chan struct{} // closed when the gate opens again
}

// set shuts or opens the gate; it reports whether that changed anything.
func (g *gate) set(shut bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut == shut {
		return false
	}
	g.shut = shut
	if shut {
		g.reopen = make(chan struct{})
	} else {
		close(g.reopen)
	}
	return true
}

func (g *gate) isShut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shut
}

// wait returns true at once while the gate is open, else once it opens;
// false if stop ends first.
func (g *gate) wait(stop <-chan struct{}) bool {
	g.mu.Lock()
	shut, reopen := g.shut, g.reopen
	g.mu.Unlock()
	if !shut {
		return true
	}
	select {
	case <-reopen:
		return true
	case <-stop:
		return false
	}
}
