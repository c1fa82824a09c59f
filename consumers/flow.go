package consumers

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// Flow control on the consumer side (docs/flow-control.md): how the reader
// takes new calls. A handler with no limit is read with a plain XREADGROUP,
// exactly as before; one with a handler-wide limit (max_concurrency, rate)
// through streams.ReadLimited, which leaves calls over the limit in the
// stream. Which one applies is learnt at each heartbeat (every second by
// default), so a limit set or cleared through the admin API applies within
// 2 s. A handler that got a call with a priority once is read through
// streams.ReadPriorities (docs/flow-control.md), learnt the same way.

// concurrencyPoll is how long a consumer waits before trying again when
// the handler's max_concurrency is reached and none of its own calls
// settles first (one of its own settling wakes it at once).
const concurrencyPoll = 50 * time.Millisecond

// flowState is what the reader needs to know of the handler's flow control.
type flowState struct {
	limited atomic.Bool   // the handler has a limit: read through ReadLimited
	prio    atomic.Bool   // the handler has priority streams: read through ReadPriorities
	turn    uint64        // the reader's read count, for streams.ReadOrder (the reader's own)
	settled chan struct{} // poked when one of this server's calls settles
}

func newFlowState() *flowState { return &flowState{settled: make(chan struct{}, 1)} }

// callSettled wakes a reader waiting for the concurrency limit to free up.
func (f *flowState) callSettled() {
	select {
	case f.settled <- struct{}{}:
	default:
	}
}

// setLimited records whether the handler has a limit, as each heartbeat
// reports it (streams.HeartbeatControl): no round trip of its own.
func (s *Server) setLimited(limited bool) {
	if was := s.flow.limited.Swap(limited); was != limited {
		s.log.Info("handler-wide limits changed", "limited", limited)
	}
}

// setPriorities records whether the handler has priority streams, as each
// heartbeat reports it.
func (s *Server) setPriorities(on bool) {
	if was := s.flow.prio.Swap(on); was != on {
		s.log.Info("call priorities in use", "priorities", on)
	}
}

// readNew takes up to n new calls, blocking up to block when there are
// none: the reader's one way to read the stream.
func (s *Server) readNew(n int64, block time.Duration, stop <-chan struct{}) ([]streams.Delivery, error) {
	prio := s.flow.prio.Load()
	if !prio && !s.flow.limited.Load() {
		return s.streams.ReadCalls(context.Background(), s.cfg.Handler, s.cfg.Name, n, block)
	}
	var res streams.LimitedRead
	var err error
	if prio {
		s.flow.turn++
		res, err = s.streams.ReadPriorities(context.Background(), s.cfg.Handler, s.cfg.Name, n, concurrencyPoll, streams.ReadOrder(s.flow.turn-1))
	} else {
		res, err = s.streams.ReadLimited(context.Background(), s.cfg.Handler, s.cfg.Name, n, concurrencyPoll)
	}
	if err != nil || len(res.Deliveries) > 0 || block < 0 {
		return res.Deliveries, err
	}
	if res.Wait > 0 { // over a limit: the calls wait in the stream
		t := time.NewTimer(min(res.Wait, block))
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.flow.settled:
		case <-stop:
		}
		return nil, nil
	}
	// Under the limits but nothing new: wait for a call without taking it.
	return nil, s.streams.WaitForCalls(context.Background(), s.cfg.Handler, res.LastID, block)
}
