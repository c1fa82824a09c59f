package app

import (
	"encoding/json"
	"strconv"
)

// Streamed results on a WebSocket (docs/streaming.md): each call's events
// are sent as $/progress notifications keyed by the call's JSON-RPC id,
// before its response:
//
//	{"jsonrpc":"2.0","method":"$/progress","params":{"id":7,"kind":"partial","seq":"1-3","value":…}}
//	{"jsonrpc":"2.0","method":"$/progress","params":{"id":7,"kind":"restart","attempt":2}}
//
// On by default; off for a socket opened with ?progress=false, or for one
// call with "_meta":{"progress":false}.

// progressMethod is the notification's method, named after LSP's.
const progressMethod = "$/progress"

// streamTo returns the sink of a call with JSON-RPC id rpcID on this
// connection, and stop, which writes what is left and returns once the
// forwarder has ended (call it before sending the call's response). nil, nil
// when the socket does not want progress.
func (c *wsConn) streamTo(rpcID json.RawMessage) (*eventSink, func()) {
	if c.noProgress {
		return nil, nil
	}
	sink := newEventSink()
	stop, done := make(chan struct{}), make(chan struct{})
	c.running.Add(1)
	go func() { // owned by the call: stop ends it
		defer c.running.Done()
		defer close(done)
		for {
			select {
			case <-sink.ready:
				if !c.forward(rpcID, sink) {
					return
				}
			case <-stop:
				c.forward(rpcID, sink)
				return
			case <-c.ctx.Done():
				return
			}
		}
	}()
	return sink, func() { close(stop); <-done }
}

// forward sends the sink's items, waiting for room in the write queue before
// each (a slow reader slows its own calls' streams, and is not closed for
// it: progress values pile up coalesced in the sink meanwhile). It reports
// false once the connection is gone.
func (c *wsConn) forward(rpcID json.RawMessage, sink *eventSink) bool {
	items, _ := sink.take()
	for _, it := range items {
		select {
		case <-c.out.room():
		case <-c.ctx.Done():
			return false
		}
		c.send(appendProgress(nil, rpcID, it))
	}
	return true
}

func appendProgress(b []byte, rpcID json.RawMessage, it streamItem) []byte {
	b = append(b, `{"jsonrpc":"2.0","method":"`+progressMethod+`","params":{"id":`...)
	b = append(b, rpcID...)
	if it.restart {
		b = append(b, `,"kind":"restart","attempt":`...)
		b = strconv.AppendInt(b, int64(it.ev.Attempt), 10)
		return append(b, "}}"...)
	}
	b = append(b, `,"kind":"`...)
	b = append(b, it.ev.Kind.String()...)
	b = append(b, `","seq":"`...)
	b = append(b, it.ev.ID()...)
	b = append(b, `","value":`...)
	b = append(b, it.ev.Data...)
	return append(b, "}}"...)
}
