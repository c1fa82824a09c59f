package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"
	"unsafe"

	"github.com/streamrpc/streamrpc/streams"
)

// Processing one call: run the handler, then settle its outcome (an answer,
// a retry with backoff, or a dead letter).

var (
	errPanic             = errors.New("handler panicked")
	errCancelledByCaller = errors.New("cancelled by the caller")
	errLeaseLost         = errors.New("another consumer claimed the call (this one was declared dead)")
)

// process runs one delivery and settles it: an answer, a retry, or a dead
// letter. cs trades its run slot for a settle slot once the outcome is
// known (nil: no slots, and the answer is settled synchronously).
func (s *Server) process(d *streams.Delivery, cs *callSlot) {
	if d.Err != nil {
		s.poison(d)
		return
	}
	call := d.Call
	attempt := d.Attempt()
	if attempt > s.cfg.MaxAttempts {
		// Delivered again and again without ever being settled: each consumer
		// that took it died or hung. Running it once more may kill this one.
		cs.toSettle()
		s.stats.deadLettered(call.Method)
		lastErr := streams.NewError(streams.CodeInternal, fmt.Sprintf("delivered %d times without finishing: every consumer that took it crashed or stopped", d.Deliveries))
		s.settle(d, func(ctx context.Context) (bool, error) {
			return s.streams.DeadLetter(ctx, d, lastErr, streams.Run{Consumer: s.cfg.Name})
		})
		return
	}
	if !call.Deadline.IsZero() && time.Now().After(call.Deadline) {
		cs.toSettle()
		s.stats.expired(call.Method)
		s.answer(d, streams.ErrorReply(call.ID, streams.NewError(streams.CodeTimeout, "the call's deadline passed while it was queued; it was not run")), streams.Run{Consumer: s.cfg.Name}, cs)
		return
	}
	req := &Request{
		ID: call.ID, Handler: call.Handler, Method: call.Method, Params: call.Params,
		Attempt: attempt, Deadline: call.Deadline, EnqueuedAt: call.EnqueuedAt, trace: requestTrace(call), RequestID: call.RequestID,
		srv: s, replyTo: call.ReplyTo, resultTTL: call.ResultTTL,
	}
	ran := s.runOnce(req)
	for s.probe != nil && errors.Is(ran.err, ErrAppUnavailable) {
		// The app is down: this attempt does not count. Hold the call (its
		// lease is renewed, its slot kept) and run it again once the app answers.
		s.appDown(ran.err)
		if !s.appGate.wait(s.reader.stop) {
			s.log.Warn("stopping while the app is down; the call stays pending for another consumer", "call_id", call.ID)
			return
		}
		if time.Now().After(call.Deadline) {
			cs.toSettle()
			s.stats.expired(call.Method)
			s.answer(d, streams.ErrorReply(call.ID, streams.NewError(streams.CodeTimeout, "the call's deadline passed while the app was down; it was not run")), streams.Run{Consumer: s.cfg.Name}, cs)
			return
		}
		ran = s.runOnce(req)
	}
	cs.toSettle() // the handler is done: its slot is free for the next call
	res, err, run, cancelled, timedOut := ran.res, ran.err, ran.run, ran.cancelled, ran.timedOut
	took := run.Took
	var reply streams.Reply
	if err == nil {
		reply, err = resultReply(call.ID, call.Params, res)
	}
	if err == nil {
		s.stats.record(call.Method, took, nil)
		s.answer(d, reply, run, cs)
		return
	}
	switch {
	case cancelled:
		err = &Error{Code: streams.CodeCancelled, Message: "the call was cancelled by its caller"}
	case errors.Is(err, context.DeadlineExceeded) && timedOut:
		err = &Error{Code: CodeTimeout, Message: "the handler did not finish before the call's deadline"}
	}
	we := wireError(err)
	s.stats.record(call.Method, took, we)
	if !IsRetryable(err) {
		s.answer(d, streams.ErrorReply(call.ID, we), run, cs)
		return
	}
	if attempt >= s.cfg.MaxAttempts {
		s.stats.deadLettered(call.Method)
		s.log.Warn("call failed on every attempt; moved to the dead letters", "call_id", call.ID, "method", call.Method, "attempts", attempt, "err", we.Message)
		s.settle(d, func(ctx context.Context) (bool, error) { return s.streams.DeadLetter(ctx, d, we, run) })
		return
	}
	due := time.Now().Add(s.backoff(attempt))
	if due.After(call.Deadline) {
		// No caller will be waiting by then: answer with the error now.
		s.answer(d, streams.ErrorReply(call.ID, we), run, cs)
		return
	}
	s.stats.retried(call.Method)
	s.settle(d, func(ctx context.Context) (bool, error) { return s.streams.Retry(ctx, d, due, we, run) })
	s.forwarder.poke() // it may be sleeping past this retry's due time
}

// runResult is what one run of the handler gave.
type runResult struct {
	res       any
	err       error
	run       streams.Run
	cancelled bool // by the caller
	timedOut  bool // the call's deadline passed
}

