package app

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// Calls on a WebSocket: dispatching the JSON-RPC messages a socket reads, the
// bound on calls in flight, and tracking them for $/cancel.

// dispatch answers one message: each call runs on its own goroutine and is
// answered when it completes, in any order.
func (c *wsConn) dispatch(msg []byte) {
	reqs, batch, perr := decodeJSONRPC(msg, c.e.cfg.JSONRPCMaxBatch)
	if perr != nil {
		c.send(encodeError(nil, perr))
		return
	}
	for i := range reqs {
		reqs[i].caller = c.remote
		reqs[i].requestID = c.requestID
		if reqs[i].trace.parent == "" { // a per-call _meta.traceparent wins
			reqs[i].trace = c.trace
		}
	}
	authorizeCalls(c.principal, reqs, time.Now())
	if !batch {
		r := &reqs[0]
		switch {
		case r.err != nil:
			if resp := r.errorResponse(); resp != nil {
				c.send(resp)
			}
		case !c.acquire():
			if r.notification() {
				// No slot and no id to answer -32005 with: enqueue it here,
				// which holds back reading (one enqueue at a time).
				c.e.runJSONRPC(c.ctx, r, nil)
				return
			}
			c.send(encodeError(r.id, c.overloaded()))
		default:
			c.running.Add(1)
			go func() {
				defer c.running.Done()
				defer c.release()
				if resp := c.e.runJSONRPC(c.ctx, r, c); resp != nil {
					c.send(resp)
				}
			}()
		}
		return
	}
	// A batch is answered with one message once all its calls complete. Each
	// call takes a slot; one past the limit is answered -32005 in the batch.
	out := make([][]byte, len(reqs))
	run := make([]bool, len(reqs))
	held := 0
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.err != nil:
			out[i] = r.errorResponse()
		case c.acquire():
			run[i] = true
			held++
		case r.notification():
			c.e.runJSONRPC(c.ctx, r, nil)
		default:
			out[i] = encodeError(r.id, c.overloaded())
		}
	}
	if held == 0 {
		if b := encodeBatch(out); b != nil {
			c.send(b)
		}
		return
	}
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		if b := encodeBatch(c.e.runAll(c.ctx, reqs, run, out, c, c.release)); b != nil {
			c.send(b)
		}
	}()
}

func (c *wsConn) acquire() bool {
	if c.inFlight.Add(1) > int64(c.e.cfg.WSMaxInFlight) {
		c.inFlight.Add(-1)
		return false
	}
	return true
}

func (c *wsConn) release() { c.inFlight.Add(-1) }

func (c *wsConn) overloaded() *streams.Error {
	return newError(streams.CodeOverloaded, "too many calls in flight on this connection; wait for answers before sending more", "limit", c.e.cfg.WSMaxInFlight)
}

// finishedCalls is how many answered calls a connection remembers for
// $/cancel: enough for the cancels in flight when their calls are answered.
const finishedCalls = 64

// wsCall is a call in flight on a connection.
type wsCall struct {
	rpcID    json.RawMessage
	handler  string
	streamID string // "" until enqueued
	cancel   context.CancelCauseFunc
}

// track records a call in flight on this connection (see callTracker).
func (c *wsConn) track(callID, handler string, rpcID json.RawMessage) (context.Context, func(streams.Enqueued), func()) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	call := &wsCall{rpcID: rpcID, handler: handler, cancel: cancel}
	c.callsMu.Lock()
	c.calls[callID] = call
	c.callsMu.Unlock()
	enqueued := func(enq streams.Enqueued) {
		c.callsMu.Lock()
		call.streamID = enq.StreamID
		c.callsMu.Unlock()
	}
	return ctx, enqueued, func() {
		c.callsMu.Lock()
		delete(c.calls, callID)
		c.finished[c.finishedNext] = rpcID
		c.finishedNext = (c.finishedNext + 1) % finishedCalls
		c.callsMu.Unlock()
		cancel(nil)
	}
}

// cancelCall cancels the call in flight with JSON-RPC id rpcID: in Redis (a
// queued call never runs; a running one's handler context is cancelled), and
// here (its caller is answered -32006 at once).
func (c *wsConn) cancelCall(rpcID json.RawMessage) (streams.State, *streams.Error) {
	c.callsMu.Lock()
	var id string
	var call *wsCall
	for k, v := range c.calls {
		if bytes.Equal(v.rpcID, rpcID) {
			id, call = k, v
			break
		}
	}
	var handler, streamID string
	finished := false
	if call != nil {
		handler, streamID = call.handler, call.streamID
	} else {
		for _, f := range c.finished {
			if f != nil && bytes.Equal(f, rpcID) {
				finished = true
				break
			}
		}
	}
	c.callsMu.Unlock()
	switch {
	case finished:
		return streams.StateDone, nil // answered already: nothing left to cancel
	case call == nil:
		return "", newError(streams.CodeInvalidParams, "no call with this id is in flight on this connection (nor among the last answered)", "id", rpcID)
	}
	state := streams.StateQueued
	if streamID != "" {
		var err error
		if state, err = c.e.cancelInRedis(handler, id, streamID); err != nil {
			return "", unavailableError(err)
		}
	}
	call.cancel(errCallerCancelled)
	return state, nil
}

// cancelAll cancels, in Redis, every call still in flight: for a connection
// opened with ?cancel_on_close=true that the peer closed.
func (c *wsConn) cancelAll() {
	c.callsMu.Lock()
	calls := make(map[string]wsCall, len(c.calls))
	for id, call := range c.calls {
		calls[id] = *call
	}
	c.callsMu.Unlock()
	for id, call := range calls {
		if call.streamID != "" {
			if _, err := c.e.cancelInRedis(call.handler, id, call.streamID); err != nil {
				c.e.log.Debug("cancelling a call of a closed websocket failed", "call_id", id, "err", err)
			}
		}
	}
}

// callsInFlight returns the edge call ids of the calls in flight on this
// connection, each with its JSON-RPC id.
func (c *wsConn) callsInFlight() map[string]json.RawMessage {
	c.callsMu.Lock()
	defer c.callsMu.Unlock()
	m := make(map[string]json.RawMessage, len(c.calls))
	for k, v := range c.calls {
		m[k] = v.rpcID
	}
	return m
}
