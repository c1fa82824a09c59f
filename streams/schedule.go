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

// Scheduled calls (Prefer: respond-async with Schedule-At or Schedule-In):
// enqueued into the handler's scheduled hash (id -> envelope) and delayed set
// (id scored by due time), moved into the stream by the forwarder that also
// moves retries (ForwardDue). See docs/flow-control.md.

// StateScheduled is an async call waiting for its scheduled time.
const StateScheduled State = "scheduled"

// DueNotice is published on a handler's cancel channel when a scheduled call
// becomes the first due, so that the forwarders sleeping until a later time
// wake up. Call ids never start with '@', so a cancel watcher tells it apart.
const DueNotice = "@due"

// MaxScheduleAhead is how far ahead a call may be scheduled.
const MaxScheduleAhead = 366 * 24 * time.Hour

// scheduledState is a scheduled call's state under its result key, until the
// forwarder replaces it with queuedState: "s<handler> <due ms>".
func scheduledState(handler string, due time.Time) string {
	return "s" + handler + " " + strconv.FormatInt(due.UnixMilli(), 10)
}

func parseScheduledState(v string) (handler string, due time.Time, ok bool) {
	if len(v) < 2 || v[0] != 's' {
		return "", time.Time{}, false
	}
	handler, ms, ok := strings.Cut(v[1:], " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return "", time.Time{}, false
	}
	return handler, time.UnixMilli(n), true
}

// forwardScript moves retries and scheduled calls whose time has come from
// the delayed set into the stream, and says when the next one is due. A
// retry's member is its envelope (a JSON array); a scheduled call's is its id,
// its envelope in the scheduled hash, and its state under its result key
// becomes "queued" at its new entry (keeping the key's TTL), so that it can
// still be cancelled there.
//
//	KEYS[1] delayed set, KEYS[2] calls stream, KEYS[3] scheduled hash
//	ARGV[1] now ms, ARGV[2] most to move,
//	ARGV[3] the handler's result key prefix (a call's is it plus the part of
//	        its id after the last '.'; same hash tag)
//	returns {moved, next due ms or -1}
var forwardScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  if string.byte(m) == 91 then
    redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(m)))
  else
    local env = redis.call('HGET', KEYS[3], m)
    if env then
      local id = redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(env)))
      redis.call('HDEL', KEYS[3], m)
      local h, own = string.match(m, '^(.*)%.([^.]*)$')
      local rk = ARGV[3] .. own
      local st = redis.call('GET', rk)
      if st and string.byte(st) == 115 then
        redis.call('SET', rk, 'q' .. h .. ' ' .. id, 'KEEPTTL')
      end
    end
  end
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
`)

// ForwardDue moves due retries and scheduled calls into the stream. It
// returns how many it moved and when the next one is due (zero time: none
// waiting).
func (c *Client) ForwardDue(ctx context.Context, handler string, now time.Time, limit int64) (int, time.Time, error) {
	res, err := forwardScript.Run(ctx, c.rdb, []string{delayedKey(handler), callsKey(handler), scheduledKey(handler)},
		now.UnixMilli(), limit, resultKey(handler+".")).Int64Slice()
	if err != nil {
		return 0, time.Time{}, unavailable(err)
	}
	if len(res) != 2 {
		return 0, time.Time{}, fmt.Errorf("streams: forward: unexpected reply %v", res)
	}
	var next time.Time
	if res[1] >= 0 {
		next = time.UnixMilli(res[1])
	}
	return int(res[0]), next, nil
}

// cancelScheduledScript cancels a scheduled call that the forwarder has not
// moved yet: it never runs, and its outcome is a cancelled error.
//
//	KEYS[1] delayed set, KEYS[2] scheduled hash, KEYS[3] result key
//	ARGV[1] call id, ARGV[2] the encoded cancelled reply, ARGV[3] result TTL ms
//	returns 1 if cancelled, 0 if it was no longer scheduled (moved, or gone)
var cancelScheduledScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 1
`)

