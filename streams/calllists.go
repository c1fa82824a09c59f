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

// A handler's calls by state, for operators: GET /handlers/{name}/calls.
// Each state has its lister (callListers); a lister reads one page from the
// key that holds the calls in that state, filters it by method (and outcome)
// and says where the next page starts. The cursor is the lister's own.

// ListedCall is one call in a state list. Which fields are set depends on
// the state (see docs/http-api.md).
type ListedCall struct {
	ID         string          `json:"id"`
	Handler    string          `json:"handler"`
	Method     string          `json:"method"`
	State      string          `json:"state"`
	Params     json.RawMessage `json:"params,omitempty"`
	EnqueuedAt time.Time       `json:"enqueued_at,omitzero"`
	Attempt    int             `json:"attempt,omitempty"`
	// queued: 1 for the next call a consumer takes.
	Position int64 `json:"position,omitempty"`
	// queued and running: the stream entry (the cancel route's stream_id).
	StreamID string `json:"stream_id,omitempty"`
	// running: who holds it, how often it was handed out, and when it was
	// last taken or its lease renewed (Redis keeps no start time).
	Consumer   string    `json:"consumer,omitempty"`
	Deliveries int64     `json:"deliveries,omitempty"`
	LeasedAt   time.Time `json:"leased_at,omitzero"`
	// delayed: when it runs again and why the last attempt failed.
	DueAt     time.Time `json:"due_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// dead: the dead letter (for replay and delete).
	DeadLetter *DeadLetter `json:"dead_letter,omitempty"`
	// done, failed, cancelled: the settled attempt from the activity record.
	Outcome    string    `json:"outcome,omitempty"`
	DurationMS float64   `json:"duration_ms,omitempty"`
	SettledAt  time.Time `json:"settled_at,omitzero"`
}

// CallQuery selects a page of one state list.
type CallQuery struct {
	State   string // one of CallListStates
	Method  string // "" for all
	Outcome string // done/failed/cancelled lists only: one activity outcome, "" for all of the state's
	Limit   int64  // 1..1000
	Cursor  string // "" for the first page; CallPage.Next of the previous one
}

// CallPage is one page of a state list.
type CallPage struct {
	State string       `json:"state"`
	Calls []ListedCall `json:"calls"`
	// Next is the cursor of the next page, "" when this is the last.
	Next string `json:"next_cursor,omitempty"`
	// Total is how many calls are in the state (before the method filter),
	// when Redis can count them cheaply; -1 otherwise.
	Total int64 `json:"total"`
}

// ErrBadQuery is returned for an unknown state, outcome or a malformed cursor.
var ErrBadQuery = errors.New("bad call query")

// callLister reads one page of a state list.
type callLister func(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error)

// callListers is every state list, by the state's name. A new state is one
// more entry.
var callListers = map[string]callLister{
	"queued":    listQueued,
	"running":   listRunning,
	"scheduled": listScheduled,
	"delayed":   listDelayed,
	"dead":      listDead,
	"done":      listSettled(OutcomeOK),
	"failed":    listSettled(OutcomeError, OutcomeTimeout, OutcomeDead),
	"cancelled": listSettled(OutcomeCancelled),
}

// CallListStates are the states ListCalls knows, in the order the dashboard
// shows them.
func CallListStates() []string {
	order := []string{"queued", "running", "scheduled", "delayed", "dead", "done", "failed", "cancelled"}
	out := make([]string, 0, len(order))
	for _, s := range order {
		if _, ok := callListers[s]; ok {
			out = append(out, s)
		}
	}
	return out
}

// scanBudget bounds how many entries one page reads while a filter skips
// them: a page of a filtered list may come back short, with a cursor.
const scanBudget = 10

// ListCalls returns one page of handler's calls in q.State.
func (c *Client) ListCalls(ctx context.Context, handler string, q CallQuery) (CallPage, error) {
	if err := ValidateName("handler", handler); err != nil {
		return CallPage{}, err
	}
	l, ok := callListers[q.State]
	if !ok {
		return CallPage{}, fmt.Errorf("%w: state %q is not one of %s", ErrBadQuery, q.State, strings.Join(CallListStates(), ", "))
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	p, err := l(ctx, c, handler, q)
	if p.Calls == nil {
		p.Calls = []ListedCall{}
	}
	p.State = q.State
	return p, err
}

func listedOf(call *Call, state string) ListedCall {
	return ListedCall{
		ID: call.ID, Handler: call.Handler, Method: call.Method, State: state, Params: call.Params,
		EnqueuedAt: call.EnqueuedAt, Attempt: max(call.Attempt, 1),
	}
}

// lastDelivered is the id of the last entry the group handed out: entries
// after it are queued, the others (settled ones are deleted) are running.
func (c *Client) lastDelivered(ctx context.Context, handler string) (string, int64, error) {
	groups, err := c.rdb.XInfoGroups(ctx, callsKey(handler)).Result()
	if err != nil && !redis.HasErrorPrefix(err, "ERR no such key") {
		return "", 0, unavailable(err)
	}
	for _, g := range groups {
		if g.Name == Group {
			return g.LastDeliveredID, g.Lag, nil
		}
	}
	return "0-0", -1, nil
}

// listQueued pages the stream after the group's last delivered entry. Its
// cursor is "<stream id>/<position of that entry>".
func listQueued(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
	last, lag, err := c.lastDelivered(ctx, handler)
	if err != nil {
		return CallPage{}, err
	}
	start, pos := "("+last, int64(0)
	if q.Cursor != "" {
		id, p, ok := strings.Cut(q.Cursor, "/")
		n, perr := strconv.ParseInt(p, 10, 64)
		if !ok || perr != nil || !isStreamID(id) {
			return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
		}
		if StreamIDLess(last, id) {
			start, pos = "("+id, n
		}
	}
	page := CallPage{Total: lag}
	msgs, err := c.rdb.XRangeN(ctx, callsKey(handler), start, "+", q.Limit*scanBudget).Result()
	if err != nil {
		return CallPage{}, unavailable(err)
	}
	for i, m := range msgs {
		pos++
		call, derr := decodeCall(handler, m.Values)
		if derr != nil || (q.Method != "" && call.Method != q.Method) {
			continue
		}
		lc := listedOf(call, "queued")
		lc.Position, lc.StreamID = pos, m.ID
		page.Calls = append(page.Calls, lc)
		if int64(len(page.Calls)) == q.Limit {
			if i < len(msgs)-1 || int64(len(msgs)) == q.Limit*scanBudget {
				page.Next = m.ID + "/" + strconv.FormatInt(pos, 10)
			}
			return page, nil
		}
	}
	if n := len(msgs); int64(n) == q.Limit*scanBudget {
		page.Next = msgs[n-1].ID + "/" + strconv.FormatInt(pos, 10)
	}
	return page, nil
}

// listRunning pages the group's pending entries. Its cursor is the last
// stream id listed.
func listRunning(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
	start := "-"
	if q.Cursor != "" {
		if !isStreamID(q.Cursor) {
			return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
		}
		start = "(" + q.Cursor
	}
	pend, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: callsKey(handler), Group: Group, Start: start, End: "+", Count: q.Limit * scanBudget,
	}).Result()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return CallPage{Total: 0}, nil
	}
	if err != nil {
		return CallPage{}, unavailable(err)
	}
	page := CallPage{Total: -1}
	if len(pend) == 0 {
		return page, nil
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(pend))
	for i, p := range pend {
		cmds[i] = pipe.XRange(ctx, callsKey(handler), p.ID, p.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return CallPage{}, unavailable(err)
	}
	now := time.Now()
	for i, p := range pend {
		msgs := cmds[i].Val()
		if len(msgs) == 0 {
			continue // settled meanwhile
		}
		call, derr := decodeCall(handler, msgs[0].Values)
		if derr != nil || (q.Method != "" && call.Method != q.Method) {
			continue
		}
		lc := listedOf(call, "running")
		lc.StreamID, lc.Consumer, lc.Deliveries = p.ID, p.Consumer, p.RetryCount
		lc.Attempt = call.Attempt + int(max(p.RetryCount, 1)) - 1
		lc.LeasedAt = now.Add(-p.Idle)
		page.Calls = append(page.Calls, lc)
		if int64(len(page.Calls)) == q.Limit {
			page.Next = p.ID
			return page, nil
		}
	}
	if int64(len(pend)) == q.Limit*scanBudget {
		page.Next = pend[len(pend)-1].ID
	}
	return page, nil
}

// listDelayed pages the delayed set by due time, soonest first, with each
// call's last error from its story. Its cursor is the offset in the set.
// Scheduled calls share the set (their members are ids, not envelopes):
// they are skipped, and not counted in the total.
func listDelayed(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
	page, err := c.listDelayedSet(ctx, handler, "delayed", delayedKey(handler), q)
	if err == nil {
		if n, serr := c.Scheduled(ctx, handler); serr == nil {
			page.Total = max(page.Total-n, 0)
		}
	}
	return page, err
}

// listScheduled pages the calls waiting for their scheduled time (schedule.go),
// soonest first. Its cursor is ScheduledCalls'.
func listScheduled(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
	calls, next, err := c.ScheduledCalls(ctx, handler, q.Cursor, int(q.Limit))
	if errors.Is(err, ErrInvalidName) {
		return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
	}
	if err != nil {
		return CallPage{}, err
	}
	total, err := c.Scheduled(ctx, handler)
	if err != nil {
		return CallPage{}, err
	}
	page := CallPage{Total: total, Next: next, Calls: []ListedCall{}}
	for _, sc := range calls {
		if q.Method != "" && sc.Method != q.Method {
			continue
		}
		page.Calls = append(page.Calls, ListedCall{ID: sc.ID, Handler: handler, Method: sc.Method, State: string(StateScheduled), DueAt: sc.Due})
	}
	return page, nil
}

func (c *Client) listDelayedSet(ctx context.Context, handler, state, key string, q CallQuery) (CallPage, error) {
	var off int64
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || n < 0 {
			return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
		}
		off = n
	}
	pipe := c.rdb.Pipeline()
	total := pipe.ZCard(ctx, key)
	members := pipe.ZRangeWithScores(ctx, key, off, off+q.Limit*scanBudget-1)
	if _, err := pipe.Exec(ctx); err != nil {
		return CallPage{}, unavailable(err)
	}
	page := CallPage{Total: total.Val()}
	zs := members.Val()
	var keep []ListedCall
	for i, z := range zs {
		call, ok := decodeDelayedMember(handler, z.Member)
		if !ok || (q.Method != "" && call.Method != q.Method) {
			continue
		}
		lc := listedOf(call, state)
		lc.DueAt = time.UnixMilli(int64(z.Score))
		keep = append(keep, lc)
		if int64(len(keep)) == q.Limit {
			if off+int64(i)+1 < page.Total {
				page.Next = strconv.FormatInt(off+int64(i)+1, 10)
			}
			break
		}
	}
	if page.Next == "" && int64(len(keep)) < q.Limit && int64(len(zs)) == q.Limit*scanBudget {
		page.Next = strconv.FormatInt(off+int64(len(zs)), 10)
	}
	// The last error is in the story's last event ("retried", its detail).
	if len(keep) > 0 {
		pipe := c.rdb.Pipeline()
		last := make([]*redis.StringCmd, len(keep))
		for i := range keep {
			last[i] = pipe.LIndex(ctx, storyKey(keep[i].ID), -1)
		}
		_, _ = pipe.Exec(ctx) // best effort: a story may have expired
		for i := range keep {
			var ev StoryEvent
			if json.Unmarshal([]byte(last[i].Val()), &ev) == nil {
				keep[i].LastError, _, _ = strings.Cut(ev.Detail, "; next attempt at ")
			}
		}
	}
	page.Calls = keep
	return page, nil
}

// decodeDelayedMember decodes a delayed set member: the call's envelope as
// a JSON array of field/value strings (see Retry).
func decodeDelayedMember(handler string, member any) (*Call, bool) {
	s, _ := member.(string)
	var kv []string
	if json.Unmarshal([]byte(s), &kv) != nil {
		return nil, false
	}
	vals := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		vals[kv[i]] = kv[i+1]
	}
	call, err := decodeCall(handler, vals)
	return call, err == nil
}

// listDead pages the dead letters, oldest first. Its cursor is the last
// dead-letter id listed.
func listDead(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
	if q.Cursor != "" && !isStreamID(q.Cursor) {
		return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
	}
	dls, err := c.DeadLetters(ctx, handler, q.Cursor, q.Limit*scanBudget)
	if err != nil {
		return CallPage{}, err
	}
	total, err := c.DeadLetterCount(ctx, handler)
	if err != nil {
		return CallPage{}, err
	}
	page := CallPage{Total: total}
	for i := range dls {
		dl := dls[i]
		if q.Method != "" && dl.Method != q.Method {
			continue
		}
		lc := ListedCall{ID: dl.ID, Handler: handler, Method: dl.Method, State: "dead", Params: dl.Params,
			EnqueuedAt: dl.EnqueuedAt, Attempt: dl.Attempts, DeadLetter: &dl, SettledAt: dl.FailedAt}
		if dl.Error != nil {
			lc.LastError = dl.Error.Message
		}
		page.Calls = append(page.Calls, lc)
		if int64(len(page.Calls)) == q.Limit {
			if i < len(dls)-1 || int64(len(dls)) == q.Limit*scanBudget {
				page.Next = dl.StreamID
			}
			return page, nil
		}
	}
	if n := len(dls); int64(n) == q.Limit*scanBudget {
		page.Next = dls[n-1].StreamID
	}
	return page, nil
}

// listSettled pages the handler's activity record (the latest settled
// calls, a sample above ~64 calls/s per consumer: see recorder.go), newest
// first, keeping the given outcomes. Its cursor is the last activity
// position listed.
func listSettled(outcomes ...string) callLister {
	return func(ctx context.Context, c *Client, handler string, q CallQuery) (CallPage, error) {
		keep := map[string]bool{}
		for _, o := range outcomes {
			keep[o] = q.Outcome == "" || q.Outcome == o
		}
		if q.Outcome != "" && !keep[q.Outcome] {
			return CallPage{}, fmt.Errorf("%w: outcome %q is not one of %s's: %s", ErrBadQuery, q.Outcome, q.State, strings.Join(outcomes, ", "))
		}
		end := "+"
		if q.Cursor != "" {
			if !isStreamID(q.Cursor) {
				return CallPage{}, fmt.Errorf("%w: cursor %q", ErrBadQuery, q.Cursor)
			}
			end = "(" + q.Cursor
		}
		msgs, err := c.rdb.XRevRangeN(ctx, activityKey(handler), end, "-", q.Limit*scanBudget).Result()
		if err != nil {
			return CallPage{}, unavailable(err)
		}
		page := CallPage{Total: -1}
		for i, m := range msgs {
			a, ok := decodeActivity(m)
			if !ok || !keep[a.Outcome] || (q.Method != "" && a.Method != q.Method) {
				continue
			}
			page.Calls = append(page.Calls, ListedCall{
				ID: a.ID, Handler: a.Handler, Method: a.Method, State: q.State, Attempt: a.Attempt,
				Consumer: a.Consumer, Outcome: a.Outcome, DurationMS: a.DurationMS, SettledAt: a.Time, LastError: a.Error,
			})
			if int64(len(page.Calls)) == q.Limit {
				if i < len(msgs)-1 || int64(len(msgs)) == q.Limit*scanBudget {
					page.Next = m.ID
				}
				return page, nil
			}
		}
		if n := len(msgs); int64(n) == q.Limit*scanBudget {
			page.Next = msgs[n-1].ID
		}
		return page, nil
	}
}
