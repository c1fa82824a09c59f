package streams

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// State is where a call is in its life.
type State string

// The states a call can be in, as GET /rpc/calls/{id} reports them.
const (
	StateQueued    State = "queued"    // in the stream, or waiting for a retry
	StateRunning   State = "running"   // taken by a consumer
	StateDone      State = "done"      // answered with a result
	StateFailed    State = "failed"    // answered with an error
	StateDead      State = "dead"      // failed every attempt: in the dead letters
	StateCancelled State = "cancelled" // cancelled by its caller
)

// Until a call is answered, its result key (for async calls) holds
// "q<handler> <stream entry id>": where to look for it.
func queuedState(handler, streamID string) string { return "q" + handler + " " + streamID }

func parseQueuedState(v string) (handler, streamID string, ok bool) {
	if len(v) < 2 || v[0] != 'q' {
		return "", "", false
	}
	return strings.Cut(v[1:], " ")
}

// CallStatus is what is known of a call by its id.
type CallStatus struct {
	ID       string    `json:"id"`
	State    State     `json:"state"`
	Handler  string    `json:"handler,omitempty"`   // while queued or running
	StreamID string    `json:"stream_id,omitempty"` // while queued or running: a reference (priority.go)
	Priority string    `json:"priority,omitempty"`  // while queued or running
	Consumer string    `json:"consumer,omitempty"`  // while running: who runs it
	Due      time.Time `json:"-"`                   // while scheduled: when it is due
	Reply    Reply     `json:"-"`                   // once answered
}

// Final reports whether the call has its outcome.
func (s CallStatus) Final() bool {
	return s.State != StateQueued && s.State != StateRunning && s.State != StateScheduled
}

// CallStatus returns what is known of call id: the reply once it is
// answered; queued or running before that for async calls. ErrNotFound for an
// unknown or expired id (and for a sync call still in flight).
func (c *Client) CallStatus(ctx context.Context, id string) (CallStatus, error) {
	if _, err := ValidateCallID(id); err != nil {
		return CallStatus{}, err
	}
	v, err := c.rdb.Get(ctx, resultKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return CallStatus{}, ErrNotFound
	}
	if err != nil {
		return CallStatus{}, unavailable(err)
	}
	if handler, streamID, ok := parseQueuedState(v); ok {
		st := CallStatus{ID: id, State: StateQueued, Handler: handler, StreamID: streamID}
		prio, entry := splitRef(streamID)
		st.Priority = prio.String()
		p, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: priorityStreamKey(handler, prio), Group: Group, Start: entry, End: entry, Count: 1,
		}).Result()
		if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
			return CallStatus{}, unavailable(err)
		}
		if len(p) == 1 {
			st.State, st.Consumer = StateRunning, p[0].Consumer
		}
		return st, nil
	}
	if handler, due, ok := parseScheduledState(v); ok {
		return CallStatus{ID: id, State: StateScheduled, Handler: handler, Due: due}, nil
	}
	r, err := decodeReply(id, v)
	if err != nil {
		return CallStatus{}, err
	}
	return CallStatus{ID: id, State: replyState(r), Reply: r}, nil
}

func replyState(r Reply) State {
	if r.OK {
		return StateDone
	}
	switch r.Err().Code {
	case CodeDeadLettered:
		return StateDead
	case CodeCancelled:
		return StateCancelled
	}
	return StateFailed
}

// cancelScript cancels a call: one no consumer has taken yet is removed from
// the stream and answered as cancelled; for one that is running, its
// handler's consumers are told on the handler's cancel channel.
//
//	KEYS[1] calls stream, KEYS[2] result key
//	ARGV[1] group, ARGV[2] stream entry id, ARGV[3] call id,
//	ARGV[4] the encoded cancelled reply, ARGV[5] result TTL ms, ARGV[6] cancel channel
//	returns 'queued' (removed, never to run), 'running' (consumers told), or
//	'done' (already settled, or waiting for a retry: it will run)
var cancelScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then
  if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
    return 'queued'
  end
  return 'done'
end
redis.call('PUBLISH', ARGV[6], ARGV[3])
return 'running'
`)

// Cancel cancels call id, stream entry streamID (a reference: priority.go) of handler. It returns the
// state the call was in: StateQueued (it will never run), StateRunning (its
// handler's context is being cancelled), or StateDone (too late).
func (c *Client) Cancel(ctx context.Context, handler, id, streamID string, resultTTL time.Duration) (State, error) {
	if resultTTL <= 0 {
		resultTTL = c.opts.ResultTTL
	}
	reply := ErrorReply(id, NewError(CodeCancelled, "the call was cancelled by its caller"))
	prio, entry := splitRef(streamID)
	res, err := cancelScript.Run(ctx, c.rdb, []string{priorityStreamKey(handler, prio), resultKey(id)},
		Group, entry, id, reply.encode(), resultTTL.Milliseconds(), cancelChannel(handler)).Text()
	if err != nil {
		if redis.HasErrorPrefix(err, "NOGROUP") {
			return StateDone, nil
		}
		return "", unavailable(err)
	}
	switch res {
	case "queued":
		return StateQueued, nil
	case "running":
		return StateRunning, nil
	}
	return StateDone, nil
}

// WatchCancels calls fn with the id of each call of handler that a caller
// cancels while it runs, until ctx ends; ready, if not nil, once Redis has
// confirmed the subscription. It holds one connection (a
// subscription) per consumer process, not per call, and resubscribes after
// a Redis outage by itself.
func (c *Client) WatchCancels(ctx context.Context, handler string, ready func(), fn func(id string)) error {
	sub := c.rdb.Subscribe(ctx, cancelChannel(handler))
	defer sub.Close()
	// A cancel published before Redis confirms the subscription is not
	// delivered: say when it is confirmed, so that a consumer takes calls only
	// once it can hear their cancels.
	if _, err := sub.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return unavailable(err)
	}
	if ready != nil {
		ready()
	}
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			fn(m.Payload)
		}
	}
}
