package app

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Async calls and results by id:
//
//	POST   /rpc/{h}/{m} with Prefer: respond-async   202, Location: /rpc/calls/{id}
//	GET    /rpc/calls/{id}[?wait=10s]                the call's state, and its outcome once known
//	DELETE /rpc/calls/{id}                           cancel an async call

// maxWait caps ?wait= on GET /rpc/calls/{id}.
const maxWait = 60 * time.Second

// A long-poll (GET /rpc/calls/{id}?wait=) re-reads the call's result key
// with backoff, from firstPoll doubling up to maxPoll: an async call is
// enqueued with no ReplyTo (no edge's reply stream gets its reply), and a
// long-poll may run on any edge. A reply that does reach this edge (Prefer:
// respond-async, wait=N) wakes its long-polls at once. See docs/async.md.
const (
	firstPoll = 25 * time.Millisecond
	maxPoll   = 500 * time.Millisecond
)

// watchers wake long-polls when this edge's reply reader sees a reply for
// their call. A long-poll holds a channel here, not a Redis connection.
type watchers struct {
	seed   maphash.Seed
	shards [16]struct {
		mu sync.Mutex
		m  map[string][]chan struct{}
	}
}

func newWatchers() *watchers {
	w := &watchers{seed: maphash.MakeSeed()}
	for i := range w.shards {
		w.shards[i].m = make(map[string][]chan struct{})
	}
	return w
}

func (w *watchers) add(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	s := &w.shards[maphash.String(w.seed, id)%uint64(len(w.shards))]
	s.mu.Lock()
	s.m[id] = append(s.m[id], ch)
	s.mu.Unlock()
	return ch
}

func (w *watchers) remove(id string, ch chan struct{}) {
	s := &w.shards[maphash.String(w.seed, id)%uint64(len(w.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.m[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.m, id)
	} else {
		s.m[id] = list
	}
}

func (w *watchers) notify(id string) {
	s := &w.shards[maphash.String(w.seed, id)%uint64(len(w.shards))]
	s.mu.Lock()
	list := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	for _, ch := range list {
		ch <- struct{}{}
	}
}

// preferences are what a call's Prefer headers ask for (RFC 7240).
type preferences struct {
	async bool          // respond-async
	wait  time.Duration // wait=N: with respond-async, wait up to N seconds for the result first
}

// parsePrefer reads the Prefer headers of a request.
func parsePrefer(c *fiber.Ctx) preferences {
	var p preferences
	for _, v := range c.Request().Header.PeekAll("Prefer") {
		p.add(string(v))
	}
	return p
}

// add reads one Prefer header: preferences separated by commas, each a
// token, optionally "=" a value, then ";"-separated parameters (ignored).
// Names are case-insensitive; a value may be quoted; the first wait counts.
func (p *preferences) add(header string) {
	for pref := range strings.SplitSeq(header, ",") {
		pref, _, _ = strings.Cut(pref, ";")
		name, value, _ := strings.Cut(pref, "=")
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		switch {
		case strings.EqualFold(name, "respond-async"):
			p.async = true
		case strings.EqualFold(name, "wait") && p.wait == 0:
			// delta-seconds; capped like ?wait= (maxWait).
			if secs, err := strconv.ParseUint(value, 10, 64); err == nil && secs > 0 {
				p.wait = time.Duration(min(secs, uint64(maxWait/time.Second))) * time.Second
			}
		}
	}
}

// enqueueAsync enqueues a call that nobody waits for; its state is kept
// under its id from the start.
func (e *Edge) enqueueAsync(id string, req callRequest) (streams.Enqueued, *streams.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A scheduled call enters the queue, and its deadline starts, at its time.
	start := time.Now()
	if req.scheduleAt.After(start) {
		start = req.scheduleAt
	}
	return e.enqueue(ctx, id, req, start, start.Add(req.timeout), true)
}

// answerAsync answers POST /rpc/{h}/{m} with Prefer: respond-async. With
// wait=N as well, it first waits up to N seconds (at most the call's
// timeout) for the result, answered then as a synchronous call is; 202 if it
// does not come in time.
func (e *Edge) answerAsync(c *fiber.Ctx, id string, req callRequest, wait time.Duration) error {
	wait = min(wait, req.timeout)
	req.waitHere = wait > 0 // the reply comes to this edge, which wakes the wait
	enq, rerr := e.acceptAsync(id, req)
	if rerr != nil {
		if enq.ID != "" { // queued all the same (durable mode, replicas not confirmed)
			c.Set("X-Request-Id", enq.ID)
		}
		if rerr.Code == streams.CodeOverloaded {
			c.Set(fiber.HeaderRetryAfter, "1")
		}
		return writeError(c, rerr)
	}
	if wait > 0 {
		if st, err := e.pollStatus(enq.ID, time.Now().Add(wait)); err == nil && st.Final() {
			c.Set("X-Request-Id", enq.ID)
			return writeReply(c, st.Reply)
		}
	}
	state := streams.StateQueued
	if !req.scheduleAt.IsZero() {
		state = streams.StateScheduled
	}
	if enq.Duplicate {
		// A repeat of an Idempotency-Key: the first call's real state (done,
		// failed, … once it finished). A first call made synchronously has
		// no state until its outcome: it is reported queued until then.
		if st, err := e.pollStatus(enq.ID, time.Time{}); err == nil {
			state = st.State
		}
	}
	loc := "/rpc/calls/" + enq.ID
	c.Set("X-Request-Id", enq.ID)
	c.Set(fiber.HeaderLocation, loc)
	c.Set("Preference-Applied", "respond-async")
	c.Status(fiber.StatusAccepted)
	return c.JSON(fiber.Map{"id": enq.ID, "state": state, "location": loc, "duplicate": enq.Duplicate})
}

// parseWait reads ?wait= as a Go duration ("10s") or seconds ("10").
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs < 0 || secs != secs {
			return 0, errors.New("negative")
		}
		return min(time.Duration(secs*float64(time.Second)), maxWait), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("not a duration")
	}
	return min(d, maxWait), nil
}

