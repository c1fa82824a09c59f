package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// What an operator does to a handler and its calls (the admin routes under
// /handlers/{name}): pause and resume it, cancel a queued or running call,
// run a delayed one now, purge the queue, replay or delete dead letters in
// bulk. Each action on a call lands in the call's story as an event of its
// own, whose Detail names who did it.

// settingPaused is the methods hash field that pauses a handler (its value:
// when, Unix ms). Consumers read it in their heartbeat's script, so a pause
// costs no round trip per call: a consumer stops taking calls at its next
// heartbeat, and a read already waiting returns within its read block.
const settingPaused = "$paused"

// Pause stops the handler's consumers from taking calls; the edge keeps
// queueing them. ErrNotFound for a handler no consumer registered.
func (c *Client) Pause(ctx context.Context, handler string) error {
	return c.setPaused(ctx, handler, true)
}

// Resume lets the handler's consumers take calls again.
func (c *Client) Resume(ctx context.Context, handler string) error {
	return c.setPaused(ctx, handler, false)
}

// pauseScript sets or clears a registered handler's paused flag.
//
//	KEYS[1] methods hash
//	ARGV[1] '1' to pause, '0' to resume, ARGV[2] now ms
//	returns 1, or 0 when the handler is not registered (nothing done)
var pauseScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], '` + settingPaused + `', ARGV[2])
else redis.call('HDEL', KEYS[1], '` + settingPaused + `') end
return 1
`)

func (c *Client) setPaused(ctx context.Context, handler string, paused bool) error {
	if err := ValidateName("handler", handler); err != nil {
		return err
	}
	flag := "0"
	if paused {
		flag = "1"
	}
	n, err := pauseScript.Run(ctx, c.rdb, []string{methodsKey(handler)}, flag, time.Now().UnixMilli()).Int64()
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return fmt.Errorf("%w: handler %q", ErrNotFound, handler)
	}
	return nil
}

// Operator events in a call's story.
const (
	EventCancelRequested = "cancel_requested" // an operator cancelled a running call
	EventCancelled       = "cancelled"        // an operator cancelled a queued call, or purged it
	EventRunNow          = "run_now"          // an operator moved a delayed call to the queue
	EventReplayed        = "replayed"         // an operator replayed the dead letter
	EventDeleted         = "deleted"          // an operator deleted the dead letter
)

// isOperatorEvent reports whether name is one of the operator events.
func isOperatorEvent(name string) bool {
	switch name {
	case EventCancelRequested, EventCancelled, EventRunNow, EventReplayed, EventDeleted:
		return true
	}
	return false
}

// placeOperatorEvents puts each operator event before the first other event
// that happened after it: a note on a running call is written before the
// consumer writes that attempt's events (when it settles). The others keep
// the order they were written in (the edge's and the consumers' clocks may
// disagree: they are not sorted).
func placeOperatorEvents(events []StoryEvent) []StoryEvent {
	var ops, rest []StoryEvent
	for _, e := range events {
		if isOperatorEvent(e.Event) {
			ops = append(ops, e)
		} else {
			rest = append(rest, e)
		}
	}
	if len(ops) == 0 {
		return events
	}
	out := make([]StoryEvent, 0, len(events))
	for _, e := range rest {
		for len(ops) > 0 && ops[0].Time.Before(e.Time) {
			out, ops = append(out, ops[0]), ops[1:]
		}
		out = append(out, e)
	}
	return append(out, ops...)
}

// storyNoteScript appends an operator's event to a call's story.
//
//	KEYS[1] story list
//	ARGV[1] the "queued" event, pushed first if the story is empty ('' for none)
//	ARGV[2] the event, ARGV[3] the story's TTL ms
//	returns 1
var storyNoteScript = redis.NewScript(`
if ARGV[1] ~= '' and redis.call('LLEN', KEYS[1]) == 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// storyNote is one operator event for a call's story.
type storyNote struct {
	id     string
	queued *StoryEvent // the call's queued event, when its story may be empty
	ev     StoryEvent
}

func queuedEventOf(call *Call) *StoryEvent {
	return &StoryEvent{Time: call.EnqueuedAt, Event: "queued", Params: call.Params, Detail: call.Caller,
		Handler: call.Handler, Method: call.Method, RequestID: call.RequestID}
}

// writeNotes appends the notes to their calls' stories in one pipeline;
// best effort, like the stories themselves.
func (c *Client) writeNotes(ctx context.Context, notes []storyNote) {
	if len(notes) == 0 {
		return
	}
	calls := make([]*scriptCall, len(notes))
	for i, n := range notes {
		q := any("")
		if n.queued != nil {
			q = mustJSON(n.queued)
		}
		calls[i] = &scriptCall{script: storyNoteScript, keys: []string{storyKey(n.id)},
			args: []any{q, mustJSON(n.ev), c.opts.ResultTTL.Milliseconds()}}
	}
	runScripts(ctx, c.rdb, calls)
}

