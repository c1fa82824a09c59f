package consumers

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// The server's background loops: the periodic ones (heartbeat, forwarder,
// lease renewal, app probe) and the cancel watcher.

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

// heartbeat tells the registry this consumer is online and what it runs.
func (s *Server) heartbeat() time.Duration {
	n := 0
	s.running.Range(func(_, _ any) bool { n++; return true })
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	control, err := s.streams.HeartbeatControl(ctx, s.cfg.Handler, streams.ConsumerInfo{
		Name: s.cfg.Name, Kind: s.kind(), Version: s.cfg.Version, Host: host,
		Concurrency: s.cfg.Concurrency, Running: n, Started: s.stats.started, State: s.State(),
	})
	if err != nil {
		s.log.Debug("heartbeat failed", "err", err)
	} else {
		s.setLimited(control.Limited) // flow.go
		s.setPriorities(control.Priorities)
		s.pausedByOperator(control.Paused)
	}
	return s.cfg.HeartbeatInterval
}

// probeApp asks the Prober handler whether its app can take calls.
func (s *Server) probeApp() time.Duration {
	p := s.handler.(Prober)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		s.appDown(err)
	} else {
		s.appUp()
	}
	return p.ProbeInterval()
}

// cancelWatcher listens on the handler's cancel channel (one subscription per
// server, not per call) and cancels the context of each running call named.
// ready is closed once Redis has confirmed the first subscription.
type cancelWatcher struct {
	s         *Server
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	ready     chan struct{}
	readyOnce sync.Once
}

func newCancelWatcher(s *Server) *cancelWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &cancelWatcher{s: s, ctx: ctx, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
}

func (w *cancelWatcher) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(w.done)
		for w.ctx.Err() == nil {
			err := w.s.streams.WatchCancels(w.ctx, w.s.cfg.Handler, func() { w.readyOnce.Do(func() { close(w.ready) }) }, w.s.cancelByCaller)
			if err != nil { // Redis is unavailable: subscribe again, without spinning
				select {
				case <-time.After(time.Second):
				case <-w.ctx.Done():
				}
			}
		}
	}()
}

// cancelByCaller cancels call id if this server holds it: its handler's
// context ends now, or as soon as it starts. Every consumer of the handler
// hears every cancel; those of calls held elsewhere are ignored.
func (s *Server) cancelByCaller(id string) {
	if id == streams.DueNotice { // a scheduled call is now the first due
		s.forwarder.poke()
		return
	}
	s.early.mu.Lock()
	held := false
	s.running.Range(func(_, v any) bool {
		held = v == id
		return !held
	})
	if !held { // held elsewhere, or not recorded here yet (early_cancels.go)
		s.early.addLocked(id, time.Now())
		s.early.mu.Unlock()
		return
	}
	s.cancelled.Store(id, struct{}{})
	s.early.mu.Unlock()
	if c, ok := s.cancels.Load(id); ok {
		c.(context.CancelCauseFunc)(errCancelledByCaller)
	}
}

func (w *cancelWatcher) shutdown() {
	w.cancel()
	<-w.done
}

// forwardDue moves due retries and scheduled calls into the stream; it
// sleeps until the next one is due, or at most a second when it knows of none
// (another consumer may schedule a retry), so it never busy-polls. A newly
// scheduled call due first wakes it at once (streams.DueNotice).
func (s *Server) forwardDue() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, next, err := s.streams.ForwardDue(ctx, s.cfg.Handler, time.Now(), 256)
	switch {
	case err != nil:
		return time.Second
	case next.IsZero():
		return time.Second
	}
	return min(max(time.Until(next), 5*time.Millisecond), time.Second)
}

// renewLeases extends the lease of every call this server is running. A call
// another consumer claimed meanwhile (this one was declared dead: paused
// longer than DeadAfter) has its handler's context cancelled: its outcome
// would be dropped anyway.
func (s *Server) renewLeases() time.Duration {
	var ids []string
	calls := map[string]string{}
	s.running.Range(func(k, v any) bool {
		ids = append(ids, k.(string))
		calls[k.(string)], _ = v.(string)
		return true
	})
	if len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lost, err := s.streams.ExtendLease(ctx, s.cfg.Handler, s.cfg.Name, ids)
		if err != nil {
			s.log.Warn("renewing leases failed", "calls", len(ids), "err", err)
		}
		cancel()
		for _, id := range lost {
			if c, ok := s.cancels.Load(calls[id]); ok {
				s.log.Warn("another consumer claimed a call this one is running; cancelling it", "call_id", calls[id])
				c.(context.CancelCauseFunc)(errLeaseLost)
			}
		}
	}
	return s.cfg.VisibilityTimeout / 3
}
