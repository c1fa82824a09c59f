package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Streamed results: progress values and partial results a handler sends
// before its final reply (docs/streaming.md).
//
// A call a caller waits for on an edge (ReplyTo set) gets its events on that
// edge's reply stream, in the entries that carry replies: field
// "~<call id>", value the call's events of that batch, in order (an entry's
// fields are a map once read, so one field holds them all). The final reply
// is appended after the last event, by the answer that settles the call, so
// an edge reads every event before the reply.
//
// An async call (no ReplyTo) keeps its events in a stream of its own,
// srpc:{h}:events:<ulid>, capped and kept for the result TTL, whose entry
// ids are the events' ids "<attempt>-<seq>": GET /rpc/calls/{id}/events
// resumes from a Last-Event-ID by reading after it.

// EventKind is what a streamed event carries.
type EventKind byte

const (
	// EventProgress is a progress value: the latest one counts, and
	// progress may be coalesced (one sent where several were made).
	EventProgress EventKind = 'g'
	// EventPartial is a partial result: all are delivered, in order.
	EventPartial EventKind = 'p'
)

// String is the kind's name on the wire (SSE event names).
func (k EventKind) String() string {
	if k == EventProgress {
		return "progress"
	}
	return "partial"
}

// Event is one streamed event of a call's attempt. Seq counts the events an
// attempt sent, from 1, without gaps: a reader that sees one knows an event
// was lost (see EventOrder).
type Event struct {
	Kind    EventKind
	Attempt int
	Seq     int64
	Data    json.RawMessage
}

// ID is the event's id, "<attempt>-<seq>": increasing over a call's life
// (a later attempt's events sort after the earlier one's), the SSE id.
func (e Event) ID() string {
	return strconv.Itoa(e.Attempt) + "-" + strconv.FormatInt(e.Seq, 10)
}

// ParseEventID reads an id made by Event.ID.
func ParseEventID(s string) (attempt int, seq int64, ok bool) {
	a, q, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	an, err1 := strconv.Atoi(a)
	qn, err2 := strconv.ParseInt(q, 10, 64)
	if err1 != nil || err2 != nil || an < 1 || qn < 0 {
		return 0, 0, false
	}
	return an, qn, true
}

// eventField is the reply stream field of a call's events: a call id never
// starts with '~'.
const eventField = "~"

// appendEvents encodes events as "<kind><attempt>,<seq>,<len>:<data>", one
// after the other.
func appendEvents(b []byte, events []Event) []byte {
	for _, e := range events {
		b = append(b, byte(e.Kind))
		b = strconv.AppendInt(b, int64(e.Attempt), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, e.Seq, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(len(e.Data)), 10)
		b = append(b, ':')
		b = append(b, e.Data...)
	}
	return b
}

// decodeEvents reads what appendEvents wrote.
func decodeEvents(v string) ([]Event, error) {
	bad := fmt.Errorf("%w: malformed streamed events", ErrBadEnvelope)
	var out []Event
	for len(v) > 0 {
		kind := EventKind(v[0])
		if kind != EventProgress && kind != EventPartial {
			return nil, bad
		}
		head, rest, ok := strings.Cut(v[1:], ":")
		if !ok {
			return nil, bad
		}
		parts := strings.SplitN(head, ",", 3)
		if len(parts) != 3 {
			return nil, bad
		}
		a, err1 := strconv.Atoi(parts[0])
		seq, err2 := strconv.ParseInt(parts[1], 10, 64)
		n, err3 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || err3 != nil || n < 0 || n > len(rest) {
			return nil, bad
		}
		out = append(out, Event{Kind: kind, Attempt: a, Seq: seq, Data: json.RawMessage(rest[:n])})
		v = rest[n:]
	}
	return out, nil
}

// EventOrder checks a call's events as a reader receives them: in order,
// one attempt at a time. Its zero value is ready.
type EventOrder struct {
	attempt int
	seq     int64
}

// Next places e: restart is true when e is the first of a later attempt
// (the events before it came from an attempt that did not finish: a caller
// must drop them), lost when events are missing before e (or e is a repeat:
// stale is then true and e is to be skipped).
func (o *EventOrder) Next(e Event) (restart, lost, stale bool) {
	switch {
	case e.Attempt < o.attempt || e.Attempt == o.attempt && e.Seq <= o.seq:
		return false, false, true
	case e.Attempt > o.attempt:
		restart = o.attempt != 0
		lost = e.Seq != 1
	default:
		lost = e.Seq != o.seq+1
	}
	o.attempt, o.seq = e.Attempt, e.Seq
	return restart, lost, false
}

