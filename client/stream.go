package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// Streamed results (docs/streaming.md): a handler may send progress values
// and partial results before its final result. CallStream (HTTP, as
// Server-Sent Events) and WS.CallStream ($/progress notifications) pass them
// to a function as they come.

// Event kinds.
const (
	EventProgress = "progress" // a progress value; values may be coalesced (the latest wins)
	EventPartial  = "partial"  // a partial result; none is dropped, in order
	// EventRestart: the call is being run again (its consumer died, or the
	// attempt failed and is retried); what came before is void.
	EventRestart = "restart"
)

// Event is one streamed event of a call.
type Event struct {
	Kind    string
	ID      string          // "<attempt>-<seq>", the SSE id; "" for a restart
	Attempt int             // for a restart: the attempt that starts over
	Data    json.RawMessage // the value (progress, partial)
}

// CallStream calls handler.method like Call, and passes each event the
// handler streams to onEvent, in order, on the calling goroutine, before the
// final result is decoded into out.
func (c *Client) CallStream(ctx context.Context, handler, method string, params any, onEvent func(Event), out any) error {
	req, err := c.newCall(ctx, handler, method, params)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := c.send(req)
	if err != nil {
		return fmt.Errorf("streamrpc: %w", err)
	}
	defer res.Body.Close()
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "text/event-stream" {
		return decodeAnswer(res, out) // refused before it ran: a JSON error
	}
	return readEventStream(res, onEvent, out)
}

// readEventStream reads the SSE answer of a streaming call.
func readEventStream(res *http.Response, onEvent func(Event), out any) error {
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 32<<20)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Kind = value
			case "data":
				data = append(data, value)
			}
			continue
		}
		if data == nil {
			continue // a comment (ping) or the retry line
		}
		ev.Data = json.RawMessage(strings.Join(data, "\n"))
		switch ev.Kind {
		case "result":
			return decodeResult(ev.Data, out)
		case "error":
			var e Error
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return fmt.Errorf("streamrpc: undecodable error event: %.200q", ev.Data)
			}
			e.Status = res.StatusCode
			return &e
		case EventRestart:
			var r struct {
				Attempt int `json:"attempt"`
			}
			_ = json.Unmarshal(ev.Data, &r)
			ev = Event{Kind: EventRestart, Attempt: r.Attempt}
		}
		if onEvent != nil {
			onEvent(ev)
		}
		ev, data = Event{}, nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("streamrpc: reading the event stream: %w", err)
	}
	return fmt.Errorf("streamrpc: the event stream ended without a result")
}

// callEvents buffers one WebSocket call's events between the connection's
// reader, which must not wait for a caller, and the caller's goroutine.
type callEvents struct {
	mu    sync.Mutex
	items []Event
	ready chan struct{} // one token
}

func (e *callEvents) push(ev Event) {
	e.mu.Lock()
	e.items = append(e.items, ev)
	e.mu.Unlock()
	select {
	case e.ready <- struct{}{}:
	default:
	}
}

func (e *callEvents) take() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	items := e.items
	e.items = nil
	return items
}

// progressParams are a $/progress notification's params.
type progressParams struct {
	ID      json.RawMessage `json:"id"`
	Kind    string          `json:"kind"`
	Seq     string          `json:"seq"`
	Attempt int             `json:"attempt"`
	Value   json.RawMessage `json:"value"`
}

// CallStream calls method like Call, and passes each $/progress event the
// edge sends for it to onEvent, in order, on the calling goroutine, before
// the final result is decoded into out. The socket must not be opened with
// ?progress=false.
func (w *WS) CallStream(ctx context.Context, method string, params any, onEvent func(Event), out any) error {
	evs := &callEvents{ready: make(chan struct{}, 1)}
	return w.call(ctx, method, params, out, evs, func() {
		for _, ev := range evs.take() {
			if onEvent != nil {
				onEvent(ev)
			}
		}
	})
}

// progress hands a $/progress notification to its call.
func (w *WS) progress(raw json.RawMessage) {
	var p progressParams
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	id, ok := parseID(p.ID)
	if !ok {
		return
	}
	w.mu.Lock()
	evs := w.events[id]
	w.mu.Unlock()
	if evs == nil {
		return
	}
	ev := Event{Kind: p.Kind, ID: p.Seq, Data: p.Value}
	if p.Kind == EventRestart {
		ev = Event{Kind: EventRestart, Attempt: p.Attempt}
	}
	evs.push(ev)
}
