package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/streamrpc/streamrpc/streams"
)

// Streamed results on the caller's side (docs/streaming.md): the events a
// handler sends before its final result reach this edge on its reply stream;
// the reply reader hands them to the call's eventSink (waiters.deliver), and
// the call's writer (an SSE response, a WebSocket's $/progress forwarder)
// drains it at its own pace. Only calls whose caller asked to stream have a
// sink: a plain call costs nothing more, and drops the events.

// streamItem is one thing a streaming caller is told before the result.
type streamItem struct {
	ev streams.Event
	// restart: a new attempt starts over (ev.Attempt); what came before is void.
	restart bool
}

// eventSink buffers one call's events between the reply reader, which must
// never wait for a caller, and the caller's writer. Partials are all kept (a
// handler's StreamMaxPartials bounds them); a progress value not yet written
// is replaced by a newer one, so a slow reader gets the latest.
type eventSink struct {
	mu    sync.Mutex
	order streams.EventOrder
	items []streamItem
	lost  bool          // an event was missing: the stream cannot be trusted
	ready chan struct{} // one token: items were added
}

func newEventSink() *eventSink { return &eventSink{ready: make(chan struct{}, 1)} }

// push adds events in the order they were read.
func (s *eventSink) push(evs []streams.Event) {
	s.mu.Lock()
	for _, ev := range evs {
		restart, lost, stale := s.order.Next(ev)
		if stale {
			continue
		}
		if restart {
			s.items = append(s.items, streamItem{ev: streams.Event{Attempt: ev.Attempt}, restart: true})
			s.lost = false // the new attempt's own events are what count now
		}
		if lost {
			s.lost = true
		}
		if n := len(s.items); ev.Kind == streams.EventProgress && n > 0 && !s.items[n-1].restart && s.items[n-1].ev.Kind == streams.EventProgress {
			s.items[n-1].ev = ev // not written yet: the latest wins
			continue
		}
		s.items = append(s.items, streamItem{ev: ev})
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take returns what was added since the last take; lost is true once an
// event of the current attempt went missing.
func (s *eventSink) take() (items []streamItem, lost bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items, s.items = s.items, nil
	return items, s.lost
}

// isLost reports whether an event of the current attempt went missing.
func (s *eventSink) isLost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// errStreamLost is the outcome a streaming caller gets instead of the result
// when events of the attempt that answered went missing on the way (the
// reply stream was trimmed under an edge that fell far behind).
func errStreamLost(id string) *streams.Error {
	return newError(streams.CodeUnavailable, "streamed results of this call were lost on the way; its result is kept: GET /rpc/calls/"+id, "id", id)
}

// wantsSSE reports whether a request's Accept asks for an event stream.
func wantsSSE(c *fiber.Ctx) bool {
	return bytes.Contains(c.Request().Header.Peek(fiber.HeaderAccept), mimeEventStream)
}

var mimeEventStream = []byte("text/event-stream")

// appendSSE renders one item as an SSE event.
func appendSSE(b []byte, it streamItem) []byte {
	if it.restart {
		b = append(b, "event: restart\ndata: {\"attempt\":"...)
		b = strconv.AppendInt(b, int64(it.ev.Attempt), 10)
		return append(b, "}\n\n"...)
	}
	b = append(b, "id: "...)
	b = append(b, it.ev.ID()...)
	b = append(b, "\nevent: "...)
	b = append(b, it.ev.Kind.String()...)
	return appendSSEData(b, it.ev.Data)
}

// appendSSEData writes data lines: JSON may hold newlines (between tokens),
// and each line of an event's data needs its own "data: ".
func appendSSEData(b, data []byte) []byte {
	for {
		line, rest, more := strings.Cut(string(data), "\n")
		b = append(b, "\ndata: "...)
		b = append(b, line...)
		if !more {
			break
		}
		data = []byte(rest)
	}
	return append(b, "\n\n"...)
}

// appendSSEOutcome renders the final event: "result" with the result, or
// "error" with the error object.
func appendSSEOutcome(b []byte, id string, reply streams.Reply, rerr *streams.Error, lost bool) []byte {
	switch {
	case rerr == nil && lost:
		rerr = errStreamLost(id)
	case rerr == nil && reply.OK:
		b = append(b, "event: result"...)
		return appendSSEData(b, reply.Body)
	case rerr == nil:
		b = append(b, "event: error"...)
		return appendSSEData(b, reply.Body)
	}
	body, _ := json.Marshal(rerr)
	b = append(b, "event: error"...)
	return appendSSEData(b, body)
}

// callOutcome is what a call in flight ended with.
type callOutcome struct {
	reply streams.Reply
	rerr  *streams.Error
}

// answerSSE serves POST /rpc/{h}/{m} with Accept: text/event-stream: the
// call's progress and partials as they come, then its result or error. A
// call refused before it was queued (404, 422, 503) is answered as without
// the header, with its JSON error and status.
func (e *Edge) answerSSE(c *fiber.Ctx, id string, req callRequest) error {
	sink := newEventSink()
	req.sink = sink
	accepted := make(chan struct{})
	req.enqueued = func(streams.Enqueued) { close(accepted) }
	// ctx ends the wait when the client goes away (a failed write).
	ctx, cancel := context.WithCancel(context.Background())
	req.ctx = ctx
	done := make(chan callOutcome, 1)
	go func() { // owned by this response: it ends with the call (deadline, or cancel)
		reply, rerr := e.call(id, req)
		done <- callOutcome{reply, rerr}
	}()
	var early *callOutcome
	select {
	case <-accepted:
	case o := <-done:
		early = &o
		if o.rerr != nil && o.reply.ID == "" { // never queued
			cancel()
			if o.rerr.Code == streams.CodeOverloaded {
				c.Set(fiber.HeaderRetryAfter, "1")
			}
			return writeError(c, o.rerr)
		}
	}
	c.Set("X-Request-Id", id)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	c.Context().SetBodyStreamWriter(fasthttp.StreamWriter(func(w *bufio.Writer) {
		defer cancel()
		if early != nil {
			done <- *early
		}
		pumpSSE(w, id, sink, done)
	}))
	return nil
}

// pumpSSE writes a call's events as they come, then its outcome from done.
// A failed write (the client is gone) returns; the caller's cancel then ends
// the call's wait.
func pumpSSE(w *bufio.Writer, id string, sink *eventSink, done <-chan callOutcome) {
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	var buf []byte
	write := func(b []byte) bool {
		_, err := w.Write(b)
		return err == nil && w.Flush() == nil
	}
	for {
		select {
		case <-sink.ready:
			items, _ := sink.take()
			buf = buf[:0]
			for _, it := range items {
				buf = appendSSE(buf, it)
			}
			if !write(buf) {
				return
			}
		case o := <-done:
			items, lost := sink.take() // all of them: the reply came after its events
			buf = buf[:0]
			for _, it := range items {
				buf = appendSSE(buf, it)
			}
			write(appendSSEOutcome(buf, id, o.reply, o.rerr, lost))
			return
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}

// asyncEventsPoll bounds how often GET /rpc/calls/{id}/events reads the
// call's events and state while nothing comes: from the first to the last,
// doubling; reset by every event.
const (
	asyncEventsFirstPoll = 20 * time.Millisecond
	asyncEventsMaxPoll   = 250 * time.Millisecond
)

// handleCallEvents serves GET /rpc/calls/{id}/events: the streamed events of
// an async call (Prefer: respond-async) as SSE, then its result or error.
// Last-Event-ID resumes after an event, while the call's result is kept.
// Nothing holds a Redis connection between reads.
func (e *Edge) handleCallEvents(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, err := streams.ValidateCallID(id); err != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
	}
	id = strings.Clone(id)
	after := strings.Clone(c.Get("Last-Event-ID"))
	if after != "" {
		if _, _, ok := streams.ParseEventID(after); !ok {
			return writeError(c, newError(streams.CodeInvalidRequest, "Last-Event-ID must be an event id <attempt>-<seq>", "value", after))
		}
	}
	ctx, cancel := apiContext()
	st, err := e.streams.CallStatus(ctx, id)
	cancel()
	if err != nil {
		return e.writeStatus(c, id, st, err)
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	deadline := time.Now().Add(e.cfg.CallTimeout + maxWait)
	c.Context().SetBodyStreamWriter(fasthttp.StreamWriter(func(w *bufio.Writer) {
		e.pumpCallEvents(w, id, after, deadline)
	}))
	return nil
}

// pumpCallEvents reads an async call's events after `after` and writes them,
// until its outcome is known (then written) or deadline. It polls with
// backoff: an async call's events go to no edge, and any edge may serve this.
func (e *Edge) pumpCallEvents(w *bufio.Writer, id, after string, deadline time.Time) {
	var order streams.EventOrder
	if a, s, ok := streams.ParseEventID(after); ok {
		order.Next(streams.Event{Attempt: a, Seq: s})
	}
	const page = 1000
	var buf []byte
	pause := asyncEventsFirstPoll
	lastWrite := time.Now()
	for time.Now().Before(deadline) {
		ctx, cancel := apiContext()
		// The state first: once it is final, every event is in the stream.
		st, serr := e.streams.CallStatus(ctx, id)
		var evs []streams.Event
		if serr == nil {
			evs, serr = e.streams.CallEvents(ctx, id, after, page)
		}
		cancel()
		buf = buf[:0]
		if serr != nil {
			rerr := unavailableError(serr)
			if errors.Is(serr, streams.ErrNotFound) {
				rerr = newError(streams.CodeNotFound, "no call "+id+": the id is unknown, or its result expired", "id", id)
			}
			_, _ = w.Write(appendSSEOutcome(buf, id, streams.Reply{}, rerr, false))
			_ = w.Flush()
			return
		}
		for _, ev := range evs {
			restart, _, stale := order.Next(ev)
			if stale {
				continue
			}
			if restart {
				buf = appendSSE(buf, streamItem{ev: streams.Event{Attempt: ev.Attempt}, restart: true})
			}
			buf = appendSSE(buf, streamItem{ev: ev})
			after = ev.ID()
		}
		final := st.Final() && len(evs) < page // else more to read first
		if final {
			buf = appendSSEOutcome(buf, id, st.Reply, nil, false)
		}
		if len(buf) == 0 && time.Since(lastWrite) > 15*time.Second {
			buf = append(buf, ": ping\n\n"...)
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil || w.Flush() != nil || final {
				return
			}
			lastWrite = time.Now()
		}
		if len(evs) > 0 {
			pause = asyncEventsFirstPoll
			continue
		}
		time.Sleep(pause) // nothing new: poll again later
		pause = min(2*pause, asyncEventsMaxPoll)
	}
}
