package streams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler settings live in the methods hash under names that cannot be
// method names (a method name has no '$').
const settingMaxBacklog = "$max_backlog"

// ErrBacklogFull is returned by Enqueue when the handler's backlog is at its limit.
var ErrBacklogFull = errors.New("handler backlog is full")

// ErrIdempotencyMismatch is returned by Enqueue when an idempotency key is
// reused with a different method or params.
var ErrIdempotencyMismatch = errors.New("idempotency key reused with different params")

// enqueueScript appends a call to its handler's stream if a consumer has
// registered the handler and method, the backlog has room, and the call's
// idempotency key (if any) has not been used.
//
//	KEYS[1] the handler's calls stream
//	KEYS[2] the handler's methods hash
//	KEYS[3] the idempotency key (unused when ARGV[3] is '')
//	KEYS[4] the call's result key, only for an async call: its state is
//	        recorded there at once ("queued", with where to find the entry)
//	ARGV[1] method
//	ARGV[2] the edge's backlog limit (0: none); the handler's registered one wins
//	ARGV[3] idempotency value "<call id> <fingerprint>", or ''
//	ARGV[4] idempotency TTL, ms
//	ARGV[5] async state value, or ''
//	ARGV[6] result TTL, ms
//	ARGV[7..] envelope field/value pairs
//	returns {'new', entry id} or {'dup', first call id};
//	errors NOHANDLER, NOMETHOD, BACKLOG, IDEMMISMATCH
var enqueueScript = redis.NewScript(`
local reg = redis.call('HMGET', KEYS[2], ARGV[1], '` + settingMaxBacklog + `')
if not reg[1] then
  if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOHANDLER') end
  return redis.error_reply('NOMETHOD')
end
if ARGV[3] ~= '' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local sp = string.find(prev, ' ', 1, true)
    if string.sub(prev, sp + 1) ~= string.sub(ARGV[3], string.find(ARGV[3], ' ', 1, true) + 1) then
      return redis.error_reply('IDEMMISMATCH')
    end
    return {'dup', string.sub(prev, 1, sp - 1)}
  end
end
local limit = tonumber(reg[2] or ARGV[2])
if limit > 0 and redis.call('XLEN', KEYS[1]) >= limit then return redis.error_reply('BACKLOG') end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 7))
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[5] .. id, 'PX', ARGV[6]) end
return {'new', id}
`)

// Idempotency asks Enqueue to run a call at most once per key while the key
// is kept: a repeat with the same key returns the first call's id.
type Idempotency struct {
	Key string        // the caller's Idempotency-Key, any bytes
	TTL time.Duration // how long the key is remembered
}

// EnqueueOptions are the per-call choices of Enqueue.
type EnqueueOptions struct {
	// BacklogLimit > 0 refuses the call with ErrBacklogFull when that many
	// calls are already queued or running (a limit the handler registered
	// takes precedence).
	BacklogLimit int64
	// Idempotency, if set, makes a repeated key enqueue nothing and return
	// the first call's id.
	Idempotency *Idempotency
	// Async records the call's state under its id at once, so that
	// CallStatus can tell queued and running calls apart from unknown ids.
	Async bool
}

// Enqueued says what Enqueue did.
type Enqueued struct {
	ID        string // the call's id: the first call's for a duplicate
	StreamID  string // the stream entry, "" for a duplicate
	Duplicate bool   // an idempotency key seen before: nothing was enqueued
}

// Enqueue appends call to its handler's stream.
func (c *Client) Enqueue(ctx context.Context, call *Call, opts EnqueueOptions) (Enqueued, error) {
	keys := []string{callsKey(call.Handler), methodsKey(call.Handler), idemKey(call.Handler, "")}
	idemValue, idemTTL, state := "", int64(0), ""
	if idem := opts.Idempotency; idem != nil {
		k := sha256.Sum256([]byte(idem.Key))
		keys[2] = idemKey(call.Handler, hex.EncodeToString(k[:]))
		fp := sha256.New()
		fp.Write([]byte(call.Method))
		fp.Write([]byte{0})
		fp.Write(call.Params)
		idemValue = call.ID + " " + hex.EncodeToString(fp.Sum(nil))
		idemTTL = max(idem.TTL.Milliseconds(), 1)
	}
	if opts.Async {
		keys = append(keys, resultKey(call.ID))
		state = queuedState(call.Handler, "")
	}
	ttl := call.ResultTTL
	if ttl <= 0 {
		ttl = c.opts.ResultTTL
	}
	args := make([]any, 0, 22)
	args = append(args, call.Method, opts.BacklogLimit, idemValue, idemTTL, state, ttl.Milliseconds())
	args = call.appendFields(args)
	res, err := c.enqueue.run(ctx, enqueueScript, keys, args...)
	switch {
	case err == nil:
		out, _ := res.([]any)
		if len(out) == 2 {
			v, _ := out[1].(string)
			if out[0] == "dup" {
				return Enqueued{ID: v, Duplicate: true}, nil
			}
			return Enqueued{ID: call.ID, StreamID: v}, nil
		}
		return Enqueued{}, fmt.Errorf("streams: enqueue: unexpected reply %v", res)
	case redis.HasErrorPrefix(err, "NOHANDLER"):
		return Enqueued{}, fmt.Errorf("%w: %q", ErrNoHandler, call.Handler)
	case redis.HasErrorPrefix(err, "NOMETHOD"):
		return Enqueued{}, fmt.Errorf("%w: %q has no method %q", ErrNoMethod, call.Handler, call.Method)
	case redis.HasErrorPrefix(err, "BACKLOG"):
		return Enqueued{}, fmt.Errorf("%w: %q", ErrBacklogFull, call.Handler)
	case redis.HasErrorPrefix(err, "IDEMMISMATCH"):
		return Enqueued{}, ErrIdempotencyMismatch
	}
	return Enqueued{}, unavailable(err)
}

