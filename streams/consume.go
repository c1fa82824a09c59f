package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// HandlerSettings are a handler's settings that the edge enforces.
type HandlerSettings struct {
	// MaxBacklog refuses calls once this many are queued or running (0: the
	// edge's own limit applies).
	MaxBacklog int64
}

// Register records that info.Name serves info.Methods, so that the edge
// accepts calls to them, and what the registry shows of it. Consumers call it
// on start.
func (c *Client) Register(ctx context.Context, info HandlerInfo, settings HandlerSettings) error {
	if err := ValidateName("handler", info.Name); err != nil {
		return err
	}
	if len(info.Methods) == 0 {
		return fmt.Errorf("%w: handler %q registers no methods", ErrInvalidName, info.Name)
	}
	fields := make([]any, 0, 2*len(info.Methods)+2)
	for _, m := range info.Methods {
		if err := ValidateName("method", m.Name); err != nil {
			return err
		}
		fields = append(fields, m.Name, mustJSON(m))
	}
	meta := info
	meta.Methods = nil // kept in the methods hash
	pipe := c.rdb.Pipeline()
	if settings.MaxBacklog > 0 {
		fields = append(fields, settingMaxBacklog, settings.MaxBacklog)
	} else {
		pipe.HDel(ctx, methodsKey(info.Name), settingMaxBacklog)
	}
	pipe.HSet(ctx, methodsKey(info.Name), fields...)
	pipe.Set(ctx, infoKey(info.Name), mustJSON(meta), 0)
	pipe.SAdd(ctx, handlersKey(), info.Name)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// EnsureGroup creates the handler's stream and consumer group if missing. The
// group starts at the stream's beginning, so calls enqueued before the first
// consumer are served.
func (c *Client) EnsureGroup(ctx context.Context, handler string) error {
	err := c.rdb.XGroupCreateMkStream(ctx, callsKey(handler), Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return unavailable(err)
	}
	return nil
}

// Delivery is one call handed to a consumer.
type Delivery struct {
	Handler  string
	StreamID string
	// Deliveries is how often this stream entry was handed to a consumer: 1
	// on a first read, more after crash redeliveries.
	Deliveries int
	Call       *Call          // nil if Err is set and nothing usable was decoded
	Err        error          // ErrBadEnvelope when the entry could not be decoded
	Raw        map[string]any // the entry's fields, kept only when Err is set
}

// Attempt is the call's attempt number counting retries and redeliveries.
func (d *Delivery) Attempt() int {
	if d.Call == nil {
		return d.Deliveries
	}
	return d.Call.Attempt + max(d.Deliveries, 1) - 1
}

func newDelivery(handler string, m redis.XMessage, deliveries int) Delivery {
	call, err := decodeCall(handler, m.Values)
	d := Delivery{Handler: handler, StreamID: m.ID, Deliveries: deliveries, Call: call, Err: err}
	if err != nil {
		d.Raw = m.Values
	}
	return d
}

// ReadCalls reads up to count new calls for consumer from the handler's stream,
// blocking up to block. A group lost with Redis's data is recreated.
func (c *Client) ReadCalls(ctx context.Context, handler, consumer string, count int64, block time.Duration) ([]Delivery, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    Group,
		Consumer: consumer,
		Streams:  []string{callsKey(handler), ">"},
		Count:    count,
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	var out []Delivery
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, newDelivery(handler, m, 1))
		}
	}
	return out, nil
}

// claimScript takes over calls whose consumer has not renewed its lease for
// minIdle (it crashed or hung), with each one's delivery count.
//
//	KEYS[1] the handler's calls stream
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] count
//	returns {{id, fields}...}, {deliveries...}
var claimScript = redis.NewScript(`
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local entries, counts = {}, {}
for _, e in ipairs(res[2]) do
  if e and e[1] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    table.insert(entries, e)
    table.insert(counts, (p[1] and p[1][4]) or 1)
  end
end
return {entries, counts}
`)

