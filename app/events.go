package app

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// statsEvery is how often the live feed sends handler stats.
const statsEvery = 2 * time.Second

// eventHub is the live feed behind GET /events: one loop per edge reads the
// handlers' activity streams (only while someone listens) and fans each event
// out to the subscribers. A subscriber that cannot keep up loses events, never
// slows the others.
type eventHub struct {
	streams *streams.Client
	log     *slog.Logger

	mu   sync.Mutex
	subs map[chan sseEvent]struct{}
	wake chan struct{} // a first subscriber arrived

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func newEventHub(sc *streams.Client, log *slog.Logger) *eventHub {
	ctx, cancel := context.WithCancel(context.Background())
	return &eventHub{streams: sc, log: log, subs: map[chan sseEvent]struct{}{}, wake: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (h *eventHub) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(h.done)
		h.loop()
	}()
}

// shutdown ends the loop and every subscriber's stream. Safe to call twice.
func (h *eventHub) shutdown() {
	h.once.Do(h.cancel)
	<-h.done
}

// sseEvent is one rendered event of the feed; pos is its activity position
// ("" for stats).
type sseEvent struct {
	pos string
	msg []byte
}

func (h *eventHub) subscribe() chan sseEvent {
	ch := make(chan sseEvent, 64)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return ch
}

func (h *eventHub) unsubscribe(ch chan sseEvent) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

func (h *eventHub) listeners() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// renderEvent renders one SSE event. An activity event carries its position
// as its id, which the browser sends back as Last-Event-ID when it
// reconnects; stats events carry none (an id on them would replace the last
// activity id the browser keeps).
func renderEvent(event, pos string, data []byte) sseEvent {
	msg := make([]byte, 0, len(event)+len(pos)+len(data)+24)
	if pos != "" {
		msg = append(msg, "id: "...)
		msg = append(msg, pos...)
		msg = append(msg, '\n')
	}
	msg = append(msg, "event: "...)
	msg = append(msg, event...)
	msg = append(msg, "\ndata: "...)
	msg = append(msg, data...)
	msg = append(msg, "\n\n"...)
	return sseEvent{pos: pos, msg: msg}
}

func (h *eventHub) broadcast(event, pos string, data []byte) {
	ev := renderEvent(event, pos, data)
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // too slow: it misses this one
		}
	}
}

func (h *eventHub) loop() {
	outages := outage.New(h.log)
	var cursor *streams.ActivityCursor
	var lastStats time.Time
	for h.ctx.Err() == nil {
		if h.listeners() == 0 {
			cursor = nil // start from the present when someone listens again
			select {
			case <-h.wake:
			case <-h.ctx.Done():
				return
			}
			continue
		}
		if cursor == nil {
			cursor = h.streams.NewActivityCursor()
		}
		if time.Since(lastStats) >= statsEvery {
			lastStats = time.Now()
			ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
			hs, err := h.streams.HandlerSummaries(ctx)
			cancel()
			if err == nil {
				if b, err := json.Marshal(hs); err == nil {
					h.broadcast("stats", "", b)
				}
			}
		}
		acts, err := cursor.Next(h.ctx, statsEvery/2)
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			outages.Failed(err)
			select {
			case <-time.After(outages.Backoff()):
			case <-h.ctx.Done():
				return
			}
			continue
		}
		outages.OK()
		for _, a := range acts {
			if b, err := json.Marshal(a); err == nil {
				h.broadcast("activity", a.Pos, b)
			}
		}
	}
}

// activityAfter reads the activity recorded after pos (a Last-Event-ID), at
// most maxBacklog events; nothing if pos is not one of the feed's ids or
// Redis does not answer.
func (e *Edge) activityAfter(pos string) []sseEvent {
	cursor, err := e.streams.NewActivityCursorAfter(pos)
	if err != nil {
		return nil
	}
	ctx, cancel := apiContext()
	defer cancel()
	var out []sseEvent
	for len(out) < maxBacklog {
		acts, err := cursor.Next(ctx, 0)
		if err != nil || len(acts) == 0 {
			break
		}
		for _, a := range acts {
			if b, err := json.Marshal(a); err == nil {
				out = append(out, renderEvent("activity", a.Pos, b))
			}
		}
	}
	return out
}

// maxBacklog bounds the activity events a reconnect is sent at once.
const maxBacklog = 2000

// serveEvents serves GET /events as Server-Sent Events: "activity" (one
// settled call) and "stats" (every handler's summary, every 2s).
func (e *Edge) serveEvents(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	hub := e.events
	ch := hub.subscribe() // before the backlog is read: nothing falls in between
	// A reconnect resumes after the last activity event it got.
	var backlog []sseEvent
	if last := c.Get("Last-Event-ID"); last != "" {
		backlog = e.activityAfter(strings.Clone(last))
	}
	c.Context().SetBodyStreamWriter(fasthttp.StreamWriter(func(w *bufio.Writer) {
		defer hub.unsubscribe(ch)
		ping := time.NewTicker(15 * time.Second)
		defer ping.Stop()
		if _, err := w.WriteString("retry: 2000\n: connected\n\n"); err != nil || w.Flush() != nil {
			return
		}
		sent := "" // the last activity position sent
		for _, ev := range backlog {
			if _, err := w.Write(ev.msg); err != nil {
				return
			}
			sent = ev.pos
		}
		if w.Flush() != nil {
			return
		}
		for {
			select {
			case ev := <-ch:
				if ev.pos != "" && sent != "" && !streams.StreamIDLess(sent, ev.pos) {
					continue // in the backlog already
				}
				if _, err := w.Write(ev.msg); err != nil || w.Flush() != nil {
					return
				}
			case <-ping.C:
				if _, err := w.WriteString(": ping\n\n"); err != nil || w.Flush() != nil {
					return
				}
			case <-hub.ctx.Done():
				return
			}
		}
	}))
	return nil
}
