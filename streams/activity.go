package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The activity feed (the latest settled calls, and a cursor that follows it)
// and each call's story.

// Activity returns the latest settled calls of handler ("" for all
// handlers), newest first.
func (c *Client) Activity(ctx context.Context, handler string, limit int64) ([]Activity, error) {
	names := []string{handler}
	if handler == "" {
		var err error
		if names, err = c.Handlers(ctx); err != nil {
			return nil, err
		}
	} else if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.XRevRangeN(ctx, activityKey(n), "+", "-", limit)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	var out []Activity
	for _, cmd := range cmds {
		for _, m := range cmd.Val() {
			if a, ok := decodeActivity(m); ok {
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	if int64(len(out)) > limit {
		out = out[:limit]
	}
	return out, nil
}

func decodeActivity(m redis.XMessage) (Activity, bool) {
	s, _ := m.Values["a"].(string)
	var a Activity
	if json.Unmarshal([]byte(s), &a) != nil {
		return a, false
	}
	a.Pos = m.ID
	return a, true
}

// ActivityCursor reads activity after given stream ids, for a live feed: it
// holds no connection between reads.
type ActivityCursor struct {
	c     *Client
	start string            // stream id of the cursor's creation: where a new handler is read from
	last  map[string]string // handler -> last stream id seen
}

// activityPoll is how often Next looks for new activity while it waits. The
// recorder writes activity at most every flushInterval, so polling a little
// more often than that shows every flush promptly. (One blocking XREAD over
// every handler's stream would be a cross-slot command on Redis Cluster.)
const activityPoll = 250 * time.Millisecond

// NewActivityCursor starts a cursor at the present: it returns only
// activity that happens after it was made.
func (c *Client) NewActivityCursor() *ActivityCursor {
	return &ActivityCursor{c: c, start: strconv.FormatInt(time.Now().UnixMilli(), 10) + "-0", last: map[string]string{}}
}

// NewActivityCursorAfter starts a cursor after pos, an Activity.Pos it
// returned before (a reconnecting live feed's Last-Event-ID): it returns the
// activity recorded after pos in every handler's stream, then what follows.
// A pos that is not a stream id ("ms-seq"), or is older than the streams
// keep (their last 1000 entries each), starts where the streams do; one in
// the future starts at the present.
func (c *Client) NewActivityCursorAfter(pos string) (*ActivityCursor, error) {
	id, ok := parseStreamID(pos)
	if !ok {
		return nil, fmt.Errorf("%w: activity position %q is not a stream id", ErrInvalidName, pos)
	}
	if now := uint64(time.Now().UnixMilli()); id.ms > now {
		return c.NewActivityCursor(), nil
	}
	return &ActivityCursor{c: c, start: pos, last: map[string]string{}}, nil
}

// StreamIDLess orders stream ids ("ms-seq"), such as Activity.Pos, numerically.
func StreamIDLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as < bs
}

// Next returns the activity since the last call (oldest first), waiting up to
// block for some; handlers registered since are picked up.
func (a *ActivityCursor) Next(ctx context.Context, block time.Duration) ([]Activity, error) {
	deadline := time.Now().Add(block)
	for {
		out, err := a.poll(ctx)
		if err != nil || len(out) > 0 {
			return out, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, nil
		}
		t := time.NewTimer(min(wait, activityPoll))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		}
	}
}

// poll reads every handler's new activity without blocking: one XRANGE per
// handler, all in one pipeline (which Redis Cluster clients split by node).
func (a *ActivityCursor) poll(ctx context.Context) ([]Activity, error) {
	names, err := a.c.Handlers(ctx)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	pipe := a.c.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(names))
	for i, n := range names {
		after, ok := a.last[n]
		if !ok {
			after = a.start
		}
		cmds[i] = pipe.XRangeN(ctx, activityKey(n), "("+after, "+", 256)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	var out []Activity
	for i, cmd := range cmds {
		for _, m := range cmd.Val() {
			a.last[names[i]] = m.ID
			if act, ok := decodeActivity(m); ok {
				out = append(out, act)
			}
		}
	}
	// In stream order, so that the last one returned is where a cursor
	// made with NewActivityCursorAfter resumes.
	sort.Slice(out, func(i, j int) bool { return StreamIDLess(out[i].Pos, out[j].Pos) })
	return out, nil
}

// Story returns the events recorded for call id (empty while it has not been
// settled once).
func (c *Client) Story(ctx context.Context, id string) ([]StoryEvent, error) {
	if _, err := ValidateCallID(id); err != nil {
		return nil, err
	}
	raw, err := c.rdb.LRange(ctx, storyKey(id), 0, -1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	events := make([]StoryEvent, 0, len(raw))
	for _, r := range raw {
		var e StoryEvent
		if json.Unmarshal([]byte(r), &e) == nil {
			events = append(events, e)
		}
	}
	return placeOperatorEvents(events), nil
}

// CallStory returns a call's status with its story; ErrNotFound as CallStatus.
func (c *Client) CallStory(ctx context.Context, id string) (CallStory, error) {
	st, err := c.CallStatus(ctx, id)
	if err != nil {
		return CallStory{}, err
	}
	events, err := c.Story(ctx, id)
	if err != nil {
		return CallStory{}, err
	}
	cs := CallStory{CallStatus: st, Events: events}
	for _, e := range events {
		if e.Event == "queued" {
			cs.Params, cs.Method = e.Params, e.Method
			if cs.Handler == "" {
				cs.Handler = e.Handler
			}
		}
	}
	if st.Final() {
		if st.Reply.OK {
			cs.Result = st.Reply.Body
		} else {
			cs.Error = st.Reply.Err()
		}
	}
	return cs, nil
}