// Claim takes over up to count calls that have been pending for longer than
// minIdle: their consumer died or stopped renewing their lease.
func (c *Client) Claim(ctx context.Context, handler, consumer string, minIdle time.Duration, count int64) ([]Delivery, error) {
	res, err := claimScript.Run(ctx, c.rdb, []string{callsKey(handler)}, Group, consumer, minIdle.Milliseconds(), count).Slice()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("streams: claim: unexpected reply %v", res)
	}
	entries, _ := res[0].([]any)
	counts, _ := res[1].([]any)
	out := make([]Delivery, 0, len(entries))
	for i, e := range entries {
		pair, _ := e.([]any)
		if len(pair) != 2 {
			continue
		}
		id, _ := pair[0].(string)
		flat, _ := pair[1].([]any)
		values := make(map[string]any, len(flat)/2)
		for j := 0; j+1 < len(flat); j += 2 {
			k, _ := flat[j].(string)
			values[k] = flat[j+1]
		}
		n := 1
		if i < len(counts) {
			if v, ok := counts[i].(int64); ok {
				n = int(v)
			}
		}
		out = append(out, newDelivery(handler, redis.XMessage{ID: id, Values: values}, n))
	}
	return out, nil
}

// ExtendLease tells the group that consumer is still working on the entries
// ids, so that no one claims them (XCLAIM JUSTID resets their idle time and
// does not count a delivery).
func (c *Client) ExtendLease(ctx context.Context, handler, consumer string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := c.rdb.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: callsKey(handler), Group: Group, Consumer: consumer, MinIdle: 0, Messages: ids,
	}).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return unavailable(err)
}

// settleScript settles a call in one round trip: ack and delete its entry (so
// the stream's length is the backlog), then by mode:
//
//	answer  keep the reply under the call id and hand it to the waiting edge
//	        (if that edge's reply stream still exists);
//	retry   schedule the call again: add it to the delayed set at its due time;
//	dead    add it to the dead letters, then answer as above.
//
// In the same script it counts the outcome in the handler's stats and rate
// buckets, appends it to the activity stream, and to the call's story.
//
//	KEYS[1] calls stream, KEYS[2] result key, KEYS[3] edge reply stream,
//	KEYS[4] delayed set, KEYS[5] dead-letter stream, KEYS[6] stats hash,
//	KEYS[7] rate hash, KEYS[8] activity stream, KEYS[9] story list
//	ARGV[1] group, ARGV[2] entry id, ARGV[3] mode, ARGV[4] call id,
//	ARGV[5] encoded reply, ARGV[6] result TTL ms, ARGV[7] reply stream max length,
//	ARGV[8] method, ARGV[9] outcome (ok error timeout cancelled retry dead),
//	ARGV[10] run time µs ('' if not run), ARGV[11] histogram bucket ('' if not run),
//	ARGV[12] now ms, ARGV[13] rate bucket number, ARGV[14] activity JSON,
//	ARGV[15] the story's "queued" event (pushed if the story is empty),
//	ARGV[16] k, ARGV[17..16+k] this settle's story events,
//	ARGV[17+k] retry: due time ms         | dead: first of the dead letter's field/value pairs
//	ARGV[18+k] retry: the envelope (JSON array of field/value strings)
//	returns 1 if this settled the call, 0 if it was already settled (acked by
//	another consumer after a redelivery): then nothing else is done, so a
//	caller never gets a second reply.
//
// On Redis Cluster KEYS[2], KEYS[3] and KEYS[9] are in other slots; see the README.
var settleScript = redis.NewScript(`
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
local m, outcome, k = ARGV[8], ARGV[9], tonumber(ARGV[16])
local x = 17 + k
if outcome == 'retry' then
  redis.call('HINCRBY', KEYS[6], m .. ':retries', 1)
else
  redis.call('HINCRBY', KEYS[6], m .. ':calls', 1)
  if outcome ~= 'ok' and outcome ~= 'cancelled' then redis.call('HINCRBY', KEYS[6], m .. ':errors', 1) end
  if outcome == 'timeout' then redis.call('HINCRBY', KEYS[6], m .. ':timeouts', 1) end
  if outcome == 'dead' then redis.call('HINCRBY', KEYS[6], m .. ':dead', 1) end
  local b = ARGV[13]
  if redis.call('HINCRBY', KEYS[7], b, 1) == 1 then
    local cutoff = tonumber(b) - ` + strconv.Itoa(RateBuckets+1) + `
    for _, f in ipairs(redis.call('HKEYS', KEYS[7])) do
      local fb = tonumber(string.match(f, '(%d+)$'))
      if fb and fb < cutoff then redis.call('HDEL', KEYS[7], f) end
    end
  end
  redis.call('HINCRBY', KEYS[7], m .. ':' .. b, 1)
end
if ARGV[10] ~= '' then
  redis.call('HINCRBY', KEYS[6], m .. ':runs', 1)
  redis.call('HINCRBY', KEYS[6], m .. ':dur_us', ARGV[10])
  redis.call('HINCRBY', KEYS[6], m .. ':h' .. ARGV[11], 1)
end
redis.call('HSET', KEYS[6], m .. ':last', ARGV[12])
redis.call('XADD', KEYS[8], 'MAXLEN', '~', ` + strconv.Itoa(activityMaxLen) + `, '*', 'a', ARGV[14])
if redis.call('LLEN', KEYS[9]) == 0 then redis.call('RPUSH', KEYS[9], ARGV[15]) end
if k > 0 then redis.call('RPUSH', KEYS[9], unpack(ARGV, 17, 16 + k)) end
redis.call('PEXPIRE', KEYS[9], ARGV[6])
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[4], ARGV[x], ARGV[x + 1])
  return 1
end
if ARGV[3] == 'dead' then
  redis.call('XADD', KEYS[5], '*', unpack(ARGV, x))
end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[4], 'v', ARGV[5])
end
return 1
`)

