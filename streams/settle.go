package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Settling what is not a plain answer: retries (the delayed set and the
// forwarder that moves due calls back), dead letters, undecodable entries.

// settleScript settles one call that is not simply answered, in one round
// trip: ack and delete its entry (only if this consumer still holds it: see
// answerScript), add this attempt to the call's story, then by mode:
//
//	retry   schedule the call again: add it to the delayed set at its due time;
//	dead    add it to the dead letters, keep the dead_lettered reply under
//	        the call id and hand it to the waiting edge (on Redis Cluster,
//	        settle does that after the script, as for answers).
//
//	KEYS[1] calls stream, KEYS[2] result key, KEYS[3] delayed set,
//	KEYS[4] dead-letter stream, KEYS[5] story list,
//	KEYS[6] the edge's reply stream, when the reply goes here
//	ARGV[1] group, ARGV[2] entry id, ARGV[3] mode, ARGV[4] call id,
//	ARGV[5] encoded reply, ARGV[6] result TTL ms,
//	ARGV[7] reply stream max length, or '' when the reply is not sent here,
//	ARGV[8] the story's "queued" event (pushed if the story is empty),
//	ARGV[9] the settling consumer,
//	ARGV[10] k, ARGV[11..10+k] this settle's story events,
//	ARGV[11+k] retry: due time ms         | dead: first of the dead letter's field/value pairs
//	ARGV[12+k] retry: the envelope (JSON array of field/value strings)
//	returns 1 if this settled the call, 0 if this consumer no longer held it
//	(settled or claimed by another consumer): then nothing is done.
var settleScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not p[1] or p[1][2] ~= ARGV[9] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local k = tonumber(ARGV[10])
local x = 11 + k
if redis.call('LLEN', KEYS[5]) == 0 then redis.call('RPUSH', KEYS[5], ARGV[8]) end
if k > 0 then redis.call('RPUSH', KEYS[5], unpack(ARGV, 11, 10 + k)) end
redis.call('PEXPIRE', KEYS[5], ARGV[6])
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[3], ARGV[x], ARGV[x + 1])
  return 1
end
redis.call('XADD', KEYS[4], '*', unpack(ARGV, x))
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[6], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[7], '*', ARGV[4], ARGV[5])
end
return 1
`)

// Run describes the attempt being settled, for the stats, the activity
// record and the call's story.
type Run struct {
	Consumer string
	Started  time.Time     // zero: the call was not run (expired, poison, crash loop)
	Took     time.Duration // how long the handler ran
	// Partials and Progress count the streamed events the attempt sent
	// (docs/streaming.md): shown in the call's story.
	Partials, Progress int
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

func (c *Client) resultTTL(d *Delivery) time.Duration {
	if d.Call.ResultTTL > 0 {
		return d.Call.ResultTTL
	}
	return c.opts.ResultTTL
}

// settle runs settleScript for a retry or a dead letter.
func (c *Client) settle(ctx context.Context, d *Delivery, mode settleMode, reply Reply, run Run, detail string, extra ...any) (bool, error) {
	ttl := c.resultTTL(d)
	rec := settledOf(d, mode, reply, run, detail, ttl)
	events := rec.runEvents()
	args := make([]any, 0, 13+len(events)+len(extra))
	encoded := reply.encode()
	keys := []string{d.streamKey(), resultKey(d.Call.ID), delayedKey(d.Handler), deadKey(d.Handler), storyKey(d.Call.ID)}
	maxLen := any("")
	inline := c.inlineReplies && d.Call.ReplyTo != ""
	if inline {
		keys = append(keys, replyKey(d.Call.ReplyTo))
		maxLen = c.opts.ReplyStreamMaxLen
	}
	args = append(args, Group, d.entryID(), string(mode), d.Call.ID, encoded, ttl.Milliseconds(), maxLen,
		mustJSON(rec.queuedEvent()), run.Consumer, len(events))
	for _, e := range events {
		args = append(args, mustJSON(e))
	}
	args = append(args, extra...)
	res, err := runScript(ctx, c.finish, settleScript, keys, args...)
	if err != nil {
		return false, unavailable(err)
	}
	n, _ := res.(int64)
	if n == 1 {
		c.recorder.record(rec)
		if mode == settleDead && !inline {
			var r edgeReplies
			r.add(d.Call.ReplyTo, d.Call.ID, encoded)
			c.publishReplies(ctx, r)
		}
	}
	return n == 1, nil
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
	detail := truncate(lastErr.Message, 200) + "; next attempt at " + due.UTC().Format("2006-01-02 15:04:05.000 UTC")
	return c.settle(ctx, d, settleRetry, Reply{ID: d.Call.ID}, run, detail, due.UnixMilli(), member)
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
	return c.settle(ctx, d, settleDead, reply, run, "", fields...)
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
	args := []any{Group, d.entryID()}
	for k, v := range d.Raw {
		if k == fieldError || k == fieldAttempts || k == fieldFailedAt || k == fieldConsumer {
			continue
		}
		args = append(args, k, v)
	}
	args = append(args, fieldError, errJSON, fieldAttempts, d.Deliveries, fieldFailedAt, time.Now().UnixMilli(), fieldConsumer, consumer)
	err := poisonScript.Run(ctx, c.rdb, []string{d.streamKey(), deadKey(d.Handler)}, args...).Err()
	return unavailable(err)
}
