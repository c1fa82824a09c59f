package streams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// enqueueScript appends a batch of calls to one handler's stream: each one
// whose method a consumer has registered, if the backlog has room and its
// idempotency key (if any) has not been used. One run serves every call the
// edge's batcher took together: one registry read and one backlog read per
// batch, one XADD per call.
//
//	KEYS[1] the handler's calls stream
//	KEYS[2] the handler's methods hash
//	KEYS[1+2c] call c's idempotency key (a placeholder when it has none)
//	KEYS[2+2c] call c's result key, where an async call's state is recorded
//	           at once ("queued", with where to find the entry)
//	ARGV[1] the edge's backlog limit (0: none); the handler's registered one wins
//	ARGV[2] n, the number of calls
//	then per call: method, idempotency value "<call id> <fingerprint>" or '',
//	idempotency TTL ms, async state value or '', result TTL ms, k, and the k
//	envelope field/value strings
//	returns per call {'new', entry id}, {'dup', first call id} or {'err', code}
//	with code NOHANDLER, NOMETHOD, BACKLOG or IDEMMISMATCH
var enqueueScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local at, methods, seen = {}, {}, {}
local a = 3
for c = 1, n do
  at[c] = a
  if not seen[ARGV[a]] then seen[ARGV[a]] = true; table.insert(methods, ARGV[a]) end
  a = a + 6 + tonumber(ARGV[a + 5])
end
local reg = redis.call('HMGET', KEYS[2], '` + settingMaxBacklog + `', unpack(methods))
local known = {}
for j, m in ipairs(methods) do if reg[j + 1] then known[m] = true end end
local limit = tonumber(reg[1] or ARGV[1])
local backlog = nil
if limit > 0 then backlog = redis.call('XLEN', KEYS[1]) end
local exists = nil
local out = {}
for c = 1, n do
  local a = at[c]
  local idv = ARGV[a + 1]
  local ik, rk = KEYS[1 + 2 * c], KEYS[2 + 2 * c]
  if not known[ARGV[a]] then
    if exists == nil then exists = redis.call('EXISTS', KEYS[2]) end
    if exists == 0 then out[c] = {'err', 'NOHANDLER'} else out[c] = {'err', 'NOMETHOD'} end
  else
    if idv ~= '' then
      local prev = redis.call('GET', ik)
      if prev then
        local sp = string.find(prev, ' ', 1, true)
        if string.sub(prev, sp + 1) ~= string.sub(idv, string.find(idv, ' ', 1, true) + 1) then
          out[c] = {'err', 'IDEMMISMATCH'}
        else
          out[c] = {'dup', string.sub(prev, 1, sp - 1)}
        end
      end
    end
    if out[c] == nil then
      if backlog and backlog >= limit then
        out[c] = {'err', 'BACKLOG'}
      else
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 6, a + 5 + tonumber(ARGV[a + 5])))
        if backlog then backlog = backlog + 1 end
        if idv ~= '' then redis.call('SET', ik, idv, 'PX', ARGV[a + 2]) end
        if ARGV[a + 3] ~= '' then redis.call('SET', rk, ARGV[a + 3] .. id, 'PX', ARGV[a + 4]) end
        out[c] = {'new', id}
      end
    end
  end
