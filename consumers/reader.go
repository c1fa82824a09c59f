package consumers

import (
	"context"
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// The reader: the loop that takes calls (claimed from dead consumers, idle,
// or new) as slots free up, and the workers that run them.

// reader is the loop that takes calls, only as many as there are free slots,
// and hands each to a worker (dispatch). Before reading new calls it claims,
// at most every HeartbeatInterval, the calls of consumers declared dead (no
// heartbeat for DeadAfter), and at most every VisibilityTimeout/2 calls whose
// consumer stopped renewing them. A read blocks for at most HeartbeatInterval,
// so a consumer with a free slot looks for dead consumers' calls that often.
type reader struct {
	s       *Server
	slots   chan struct{}         // a token per call read and not yet settling
	settles chan struct{}         // a token per call settling (callSlot)
	work    chan streams.Delivery // to idle workers (dispatch)
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (r *reader) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		r.loop()
	}()
}

func (r *reader) shutdown() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// dispatch hands d to an idle worker, or starts one. Workers are kept (idle,
// blocked on r.work) until the reader stops, so that a call runs on a
// goroutine whose stack has already grown to what a call needs, instead of a
// new goroutine per call growing (copying) its stack on every call. There are
// at most as many as calls held at once: Concurrency + settle slots.
func (r *reader) dispatch(d streams.Delivery) {
	select {
	case r.work <- d:
		return
	default:
	}
	go r.worker(d)
}

// worker runs d, then every call it is handed, until the reader stops.
func (r *reader) worker(d streams.Delivery) {
	for {
		r.run(d)
		var ok bool
		if d, ok = <-r.work; !ok {
			return
		}
	}
}

// run processes one call (its own copy of d: an answer settled after run
// returns still refers to it).
func (r *reader) run(d streams.Delivery) {
	cs := &callSlot{r: r}
	defer func() {
		if !cs.detached {
			r.s.callDone(&d, cs)
		}
	}()
	r.s.process(&d, cs)
}

// callDone ends a call's hold on this server: it is no longer running (no
// lease to renew), its slot is free, Shutdown stops waiting for it.
func (s *Server) callDone(d *streams.Delivery, cs *callSlot) {
	s.running.Delete(d.StreamID)
	s.cancelled.Delete(callID(d))
	cs.release()
	s.inflight.Done()
	s.flow.callSettled()
}

func (r *reader) loop() {
	defer close(r.work) // idle workers return; busy ones after their call
	s := r.s
	outages := outage.New(s.log)
	claimEvery := s.cfg.VisibilityTimeout / 2
	sweepEvery := s.cfg.HeartbeatInterval
	readBlock := min(s.cfg.ReadBlock, sweepEvery)
	var lastClaim, lastSweep time.Time
	for {
		// While the app is down, take nothing: calls wait in the stream.
		if !s.appGate.wait(r.stop) || !s.pause.wait(r.stop) {
			return
		}
		// Wait for one free slot, then take every other free one.
		select {
		case r.slots <- struct{}{}:
		case <-r.stop:
			return
		}
		n := 1
		for n < cap(r.slots) {
			select {
			case r.slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		// Reads are not cancelled by shutdown: calls Redis handed over would
		// be left pending. They return within ReadBlock.
		var ds []streams.Delivery
		var err error
		if time.Since(lastSweep) >= sweepEvery {
			lastSweep = time.Now()
			var res streams.Rescued
			res, err = s.streams.ClaimFromDead(context.Background(), s.cfg.Handler, s.cfg.Name, s.cfg.DeadAfter, int64(n))
			ds = res.Deliveries
			for _, d := range ds {
				s.log.Warn("claimed a call from a consumer that stopped heartbeating", "call_id", callID(&d), "detail", d.Claimed)
			}
			if len(res.Removed) > 0 {
				s.log.Info("removed dead consumers from the group", "consumers", res.Removed)
			}
		}
		if err == nil && len(ds) < n && time.Since(lastClaim) >= claimEvery {
			lastClaim = time.Now()
			var claimed []streams.Delivery
			claimed, err = s.streams.Claim(context.Background(), s.cfg.Handler, s.cfg.Name, s.cfg.VisibilityTimeout, int64(n-len(ds)))
			if len(claimed) > 0 {
				s.log.Info("claimed calls from a consumer that stopped renewing them", "count", len(claimed))
			}
			ds = append(ds, claimed...)
		}
		if err == nil && len(ds) < n {
			var fresh []streams.Delivery
			block := readBlock
			if len(ds) > 0 {
				block = -1 // do not wait: there is work in hand
			}
			fresh, err = s.readNew(int64(n-len(ds)), block, r.stop) // flow.go
			ds = append(ds, fresh...)
		}
		for i := len(ds); i < n; i++ {
			<-r.slots
		}
		s.hold(ds) // early_cancels.go
		for i := range ds {
			s.inflight.Add(1)
			r.dispatch(ds[i])
		}
		if err != nil {
			outages.Failed(err)
			select {
			case <-time.After(outages.Backoff()):
			case <-r.stop:
				return
			}
			continue
		}
		outages.OK()
		select {
		case <-r.stop:
			return
		default:
		}
	}
}

// settleSlotsPer is how many settle slots a server has per run slot
// (Config.Concurrency): outcomes waiting for their batch to reach Redis.
const settleSlotsPer = 4

// callSlot is a call's hold on its reader's slots: a run slot while it is
// read and its handler runs, then, once its outcome is known, a settle slot
// while that outcome waits for its batch to reach Redis. So a handler slot
// is free again as soon as the handler returns (the next call can run while
// this one's settle round trip is under way), and the settles waiting are
// bounded on their own (settleSlotsPer × Concurrency): a slow Redis stops
// the reader, not memory. The call stays in Server.running (its lease
// renewed) and in Server.inflight (drained by Shutdown) until it is settled.
type callSlot struct {
	r        *reader
	settling bool
	// detached: the call's answer is settling asynchronously (answer), and
	// its completion calls callDone, not the worker.
	detached bool
}

// toSettle trades the run slot for a settle slot, waiting for one if every
// settle slot is taken (the run slot stays held meanwhile). Idempotent.
func (c *callSlot) toSettle() {
	if c == nil || c.settling {
		return
	}
	c.r.settles <- struct{}{}
	<-c.r.slots
	c.settling = true
}

// release gives back whichever slot the call holds.
func (c *callSlot) release() {
	if c.settling {
		<-c.r.settles
		return
	}
	<-c.r.slots
}

// callID is the delivery's call id, "" for an undecodable entry.
func callID(d *streams.Delivery) string {
	if d.Call == nil {
		return ""
	}
	return d.Call.ID
}
