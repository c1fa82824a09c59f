package consumers

import (
	"sync"
	"time"
)

// periodic is a background loop that runs fn, then waits for as long as fn
// asked, for a poke, or for shutdown.
type periodic struct {
	fn   func() time.Duration
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newPeriodic(fn func() time.Duration) *periodic {
	return &periodic{fn: fn, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *periodic) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(p.done)
		for {
			t := time.NewTimer(p.fn())
			select {
			case <-t.C:
			case <-p.wake:
				t.Stop()
			case <-p.stop:
				t.Stop()
				return
			}
		}
	}()
}

// poke runs fn again now (or as soon as it is done with the current run).
func (p *periodic) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// shutdown stops the loop and waits for it. Safe to call more than once.
func (p *periodic) shutdown() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}