func note(id, event, by string, call *Call) storyNote {
	n := storyNote{id: id, ev: StoryEvent{Time: time.Now(), Event: event, Detail: "by an operator" + byWhom(by)}}
	if call != nil {
		n.queued = queuedEventOf(call)
	}
	return n
}

func byWhom(by string) string {
	if by == "" {
		return ""
	}
	return " (" + by + ")"
}

// ErrNotCancellable is returned by CancelCall for a call that is neither
// queued nor running (settled, or waiting for a retry).
var ErrNotCancellable = errors.New("call is neither queued nor running")

// entry reads one stream entry of handler's queue; ErrNotFound if it is gone.
func (c *Client) entry(ctx context.Context, handler, streamID string) (*Call, error) {
	p, id := splitRef(streamID)
	msgs, err := c.rdb.XRange(ctx, priorityStreamKey(handler, p), id, id).Result()
	if redis.HasErrorPrefix(err, "Invalid stream ID") {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if len(msgs) == 0 {
		return nil, ErrNotFound
	}
	return decodeCall(handler, msgs[0].Values)
}

// CancelByOperator cancels call id, stream entry streamID of handler, for an
// operator (by names them in the story): a queued call is removed and its
// caller answered "cancelled"; a running one has its handler's context
// cancelled. It returns the state the call was in; ErrNotFound if the entry
// is gone or is another call's.
func (c *Client) CancelByOperator(ctx context.Context, handler, id, streamID, by string) (State, error) {
	call, err := c.entry(ctx, handler, streamID)
	if err != nil {
		return "", err
	}
	if call.ID != id {
		return "", fmt.Errorf("%w: stream entry %s is not call %s", ErrNotFound, streamID, id)
	}
	st, err := c.cancelEntries(ctx, handler, []*Call{call}, []string{streamID}, "cancelled by an operator"+byWhom(by))
	if err != nil {
		return "", err
	}
	switch st[0] {
	case StateQueued:
		c.writeNotes(ctx, []storyNote{note(id, EventCancelled, by, call)})
	case StateRunning:
		c.writeNotes(ctx, []storyNote{note(id, EventCancelRequested, by, nil)})
	default:
		return StateDone, ErrNotCancellable
	}
	return st[0], nil
}

// cancelEntries runs cancelScript for each entry in one pipeline and answers
// the waiting edges of those removed.
func (c *Client) cancelEntries(ctx context.Context, handler string, calls []*Call, streamIDs []string, why string) ([]State, error) {
	scs := make([]*scriptCall, len(calls))
	replies := make([][]byte, len(calls))
	for i, call := range calls {
		ttl := call.ResultTTL
		if ttl <= 0 {
			ttl = c.opts.ResultTTL
		}
		replies[i] = ErrorReply(call.ID, NewError(CodeCancelled, "the call was "+why)).encode()
		p, id := splitRef(streamIDs[i])
		scs[i] = &scriptCall{script: cancelScript, keys: []string{priorityStreamKey(handler, p), resultKey(call.ID)},
			args: []any{Group, id, call.ID, replies[i], ttl.Milliseconds(), cancelChannel(handler)}}
	}
	runScripts(ctx, c.rdb, scs)
	out := make([]State, len(calls))
	var answers edgeReplies
	for i, sc := range scs {
		res, err := sc.cmd.Text()
		switch {
		case redis.HasErrorPrefix(err, "NOGROUP"):
			res = "done"
		case err != nil:
			return nil, unavailable(err)
		}
		out[i] = State(res)
		if res == "queued" {
			answers.add(calls[i].ReplyTo, calls[i].ID, replies[i])
		} else if res != "running" {
			out[i] = StateDone
		}
	}
	c.publishReplies(ctx, answers)
	return out, nil
}

// Purge cancels up to limit of handler's queued calls (not those running),
// oldest first, for an operator: each is answered "cancelled" and its story
// says it was purged. It returns how many were removed. An entry that cannot
// be decoded is left for a consumer to move to the dead letters.
func (c *Client) Purge(ctx context.Context, handler, by string, limit int64) (int64, error) {
	if err := ValidateName("handler", handler); err != nil {
		return 0, err
	}
	var n int64
	after := "0-0"
	for n < limit {
		last, _, err := c.lastDelivered(ctx, handler)
		if err != nil {
			return n, err
		}
		if StreamIDLess(after, last) {
			after = last
		}
		msgs, err := c.rdb.XRangeN(ctx, callsKey(handler), "("+after, "+", min(256, limit-n)).Result()
		if err != nil {
			return n, unavailable(err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		after = msgs[len(msgs)-1].ID
		var calls []*Call
		var ids []string
		for _, m := range msgs {
			if call, derr := decodeCall(handler, m.Values); derr == nil {
				calls, ids = append(calls, call), append(ids, m.ID)
			}
		}
		st, err := c.cancelEntries(ctx, handler, calls, ids, "purged from the queue by an operator"+byWhom(by))
		if err != nil {
			return n, err
		}
		var notes []storyNote
		for i, s := range st {
			if s == StateQueued {
				n++
				nt := note(calls[i].ID, EventCancelled, by, calls[i])
				nt.ev.Detail = "purged from the queue " + nt.ev.Detail
				notes = append(notes, nt)
			}
		}
		c.writeNotes(ctx, notes)
	}
	return n, nil
}

// runNowScript moves one call from the delayed set to the queue.
//
//	KEYS[1] delayed set, KEYS[2] calls stream
//	ARGV[1] the call id, as it is written in the member's JSON ("id","<id>")
//	returns the member moved, or false if no member holds the call
var runNowScript = redis.NewScript(`
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.find(m, ARGV[1], 1, true) then
    redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(m)))
    redis.call('ZREM', KEYS[1], m)
    return m
  end
end
return false
`)

// RunNow moves delayed call id of handler to the queue at once, for an
// operator; ErrNotFound if it is not waiting for a retry.
func (c *Client) RunNow(ctx context.Context, handler, id, by string) error {
	if err := ValidateName("handler", handler); err != nil {
		return err
	}
	m, err := runNowScript.Run(ctx, c.rdb, []string{delayedKey(handler), callsKey(handler)}, `"id","`+id+`"`).Text()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: call %s is not waiting for a retry", ErrNotFound, id)
	}
	if err != nil {
		return unavailable(err)
	}
	call, _ := decodeDelayedMember(handler, m)
	c.writeNotes(ctx, []storyNote{note(id, EventRunNow, by, call)})
	return nil
}

// DeadLetterAction is what an operator does to a dead letter.
type DeadLetterAction string

// The actions on dead letters.
const (
	ActionReplay DeadLetterAction = "replay"
	ActionDelete DeadLetterAction = "delete"
)

// BulkResult is one dead letter's fate in a bulk action.
type BulkResult struct {
	DeadLetterID string `json:"dead_letter_id"`
	ID           string `json:"id,omitempty"` // the call's id
	OK           bool   `json:"ok"`
	Error        string `json:"error,omitempty"` // why not, when not OK
}

// DeadLettersAct replays or deletes the dead letters listed (by dead-letter
// id), for an operator, and notes it in each call's story.
func (c *Client) DeadLettersAct(ctx context.Context, handler string, action DeadLetterAction, ids []string, deadline time.Time, by string) ([]BulkResult, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	out := make([]BulkResult, len(ids))
	var notes []storyNote
	for i, dlid := range ids {
		out[i].DeadLetterID = dlid
		if !isStreamID(dlid) {
			out[i].Error = "not a dead-letter id"
			continue
		}
		callID := ""
		if msgs, err := c.rdb.XRange(ctx, deadKey(handler), dlid, dlid).Result(); err == nil && len(msgs) == 1 {
			callID, _ = msgs[0].Values[fieldID].(string)
		}
		// The note's time is the action's start: a replayed call may start
		// (and its story grow) before the action returns.
		at := time.Now()
		var err error
		switch action {
		case ActionReplay:
			_, err = c.ReplayDeadLetter(ctx, handler, dlid, deadline)
		case ActionDelete:
			err = c.DeleteDeadLetter(ctx, handler, dlid)
		default:
			return nil, fmt.Errorf("%w: action %q is not replay or delete", ErrBadQuery, action)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			out[i].Error = "no such dead letter"
		case err != nil:
			return out, err
		default:
			out[i].OK, out[i].ID = true, callID
			if _, herr := ValidateCallID(callID); herr == nil {
				ev := EventReplayed
				if action == ActionDelete {
					ev = EventDeleted
				}
				n := note(callID, ev, by, nil)
				n.ev.Time = at
				notes = append(notes, n)
			}
		}
	}
	c.writeNotes(ctx, notes)
	return out, nil
}

// NoteDeadLetter notes an operator's replay or delete of one dead letter,
// made at time at, in its call's story (the single-letter routes).
func (c *Client) NoteDeadLetter(ctx context.Context, callID string, action DeadLetterAction, by string, at time.Time) {
	if _, err := ValidateCallID(callID); err != nil {
		return
	}
	ev := EventReplayed
	if action == ActionDelete {
		ev = EventDeleted
	}
	n := note(callID, ev, by, nil)
	n.ev.Time = at
	c.writeNotes(ctx, []storyNote{n})
}