// runOnce runs the handler once for req, with the call's deadline and its
// cancellation by the caller.
func (s *Server) runOnce(req *Request) runResult {
	dctx, cancel := context.WithDeadline(s.runCtx, req.Deadline)
	ctx, cancelCall := context.WithCancelCause(dctx)
	s.cancels.Store(req.ID, cancelCall)
	if _, ok := s.cancelled.Load(req.ID); ok { // cancelled before it started (cancelByCaller)
		cancelCall(errCancelledByCaller)
	}
	start := time.Now()
	req.ctx = ctx
	res, err := s.serve(ctx, req)
	partials, progress, serr := req.finishStream()
	if serr != nil {
		// Partials went missing (refused past a limit, or lost to Redis):
		// the caller must not get a final result as if none had.
		res, err = nil, serr
		if errors.Is(serr, ErrStreamBroken) {
			err = Retryable(serr)
		}
	}
	s.cancels.Delete(req.ID)
	a := runResult{res: res, err: err, cancelled: errors.Is(context.Cause(ctx), errCancelledByCaller), timedOut: dctx.Err() != nil}
	cancelCall(nil)
	cancel()
	a.run = streams.Run{Consumer: s.cfg.Name, Started: start, Took: time.Since(start), Partials: partials, Progress: progress}
	return a
}

// backoff is the delay before retrying after attempt: exponential from
// RetryBaseDelay, capped at RetryMaxDelay, with jitter in [d/2, d).
func (s *Server) backoff(attempt int) time.Duration {
	d := s.cfg.RetryBaseDelay
	for i := 1; i < attempt && d < s.cfg.RetryMaxDelay; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMaxDelay)
	return d/2 + rand.N(d/2+1)
}

// serve runs the handler; a panic becomes an internal error.
func (s *Server) serve(ctx context.Context, req *Request) (res any, err error) {
	ctx, obs := s.obs.begin(ctx, req)
	defer func() { obs.end(err) }() // after the recover below: sees a panic's error
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "method", req.Method, "call_id", req.ID, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return s.handler.ServeRPC(ctx, req)
}

// resultReply encodes a handler's result. params are the call's params,
// which decodeCall has checked to be valid JSON (an entry whose params are not
// is poison and never reaches a handler): a handler that returns them as they
// are (an echo, a pass-through) returns valid JSON, which is not checked again.
func resultReply(id string, params json.RawMessage, res any) (streams.Reply, error) {
	if raw, ok := res.(json.RawMessage); ok {
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		if !sameBytes(raw, params) && !json.Valid(raw) {
			return streams.Reply{}, &Error{Code: CodeInternal, Message: "the handler returned invalid JSON"}
		}
		return streams.ResultReply(id, raw), nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return streams.Reply{}, &Error{Code: CodeInternal, Message: "the handler's result cannot be encoded as JSON: " + err.Error()}
	}
	return streams.ResultReply(id, b), nil
}

// sameBytes reports whether a and b are the same bytes in memory (not merely
// equal ones).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// answer settles d with reply. With cs (always, but in tests), it does not
// wait: the answer joins its batch and the batch's completion ends the call
// (callDone), so the worker is free at once and is not woken back; only when
// Redis is unavailable does a goroutine retry it as settle does.
func (s *Server) answer(d *streams.Delivery, reply streams.Reply, run streams.Run, cs *callSlot) {
	reply = withTiming(reply, d.Call, run)
	finish := func(ctx context.Context) (bool, error) { return s.streams.Finish(ctx, d, reply, run) }
	if cs == nil {
		s.settle(d, finish)
		return
	}
	cs.detached = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.streams.FinishAsync(ctx, cancel, d, reply, run, func(settled bool, err error) {
		if err != nil {
			s.log.Debug("settling the call failed; retrying", "call_id", d.Call.ID, "err", err)
			go func() {
				s.settle(d, finish)
				s.callDone(d, cs)
			}()
			return
		}
		if !settled {
			s.duplicate(d)
		}
		s.callDone(d, cs)
	})
}

// duplicate notes a run whose outcome was dropped: another consumer settled
// the call first.
func (s *Server) duplicate(d *streams.Delivery) {
	s.stats.duplicate()
	s.log.Info("another consumer settled the call, or holds it (this one was declared dead); this run's outcome is dropped", "call_id", d.Call.ID)
}

// settle runs one settling script, retrying while Redis is unavailable until
// the server's run context ends. If it cannot, the call stays pending and is
// redelivered: at least once, never lost.
func (s *Server) settle(d *streams.Delivery, op func(ctx context.Context) (bool, error)) {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		settled, err := op(ctx)
		cancel()
		if err == nil {
			if !settled {
				s.duplicate(d)
			}
			return
		}
		s.log.Debug("settling the call failed; retrying", "call_id", d.Call.ID, "err", err)
		select {
		case <-time.After(backoff):
		case <-s.runCtx.Done():
			s.log.Warn("call not settled before shutdown; it stays pending for redelivery", "call_id", d.Call.ID)
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// poison moves an entry that cannot be decoded to the dead letters. It is
// never run: no handler could make sense of it.
func (s *Server) poison(d *streams.Delivery) {
	s.log.Error("undecodable call envelope; moved to the dead letters", "stream_id", d.StreamID, "err", d.Err)
	s.stats.poisoned()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.streams.Poison(ctx, d, s.cfg.Name); err != nil {
		s.log.Warn("moving an undecodable entry failed; it stays pending", "stream_id", d.StreamID, "err", err)
	}
}
