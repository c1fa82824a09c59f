package streams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
//	KEYS[1] the handler's calls stream (of the batch's priority: priority.go)
//	KEYS[2] the handler's methods hash
//	KEYS[1+2c] call c's idempotency key (a placeholder when it has none)
//	KEYS[2+2c] call c's result key, where an async call's state is recorded
//	           at once ("queued", with where to find the entry)
//	ARGV[1] the edge's backlog limit (0: none); the handler's registered one wins
//	ARGV[2] n, the number of calls
//	then per call: method, idempotency value "<call id> <fingerprint>" or '',
//	idempotency TTL ms, async state value or '', result TTL ms, k, and the k
//	envelope field/value strings
//	returns per call {'new', entry id} ('' for a scheduled call), {'dup',
//	first call id} or {'err', code} with code NOHANDLER, NOMETHOD, BACKLOG or
//	IDEMMISMATCH
//
// A scheduled call (its async state starts with 's') is not appended: it
// goes to the handler's scheduled hash and delayed set, and its forwarders
// are woken on the handler's cancel channel when it is the first due. Those
// keys are the calls stream's with another suffix (same hash tag, same slot),
// so they are derived here instead of growing every batch's KEYS.
var enqueueScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local at, methods, seen = {}, {}, {}
local a = 3
for c = 1, n do
  at[c] = a
  if not seen[ARGV[a]] then seen[ARGV[a]] = true; table.insert(methods, ARGV[a]) end
  a = a + 6 + tonumber(ARGV[a + 5])
end
-- A priority stream (KEYS[1] is not the handler's plain one): the first
-- call with a priority creates both priority streams and sets the marker.
local pre = string.sub(KEYS[2], 1, -8)
if string.sub(KEYS[1], -6) ~= ':calls' and redis.call('HSETNX', pre .. 'limits', '` + limitPriorities + `', '1') == 1 then
  for _, p in ipairs({'high', 'low'}) do
    if redis.call('EXISTS', pre .. 'calls:' .. p) == 0 then
      redis.call('XGROUP', 'CREATE', pre .. 'calls:' .. p, '` + Group + `', '0', 'MKSTREAM')
    end
  end
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
    local st = ARGV[a + 3]
    if out[c] == nil and st ~= '' and string.byte(st) == 115 then
      -- 's': a scheduled call (state "s<handler> <due ms>", see scheduledState).
      -- Its envelope waits in the scheduled hash and its id in the delayed
      -- set until the forwarder moves it; it is not in the backlog yet.
      local cid, due = ARGV[a + 7], tonumber(string.match(st, ' (%d+)$'))
      redis.call('HSET', pre .. 'scheduled', cid, cjson.encode({unpack(ARGV, a + 6, a + 5 + tonumber(ARGV[a + 5]))}))
      redis.call('ZADD', pre .. 'delayed', due, cid)
      if idv ~= '' then redis.call('SET', ik, idv, 'PX', ARGV[a + 2]) end
      redis.call('SET', rk, st, 'PX', ARGV[a + 4])
      -- Wake the forwarders if this call is now the first due: they sleep
      -- until the earliest due time they know of.
      if redis.call('ZRANGE', pre .. 'delayed', 0, 0)[1] == cid then
        redis.call('PUBLISH', pre .. 'cancel', '` + DueNotice + `')
      end
      out[c] = {'new', ''}
    end
    if out[c] == nil then
      if backlog and backlog >= limit then
        out[c] = {'err', 'BACKLOG'}
      else
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 6, a + 5 + tonumber(ARGV[a + 5])))
        if backlog then backlog = backlog + 1 end
        if idv ~= '' then redis.call('SET', ik, idv, 'PX', ARGV[a + 2]) end
        if st ~= '' then redis.call('SET', rk, st .. id, 'PX', ARGV[a + 4]) end
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
	prio    Priority
	keys    [2]string // idempotency key, result key
	args    []any     // this call's part of enqueueScript's ARGV
	limit   int64     // the edge's backlog limit
	// set by sendEnqueues
	kind, value string
}

// sendEnqueues runs one enqueueScript per handler in the batch, all in one
// pipeline.
func (c *Client) sendEnqueues(ctx context.Context, batch []*enqueueOp) {
	// Grouped by handler and priority: plain calls keep their one script run.
	order, groups := groupBy(batch, func(o *enqueueOp) string {
		if o.prio == PriorityNormal {
			return o.handler // no allocation for a plain call
		}
		return o.handler + "\x00" + string(o.prio)
	})
	calls := make([]*scriptCall, len(order))
	for i, g := range order {
		ops := groups[g]
		h := ops[0].handler
		keys := make([]string, 0, 2+2*len(ops))
		keys = append(keys, priorityStreamKey(h, ops[0].prio), methodsKey(h))
		args := make([]any, 0, 2+len(ops)*len(ops[0].args))
		args = append(args, ops[0].limit, len(ops))
		for _, o := range ops {
			keys = append(keys, o.keys[0], o.keys[1])
			args = append(args, o.args...)
		}
		calls[i] = &scriptCall{script: enqueueScript, keys: keys, args: args}
	}
	durable := c.runScripts(ctx, calls)
	for i, g := range order {
		ops := groups[g]
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
	// ScheduleAt, if set (with Async), keeps the call out of the stream
	// until then: it is scheduled, and the forwarder moves it when due.
	ScheduleAt time.Time
	// Priority puts the call in its priority's stream (priority.go). A
	// scheduled call is forwarded to the normal stream when due: its
	// priority is ignored.
	Priority Priority
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
	o := c.newEnqueueOp(call, opts)
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
		if o.value == "" {
			return Enqueued{ID: call.ID}, nil
		}
		return Enqueued{ID: call.ID, StreamID: entryRef(o.prio, o.value)}, nil
	}
	return Enqueued{}, fmt.Errorf("streams: enqueue: unexpected reply %q %q", o.kind, o.value)
}

// newEnqueueOp builds the enqueue script's keys and arguments for call: one
// op of a batch (sendEnqueues).
func (c *Client) newEnqueueOp(call *Call, opts EnqueueOptions) *enqueueOp {
	o := &enqueueOp{handler: call.Handler, limit: opts.BacklogLimit}
	if opts.ScheduleAt.IsZero() {
		o.prio = opts.Priority
	}
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
	ttl := call.ResultTTL
	if ttl <= 0 {
		ttl = c.opts.ResultTTL
	}
	stateTTL := ttl
	if opts.Async {
		o.keys[1] = resultKey(call.ID)
		if opts.ScheduleAt.IsZero() {
			// the script appends the entry id: a reference (priority.go)
			state = queuedState(call.Handler, refPrefix(o.prio))
		} else {
			// The state must outlive the wait, the run and the result's time.
			state = scheduledState(call.Handler, opts.ScheduleAt)
			stateTTL += max(time.Until(call.Deadline), 0)
		}
	}
	o.args = make([]any, 0, 26)
	o.args = append(o.args, call.Method, idemValue, idemTTL, state, stateTTL.Milliseconds(), 0)
	o.args = call.appendFields(o.args)
	o.args[5] = len(o.args) - 6
	return o
}