// handleCallStatus serves GET /rpc/calls/{id}: the call's state, and its
// result or error once it has one. ?wait=10s long-polls until the call is
// answered or the wait ends.
func (e *Edge) handleCallStatus(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, err := streams.ValidateCallID(id); err != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
	}
	wait, err := parseWait(c.Query("wait"))
	if err != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, "wait must be a duration like 10s (at most 60s)", "wait", c.Query("wait")))
	}
	id = string([]byte(id)) // Fiber reuses the buffer; the id outlives this read
	st, err := e.pollStatus(id, time.Now().Add(wait))
	return e.writeStatus(c, id, st, err)
}

// pollStatus reads a call's state until it is final or until passes: woken
// at once by a reply to this edge, re-read with backoff (firstPoll to
// maxPoll) otherwise; no Redis connection is held between reads. A zero
// until reads once.
func (e *Edge) pollStatus(id string, until time.Time) (streams.CallStatus, error) {
	for pause := firstPoll; ; pause = min(2*pause, maxPoll) {
		ch := e.watchers.add(id) // before reading, so a reply in between wakes us
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := e.streams.CallStatus(ctx, id)
		cancel()
		left := time.Until(until)
		if err != nil || st.Final() || left <= 0 {
			e.watchers.remove(id, ch)
			return st, err
		}
		t := time.NewTimer(min(left, pause))
		select {
		case <-ch:
		case <-t.C:
			e.watchers.remove(id, ch)
		}
		t.Stop()
	}
}

func (e *Edge) writeStatus(c *fiber.Ctx, id string, st streams.CallStatus, err error) error {
	switch {
	case errors.Is(err, streams.ErrNotFound):
		return writeError(c, newError(streams.CodeNotFound, "no call "+id+": the id is unknown, or its result expired after STREAMRPC_RESULT_TTL", "id", id))
	case err != nil:
		return writeError(c, unavailableError(err))
	}
	out := struct {
		ID       string               `json:"id"`
		State    streams.State        `json:"state"`
		Handler  string               `json:"handler,omitempty"`
		Method   string               `json:"method,omitempty"`
		Consumer string               `json:"consumer,omitempty"`
		Priority string               `json:"priority,omitempty"` // queued or running with a priority (priority.go)
		Due      string               `json:"scheduled_at,omitempty"`
		Result   json.RawMessage      `json:"result,omitempty"`
		Error    json.RawMessage      `json:"error,omitempty"`
		Story    []streams.StoryEvent `json:"story"`
	}{ID: id, State: st.State, Handler: st.Handler, Consumer: st.Consumer, Story: []streams.StoryEvent{}}
	if st.Priority != "" && st.Priority != streams.PriorityNormal.String() {
		out.Priority = st.Priority
	}
	if !st.Due.IsZero() {
		out.Due = st.Due.UTC().Format(time.RFC3339Nano)
	}
	ctx, cancel := apiContext()
	defer cancel()
	if story, err := e.streams.Story(ctx, id); err == nil {
		out.Story = story
		for _, ev := range story {
			if ev.Event == "queued" {
				out.Handler, out.Method = ev.Handler, ev.Method
			}
		}
	}
	if st.Final() {
		if st.Reply.OK {
			out.Result = st.Reply.Body
		} else {
			out.Error = st.Reply.Body
		}
	}
	return c.JSON(out)
}

// handleCancel serves DELETE /rpc/calls/{id}: cancel an async call. A queued
// call is removed and never runs; a running call's handler context is
// cancelled. Either way its outcome becomes a cancelled error.
func (e *Edge) handleCancel(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, err := streams.ValidateCallID(id); err != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
	}
	ctx, cancel := apiContext()
	defer cancel()
	st, err := e.streams.CallStatus(ctx, id)
	if err != nil {
		return e.writeStatus(c, id, st, err)
	}
	if st.Final() {
		c.Status(fiber.StatusConflict)
		return c.JSON(fiber.Map{"error": fiber.Map{"code": streams.CodeInvalidRequest, "message": "call " + id + " is already " + string(st.State)}, "state": st.State})
	}
	was, err := e.streams.CancelCall(ctx, st, e.cfg.ResultTTL)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	c.Status(fiber.StatusAccepted)
	return c.JSON(fiber.Map{"id": id, "was": was, "state": cancelOutcome(was)})
}

func cancelOutcome(was streams.State) string {
	switch was {
	case streams.StateQueued, streams.StateScheduled:
		return "cancelled"
	case streams.StateRunning:
		return "cancelling"
	}
	return "too_late"
}

// cancelInRedis cancels a call enqueued at streamID of handler.
func (e *Edge) cancelInRedis(handler, id, streamID string) (streams.State, error) {
	ctx, cancel := apiContext()
	defer cancel()
	return e.streams.Cancel(ctx, handler, id, streamID, e.cfg.ResultTTL)
}