// activityMaxLen caps each handler's activity stream (approximately).
const activityMaxLen = 1000

// Run describes the attempt being settled, for the stats, the activity
// record and the call's story.
type Run struct {
	Consumer string
	Started  time.Time     // zero: the call was not run (expired, poison, crash loop)
	Took     time.Duration // how long the handler ran
}

// bucketOf is the DurationBuckets index of d (len for the overflow bucket).
func bucketOf(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	for i, b := range DurationBuckets {
		if ms <= b {
			return i
		}
	}
	return len(DurationBuckets)
}

func outcomeOf(mode string, reply Reply) string {
	switch {
	case mode == "retry":
		return "retry"
	case mode == "dead":
		return "dead"
	case reply.OK:
		return "ok"
	}
	switch reply.Err().Code {
	case CodeTimeout:
		return "timeout"
	case CodeCancelled:
		return "cancelled"
	}
	return "error"
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (c *Client) settle(ctx context.Context, d *Delivery, mode string, reply Reply, run Run, detail string, extra ...any) (bool, error) {
	ttl := d.Call.ResultTTL
	if ttl <= 0 {
		ttl = c.opts.ResultTTL
	}
	now := time.Now()
	outcome := outcomeOf(mode, reply)
	runUS, bucket := "", ""
	if !run.Started.IsZero() {
		runUS = strconv.FormatInt(run.Took.Microseconds(), 10)
		bucket = strconv.Itoa(bucketOf(run.Took))
	}
	errText := ""
	if !reply.OK && reply.Body != nil {
		errText = truncate(reply.Err().Message, 200)
	}
	if detail == "" {
		detail = errText
	}
	activity := mustJSON(Activity{
		ID: d.Call.ID, Handler: d.Handler, Method: d.Call.Method, Outcome: outcome,
		DurationMS: float64(run.Took.Microseconds()) / 1000, Attempt: d.Attempt(), Consumer: run.Consumer,
		Caller: d.Call.Caller, Time: now, Error: errText,
	})
	queued := mustJSON(StoryEvent{Time: d.Call.EnqueuedAt, Event: "queued", Params: d.Call.Params, Detail: d.Call.Caller,
		Handler: d.Handler, Method: d.Call.Method})
	var events [][]byte
	if !run.Started.IsZero() {
		events = append(events, mustJSON(StoryEvent{Time: run.Started, Event: "started", Attempt: d.Attempt(), Consumer: run.Consumer}))
	}
	final := map[string]string{"retry": "retried", "dead": "dead_lettered"}[mode]
	if final == "" {
		final = "finished"
	}
	events = append(events, mustJSON(StoryEvent{Time: now, Event: final, Attempt: d.Attempt(), Consumer: run.Consumer, Outcome: outcome, Detail: detail}))

	args := make([]any, 0, 20+len(extra))
	args = append(args, Group, d.StreamID, mode, d.Call.ID, reply.encode(), ttl.Milliseconds(), c.opts.ReplyStreamMaxLen,
		d.Call.Method, outcome, runUS, bucket, now.UnixMilli(), now.UnixMilli()/RateBucket.Milliseconds(), activity, queued, len(events))
	for _, e := range events {
		args = append(args, e)
	}
	args = append(args, extra...)
	res, err := c.finish.run(ctx, settleScript,
		[]string{callsKey(d.Handler), resultKey(d.Call.ID), replyKey(d.Call.ReplyTo), delayedKey(d.Handler), deadKey(d.Handler),
			statsKey(d.Handler), rateKey(d.Handler), activityKey(d.Handler), storyKey(d.Call.ID)},
		args...)
	if err != nil {
		return false, unavailable(err)
	}
	n, _ := res.(int64)
	return n == 1, nil
}

// Finish acks the delivery and publishes its reply, in one script call. It
// reports whether this consumer settled the call (false: someone else had).
func (c *Client) Finish(ctx context.Context, d *Delivery, reply Reply, run Run) (bool, error) {
	return c.settle(ctx, d, "answer", reply, run, "")
}

// Retry acks the delivery and schedules the call's next attempt at due. The
// caller keeps waiting: no reply is sent.
func (c *Client) Retry(ctx context.Context, d *Delivery, due time.Time, lastErr *Error, run Run) (bool, error) {
	next := *d.Call
	next.Attempt = d.Attempt() + 1
	fields := next.appendFields(nil)
	strs := make([]string, len(fields))
	for i, f := range fields {
		switch v := f.(type) {
		case string:
			strs[i] = v
		case []byte:
			strs[i] = string(v)
		case int:
			strs[i] = strconv.Itoa(v)
		case int64:
			strs[i] = strconv.FormatInt(v, 10)
		}
	}
	member, err := json.Marshal(strs)
	if err != nil {
		return false, err
	}
	detail := truncate(lastErr.Message, 200) + "; next attempt at " + due.UTC().Format(time.RFC3339Nano)
	return c.settle(ctx, d, "retry", Reply{ID: d.Call.ID}, run, detail, due.UnixMilli(), member)
}

// DeadLetter acks the delivery, moves the call to the dead letters with its
// last error, and answers the caller with a dead_lettered error.
func (c *Client) DeadLetter(ctx context.Context, d *Delivery, lastErr *Error, run Run) (bool, error) {
	attempts := d.Attempt()
	errJSON, _ := json.Marshal(lastErr)
	data, _ := json.Marshal(map[string]any{"attempts": attempts, "last_error": lastErr})
	reply := ErrorReply(d.Call.ID, &Error{
		Code:    CodeDeadLettered,
		Message: fmt.Sprintf("the call failed after %d attempt(s) and was moved to the dead letters: %s", attempts, lastErr.Message),
		Data:    data,
	})
	fields := d.Call.appendFields(nil)
	fields = append(fields, fieldError, errJSON, fieldAttempts, attempts, fieldFailedAt, time.Now().UnixMilli(), fieldConsumer, run.Consumer)
	return c.settle(ctx, d, "dead", reply, run, "", fields...)
}

// poisonScript moves an entry that cannot be decoded to the dead letters.
//
//	KEYS[1] calls stream, KEYS[2] dead-letter stream
//	ARGV[1] group, ARGV[2] entry id, ARGV[3..] the dead letter's field/value pairs
var poisonScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
`)

// Poison moves an undecodable entry to the dead letters, fields as they were
// plus the decoding error.
func (c *Client) Poison(ctx context.Context, d *Delivery, consumer string) error {
	errJSON, _ := json.Marshal(NewError(CodeInvalidRequest, "undecodable call envelope: "+d.Err.Error()))
	args := []any{Group, d.StreamID}
	for k, v := range d.Raw {
		if k == fieldError || k == fieldAttempts || k == fieldFailedAt || k == fieldConsumer {
			continue
		}
		args = append(args, k, v)
	}
	args = append(args, fieldError, errJSON, fieldAttempts, d.Deliveries, fieldFailedAt, time.Now().UnixMilli(), fieldConsumer, consumer)
	err := poisonScript.Run(ctx, c.rdb, []string{callsKey(d.Handler), deadKey(d.Handler)}, args...).Err()
	return unavailable(err)
}

// forwardScript moves retries whose time has come from the delayed set back
// into the stream, and says when the next one is due.
//
//	KEYS[1] delayed set, KEYS[2] calls stream
//	ARGV[1] now ms, ARGV[2] most to move
//	returns {moved, next due ms or -1}
var forwardScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(m)))
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
`)

// ForwardDue moves due retries into the stream. It returns how many it moved
// and when the next retry is due (zero time: none waiting).
func (c *Client) ForwardDue(ctx context.Context, handler string, now time.Time, limit int64) (int, time.Time, error) {
	res, err := forwardScript.Run(ctx, c.rdb, []string{delayedKey(handler), callsKey(handler)}, now.UnixMilli(), limit).Int64Slice()
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

// AppendRaw appends an entry with arbitrary fields to handler's stream,
// bypassing every check. It exists for fault injection (a poison entry) in
// tests and tools; callers enqueue with Enqueue.
func (c *Client) AppendRaw(ctx context.Context, handler string, fields ...any) error {
	return unavailable(c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: callsKey(handler), Values: fields}).Err())
}