end
return out
`)

// enqueueOp is one call waiting in the enqueue batcher.
type enqueueOp struct {
	pending
	handler string
	keys    [2]string // idempotency key, result key
	args    []any     // this call's part of enqueueScript's ARGV
	limit   int64     // the edge's backlog limit
	// set by sendEnqueues
	kind, value string
}

// sendEnqueues runs one enqueueScript per handler in the batch, all in one
// pipeline.
func (c *Client) sendEnqueues(ctx context.Context, batch []*enqueueOp) {
	order, groups := groupBy(batch, func(o *enqueueOp) string { return o.handler })
	calls := make([]*scriptCall, len(order))
	for i, h := range order {
		ops := groups[h]
		keys := make([]string, 0, 2+2*len(ops))
		keys = append(keys, callsKey(h), methodsKey(h))
		args := make([]any, 0, 2+len(ops)*len(ops[0].args))
		args = append(args, ops[0].limit, len(ops))
		for _, o := range ops {
			keys = append(keys, o.keys[0], o.keys[1])
			args = append(args, o.args...)
		}
		calls[i] = &scriptCall{script: enqueueScript, keys: keys, args: args}
	}
	durable := c.runScripts(ctx, calls)
	for i, h := range order {
		ops := groups[h]
		res, err := calls[i].cmd.Slice()
		if err == nil && len(res) != len(ops) {
			err = fmt.Errorf("streams: enqueue: unexpected reply %v", res)
		}
		if err == nil && durable != nil && durable[i] != nil {
			err = durable[i] // enqueued, but not confirmed by the replicas
		}
		for j, o := range ops {
			if err != nil {
				o.complete(err)
				continue
			}
			pair, _ := res[j].([]any)
			if len(pair) == 2 {
				o.kind, _ = pair[0].(string)
				o.value, _ = pair[1].(string)
			}
			o.complete(nil)
		}
	}
}

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

// compactJSON returns params without insignificant whitespace (json.Compact),
// for an idempotency key's fingerprint: `{ "a": 1 }` and `{"a":1}` are the
// same params. Member order, escapes and number spellings still count: a
// handler gets the params byte for byte and may tell them apart. Params that
// are not valid JSON are returned as they are.
func compactJSON(params []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(params))
	if json.Compact(&b, params) != nil {
		return params
	}
	return b.Bytes()
}

// Enqueued says what Enqueue did.
type Enqueued struct {
	ID        string // the call's id: the first call's for a duplicate
	StreamID  string // the stream entry, "" for a duplicate
	Duplicate bool   // an idempotency key seen before: nothing was enqueued
}

// Enqueue appends call to its handler's stream. Concurrent calls share one
// script run per handler.
func (c *Client) Enqueue(ctx context.Context, call *Call, opts EnqueueOptions) (Enqueued, error) {
	// The id places the call's result in its handler's slot (NewCallID).
	if h, err := ValidateCallID(call.ID); err != nil {
		return Enqueued{}, err
	} else if h != call.Handler {
		return Enqueued{}, fmt.Errorf("%w: call id %q is not of handler %q", ErrInvalidName, call.ID, call.Handler)
	}
	o := &enqueueOp{handler: call.Handler, limit: opts.BacklogLimit}
	o.keys = [2]string{idemKey(call.Handler, ""), idemKey(call.Handler, "")}
	idemValue, idemTTL, state := "", int64(0), ""
	if idem := opts.Idempotency; idem != nil {
		k := sha256.Sum256([]byte(idem.Key))
		o.keys[0] = idemKey(call.Handler, hex.EncodeToString(k[:]))
		fp := sha256.New()
		fp.Write([]byte(call.Method))
		fp.Write([]byte{0})
		fp.Write(compactJSON(call.Params))
		idemValue = call.ID + " " + hex.EncodeToString(fp.Sum(nil))
		idemTTL = max(idem.TTL.Milliseconds(), 1)
	}
	if opts.Async {
		o.keys[1] = resultKey(call.ID)
		state = queuedState(call.Handler, "")
	}
	ttl := call.ResultTTL
	if ttl <= 0 {
		ttl = c.opts.ResultTTL
	}
	o.args = make([]any, 0, 26)
	o.args = append(o.args, call.Method, idemValue, idemTTL, state, ttl.Milliseconds(), 0)
	o.args = call.appendFields(o.args)
	o.args[5] = len(o.args) - 6
	err := c.enqueue.do(ctx, o)
	if err == nil && o.kind == "err" {
		switch o.value {
		case "NOHANDLER":
			return Enqueued{}, fmt.Errorf("%w: %q", ErrNoHandler, call.Handler)
		case "NOMETHOD":
			return Enqueued{}, fmt.Errorf("%w: %q has no method %q", ErrNoMethod, call.Handler, call.Method)
		case "BACKLOG":
			return Enqueued{}, fmt.Errorf("%w: %q", ErrBacklogFull, call.Handler)
		case "IDEMMISMATCH":
			return Enqueued{}, ErrIdempotencyMismatch
		}
		return Enqueued{}, fmt.Errorf("streams: enqueue: unexpected error code %q", o.value)
	}
	switch {
	case err != nil:
		return Enqueued{}, unavailable(err)
	case o.kind == "dup":
		return Enqueued{ID: o.value, Duplicate: true}, nil
	case o.kind == "new":
		return Enqueued{ID: call.ID, StreamID: o.value}, nil
	}
	return Enqueued{}, fmt.Errorf("streams: enqueue: unexpected reply %q %q", o.kind, o.value)
}

// replyStreamMarker is the field of the entry that creates a reply stream.
const replyStreamMarker = "open"

// OpenReplyStream creates the reply stream of edge edgeID (with a marker entry
// that ReadReplies skips) and gives it ReplyStreamTTL. Consumers only write to
// a reply stream that exists, so an edge that is gone collects no replies.
func (c *Client) OpenReplyStream(ctx context.Context, edgeID string) error {
	key := replyKey(edgeID)
	pipe := c.rdb.Pipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: []any{replyStreamMarker, "1"}})
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

// TrimReplyStream removes the entries of edge edgeID's reply stream older
// than age (XTRIM MINID, exact): a reply stream is bounded by count
// (ReplyStreamMaxLen) when replies are appended, and by age by this, which
// the edge runs on a timer, so that large results do not stay in it after
// nobody can wait for them, whatever the traffic.
func (c *Client) TrimReplyStream(ctx context.Context, edgeID string, age time.Duration) error {
	minID := strconv.FormatInt(time.Now().Add(-age).UnixMilli(), 10) + "-0"
	return unavailable(c.rdb.XTrimMinID(ctx, replyKey(edgeID), minID).Err())
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
			// An entry holds the replies one consumer settled together:
			// call id -> encoded reply. The marker entry holds "open".
			for id, raw := range m.Values {
				v, _ := raw.(string)
				if id == replyStreamMarker {
					continue
				}
				if r, err := decodeReply(id, v); err == nil {
					replies = append(replies, r)
				}
			}
		}
	}
	return replies, after, nil
}

// Result reads the reply kept under call id. ErrNotFound if there is none
// (unknown id, not finished yet, or expired).
func (c *Client) Result(ctx context.Context, id string) (Reply, error) {
	if _, err := ValidateCallID(id); err != nil {
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

// Results reads the replies kept for calls ids, in one pipeline, and returns
// those found (answered and not expired); the rest are skipped.
func (c *Client) Results(ctx context.Context, ids []string) ([]Reply, error) {
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, len(ids))
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, err := ValidateCallID(id); err != nil {
			continue
		}
		valid = append(valid, id)
		cmds = append(cmds, pipe.Get(ctx, resultKey(id)))
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	var out []Reply
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		if _, _, queued := parseQueuedState(v); queued {
			continue
		}
		if r, err := decodeReply(valid[i], v); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
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