// Attempt is the attempt of the last event placed (0: none yet).
func (o *EventOrder) Attempt() int { return o.attempt }

// Emission is a batch of one call's events, in order.
type Emission struct {
	CallID  string
	ReplyTo string        // the edge waiting for the call; "" for an async call
	TTL     time.Duration // an async call's events are kept this long
	Events  []Event
	// MaxEvents caps an async call's events stream (its partials fit).
	MaxEvents int64
}

// emitOp is an emission waiting in the emit batcher.
type emitOp struct {
	pending
	e *Emission
}

// Emit appends a call's events for its caller. Emissions of many calls made
// at the same time share one pipeline, with one XADD per edge: a stream of
// events costs a round trip per batch, not per event. Emissions of one call
// must not overlap (wait for one before the next), which keeps them in order.
// A reply stream that no longer exists (its edge is gone) is not recreated.
func (c *Client) Emit(ctx context.Context, e *Emission) error {
	if len(e.Events) == 0 {
		return nil
	}
	if err := c.emits.do(ctx, &emitOp{e: e}); err != nil {
		return unavailable(err)
	}
	return nil
}

func (c *Client) sendEmissions(ctx context.Context, batch []*emitOp) {
	pipe := c.rdb.Pipeline()
	var edges edgeReplies
	// cmds[i] are op i's own commands (an async call's); the edges' XADDs
	// are shared, and their failure fails every op that went to them.
	cmds := make([][]redis.Cmder, len(batch))
	for i, o := range batch {
		e := o.e
		if e.ReplyTo != "" {
			edges.add(e.ReplyTo, eventField+e.CallID, appendEvents(nil, e.Events))
			continue
		}
		key := eventsKey(e.CallID)
		for _, ev := range e.Events {
			// The id is the event's: an attempt's events sort after the
			// earlier attempt's, and a zombie consumer's late ones are refused
			// by Redis (an id at or below the last), which is what we want.
			cmds[i] = append(cmds[i], pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: key, ID: ev.ID(), MaxLen: e.MaxEvents, Approx: true,
				Values: []any{"k", string(ev.Kind), "d", []byte(ev.Data)},
			}))
		}
		cmds[i] = append(cmds[i], pipe.PExpire(ctx, key, e.TTL))
	}
	edgeCmds := make(map[string]redis.Cmder, len(edges.edges))
	for _, ed := range edges.edges {
		edgeCmds[ed] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: replyKey(ed), NoMkStream: true, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: edges.pairs[ed],
		})
	}
	_, _ = pipe.Exec(ctx) // errors are on each command
	for i, o := range batch {
		var err error
		if o.e.ReplyTo != "" {
			if err = edgeCmds[o.e.ReplyTo].Err(); errors.Is(err, redis.Nil) {
				err = nil // the edge is gone: nobody to stream to
			}
		}
		for _, cmd := range cmds[i] {
			if cerr := cmd.Err(); cerr != nil && !redis.HasErrorPrefix(cerr, "ERR The ID specified") {
				err = cerr
				break
			}
		}
		o.complete(err)
	}
}

// CallEvents reads up to count events of async call id after event id after
// ("" from the start), from its events stream. Nothing (and no error) for a
// call that sent none, or whose events expired.
func (c *Client) CallEvents(ctx context.Context, id, after string, count int64) ([]Event, error) {
	if _, err := ValidateCallID(id); err != nil {
		return nil, err
	}
	start := "-"
	if after != "" {
		a, s, ok := ParseEventID(after)
		if !ok {
			return nil, fmt.Errorf("%w: event id %q is not <attempt>-<seq>", ErrInvalidName, after)
		}
		start = "(" + strconv.Itoa(a) + "-" + strconv.FormatInt(s, 10)
	}
	msgs, err := c.rdb.XRangeN(ctx, eventsKey(id), start, "+", count).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		a, s, ok := ParseEventID(m.ID)
		k, _ := m.Values["k"].(string)
		d, _ := m.Values["d"].(string)
		if !ok || len(k) != 1 {
			continue
		}
		out = append(out, Event{Kind: EventKind(k[0]), Attempt: a, Seq: s, Data: json.RawMessage(d)})
	}
	return out, nil
}