// CancelCall cancels call st (a status CallStatus read): a scheduled call is
// removed before it runs, otherwise as Cancel. It returns the state the call
// was in: StateScheduled or StateQueued (it will never run), StateRunning,
// or StateDone (too late).
func (c *Client) CancelCall(ctx context.Context, st CallStatus, resultTTL time.Duration) (State, error) {
	if st.State != StateScheduled {
		return c.Cancel(ctx, st.Handler, st.ID, st.StreamID, resultTTL)
	}
	if resultTTL <= 0 {
		resultTTL = c.opts.ResultTTL
	}
	reply := ErrorReply(st.ID, NewError(CodeCancelled, "the call was cancelled by its caller"))
	n, err := cancelScheduledScript.Run(ctx, c.rdb, []string{delayedKey(st.Handler), scheduledKey(st.Handler), resultKey(st.ID)},
		st.ID, reply.encode(), resultTTL.Milliseconds()).Int()
	if err != nil {
		return "", unavailable(err)
	}
	if n == 1 {
		return StateScheduled, nil
	}
	// The forwarder moved it meanwhile: cancel it where it is now.
	now, err := c.CallStatus(ctx, st.ID)
	if err != nil {
		return "", err
	}
	if now.Final() || now.State == StateScheduled {
		return StateDone, nil
	}
	return c.Cancel(ctx, now.Handler, now.ID, now.StreamID, resultTTL)
}

// ScheduledCall is a call waiting for its scheduled time.
type ScheduledCall struct {
	ID       string    `json:"id"`
	Method   string    `json:"method"`
	Due      time.Time `json:"due"`
	Deadline time.Time `json:"deadline"`
}

// ScheduledCalls lists up to limit of handler's scheduled calls, earliest due
// first, from cursor ("" for the first page); next is the cursor of the next
// page, "" after the last. Retries waiting in the same set are skipped.
func (c *Client) ScheduledCalls(ctx context.Context, handler, cursor string, limit int) (calls []ScheduledCall, next string, err error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: limit must be positive", ErrInvalidName)
	}
	from := int64(0)
	if cursor != "" {
		if from, err = strconv.ParseInt(cursor, 10, 64); err != nil || from < 0 {
			return nil, "", fmt.Errorf("%w: bad cursor %q", ErrInvalidName, cursor)
		}
	}
	var ids []string
	var dues []float64
	for len(ids) < limit {
		page, err := c.rdb.ZRangeWithScores(ctx, delayedKey(handler), from, from+int64(limit)-1).Result()
		if err != nil {
			return nil, "", unavailable(err)
		}
		for _, z := range page {
			from++
			if m, _ := z.Member.(string); m != "" && m[0] != '[' {
				ids, dues = append(ids, m), append(dues, z.Score)
				if len(ids) == limit {
					break
				}
			}
		}
		if len(page) < limit {
			from = -1 // the end
			break
		}
	}
	if len(ids) > 0 {
		envs, err := c.rdb.HMGet(ctx, scheduledKey(handler), ids...).Result()
		if err != nil {
			return nil, "", unavailable(err)
		}
		for i, id := range ids {
			sc := ScheduledCall{ID: id, Due: time.UnixMilli(int64(dues[i]))}
			if s, ok := envs[i].(string); ok {
				sc.Method, sc.Deadline = envelopeSummary(s)
			}
			calls = append(calls, sc)
		}
	}
	if from >= 0 {
		next = strconv.FormatInt(from, 10)
	}
	return calls, next, nil
}

// envelopeSummary reads the method and deadline from an envelope kept as a
// JSON array of field/value strings.
func envelopeSummary(s string) (method string, deadline time.Time) {
	var fields []string
	if json.Unmarshal([]byte(s), &fields) != nil {
		return "", time.Time{}
	}
	for i := 0; i+1 < len(fields); i += 2 {
		switch fields[i] {
		case fieldMethod:
			method = fields[i+1]
		case fieldDeadline:
			if ms, err := strconv.ParseInt(fields[i+1], 10, 64); err == nil {
				deadline = time.UnixMilli(ms)
			}
		}
	}
	return method, deadline
}

// Scheduled is the number of handler's calls waiting for their scheduled time.
func (c *Client) Scheduled(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.HLen(ctx, scheduledKey(handler)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, unavailable(err)
}