// OpenReplyStream creates the reply stream of edge edgeID (with a marker entry
// that ReadReplies skips) and gives it ReplyStreamTTL. Consumers only write to
// a reply stream that exists, so an edge that is gone collects no replies.
func (c *Client) OpenReplyStream(ctx context.Context, edgeID string) error {
	key := replyKey(edgeID)
	pipe := c.rdb.Pipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: []any{"open", "1"}})
	pipe.Expire(ctx, key, ReplyStreamTTL)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// KeepReplyStream extends the reply stream's TTL, and recreates it if Redis
// lost it (a restart without persistence).
func (c *Client) KeepReplyStream(ctx context.Context, edgeID string) error {
	ok, err := c.rdb.Expire(ctx, replyKey(edgeID), ReplyStreamTTL).Result()
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return c.OpenReplyStream(ctx, edgeID)
	}
	return nil
}

// ReadReplies reads up to count replies after stream id `after` from edge
// edgeID's reply stream, blocking up to block. It returns the replies and the
// id to read after next time.
func (c *Client) ReadReplies(ctx context.Context, edgeID, after string, count int64, block time.Duration) ([]Reply, string, error) {
	res, err := c.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{replyKey(edgeID), after},
		Count:   count,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, unavailable(err)
	}
	var replies []Reply
	for _, s := range res {
		for _, m := range s.Messages {
			after = m.ID
			id, _ := m.Values["id"].(string)
			v, _ := m.Values["v"].(string)
			if id == "" {
				continue // the marker entry
			}
			r, err := decodeReply(id, v)
			if err != nil {
				continue
			}
			replies = append(replies, r)
		}
	}
	return replies, after, nil
}

// Result reads the reply kept under call id. ErrNotFound if there is none
// (unknown id, not finished yet, or expired).
func (c *Client) Result(ctx context.Context, id string) (Reply, error) {
	if err := ValidateID(id); err != nil {
		return Reply{}, err
	}
	v, err := c.rdb.Get(ctx, resultKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return Reply{}, ErrNotFound
	}
	if err != nil {
		return Reply{}, unavailable(err)
	}
	if _, _, queued := parseQueuedState(v); queued {
		return Reply{}, ErrNotFound
	}
	return decodeReply(id, v)
}

// Handlers lists the names of every registered handler.
func (c *Client) Handlers(ctx context.Context) ([]string, error) {
	names, err := c.rdb.SMembers(ctx, handlersKey()).Result()
	return names, unavailable(err)
}

// Methods returns a handler's registered methods (name -> JSON description).
func (c *Client) Methods(ctx context.Context, handler string) (map[string]string, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	m, err := c.rdb.HGetAll(ctx, methodsKey(handler)).Result()
	for k := range m {
		if strings.HasPrefix(k, "$") {
			delete(m, k)
		}
	}
	return m, unavailable(err)
}

// Backlog is the number of calls queued or running for handler (retries
// waiting for their time are not in it).
func (c *Client) Backlog(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.XLen(ctx, callsKey(handler)).Result()
	return n, unavailable(err)
}

// Pending is the number of calls consumers have taken and not yet settled.
func (c *Client) Pending(ctx context.Context, handler string) (int64, error) {
	p, err := c.rdb.XPending(ctx, callsKey(handler), Group).Result()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(err)
	}
	return p.Count, nil
}

// Delayed is the number of calls waiting for a retry.
func (c *Client) Delayed(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.ZCard(ctx, delayedKey(handler)).Result()
	return n, unavailable(err)
}
