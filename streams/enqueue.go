package streams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// enqueueScript appends a batch of calls to one handler's stream: each one
// whose method a consumer has registered, if the backlog has room and its
// idempotency key (if any) has not been used. One run serves every call the
// edge's batcher took together: one registry read and one backlog read per
// batch, one XADD per call.
//
//	KEYS[1] the handler's calls stream (of the batch's priority: priority.go)
//	KEYS[2] the handler's methods hash
//	then two keys per call that has options (o = '1' below), in call order:
//	  its idempotency key (a placeholder when it has none), and its result
//	  key, where an async call's state is recorded at once ("queued", with
//	  where to find the entry)
//	ARGV[1] the edge's backlog limit (0: none); the handler's registered one wins
//	ARGV[2] n, the number of calls
//	then per call: o ('1': the call has options, '': none), k, the values of
//	the envelope's fixed fields (enqueueFixedFields, in that order: the
//	second is the method), the k field/value strings of its optional
//	fields, and when o is '1' its options: idempotency value "<call id>
//	<fingerprint>" or '', idempotency TTL ms, async state value or '', result
//	TTL ms
//	returns per call one string: 'n' and the entry id (nothing after the 'n'
//	for a scheduled call), 'd' and the first call's id, or 'e' and a code:
//	NOHANDLER, NOMETHOD, BACKLOG or IDEMMISMATCH (one flat array of strings,
//	not a table per call: cheaper for Lua to build and Redis to encode)
//
// A scheduled call (its async state starts with 's') is not appended: it
// goes to the handler's scheduled hash and delayed set, and its forwarders
// are woken on the handler's cancel channel when it is the first due. Those
// keys are the calls stream's with another suffix (same hash tag, same slot),
// so they are derived here instead of growing every batch's KEYS.
//
// The envelope's field names are in the script, not sent per call, and a
// plain call (no idempotency key, not async) sends no options and no keys:
// each value sent costs Redis a string to parse and one to push into Lua, so
// a plain call sends 11 values instead of 26.
var enqueueScript = redis.NewScript(`
local F = {` + enqueueFieldsLua + `}
local n = tonumber(ARGV[2])
local at, ks, methods, seen = {}, {}, {}, {}
local a, kx = 3, 3
for c = 1, n do
  at[c] = a
  local m = ARGV[a + 3]
  if not seen[m] then seen[m] = true; table.insert(methods, m) end
  a = a + 2 + #F + tonumber(ARGV[a + 1])
  if ARGV[at[c]] == '1' then
    ks[c] = kx
    kx = kx + 2
    a = a + 4
  end
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
  -- v: the first fixed field's value; x: past the optional fields, where
  -- the options are (when o is '1')
  local v, x = a + 2, a + 2 + #F + tonumber(ARGV[a + 1])
  local idv, st, ik, rk = '', '', nil, nil
  if ks[c] then
    idv, st = ARGV[x], ARGV[x + 2]
    ik, rk = KEYS[ks[c]], KEYS[ks[c] + 1]
  end
  if not known[ARGV[v + 1]] then
    if exists == nil then exists = redis.call('EXISTS', KEYS[2]) end
    if exists == 0 then out[c] = 'eNOHANDLER' else out[c] = 'eNOMETHOD' end
  else
    if idv ~= '' then
      local prev = redis.call('GET', ik)
      if prev then
        local sp = string.find(prev, ' ', 1, true)
        if string.sub(prev, sp + 1) ~= string.sub(idv, string.find(idv, ' ', 1, true) + 1) then
          out[c] = 'eIDEMMISMATCH'
        else
          out[c] = 'd' .. string.sub(prev, 1, sp - 1)
        end
      end
    end
    if out[c] == nil and st ~= '' and string.byte(st) == 115 then
      -- 's': a scheduled call (state "s<handler> <due ms>", see scheduledState).
      -- Its envelope waits in the scheduled hash and its id in the delayed
      -- set until the forwarder moves it; it is not in the backlog yet.
      -- The envelope as field/value strings, as the stream entry has them.
      local env = {}
      for i = 1, #F do env[2 * i - 1] = F[i]; env[2 * i] = ARGV[v + i - 1] end
      for i = v + #F, x - 1 do env[#env + 1] = ARGV[i] end
      local cid, due = ARGV[v], tonumber(string.match(st, ' (%d+)$'))
      redis.call('HSET', pre .. 'scheduled', cid, cjson.encode(env))
      redis.call('ZADD', pre .. 'delayed', due, cid)
      if idv ~= '' then redis.call('SET', ik, idv, 'PX', ARGV[x + 1]) end
      redis.call('SET', rk, st, 'PX', ARGV[x + 3])
      -- Wake the forwarders if this call is now the first due: they sleep
      -- until the earliest due time they know of.
      if redis.call('ZRANGE', pre .. 'delayed', 0, 0)[1] == cid then
        redis.call('PUBLISH', pre .. 'cancel', '` + DueNotice + `')
      end
      out[c] = 'n'
    end
    if out[c] == nil then
      if backlog and backlog >= limit then
        out[c] = 'eBACKLOG'
      else
        local id = redis.call('XADD', KEYS[1], '*', F[1], ARGV[v], F[2], ARGV[v + 1], F[3], ARGV[v + 2],
          F[4], ARGV[v + 3], F[5], ARGV[v + 4], F[6], ARGV[v + 5], F[7], ARGV[v + 6], F[8], ARGV[v + 7],
          F[9], ARGV[v + 8], unpack(ARGV, v + #F, x - 1))
        if backlog then backlog = backlog + 1 end
        if idv ~= '' then redis.call('SET', ik, idv, 'PX', ARGV[x + 1]) end
        if st ~= '' then redis.call('SET', rk, st .. id, 'PX', ARGV[x + 3]) end
        out[c] = 'n' .. id
      end
    end
  end
end
return out
`)

// enqueueFixedFields are the envelope fields every call has, in the order
// appendFields writes them: enqueueScript has their names, and a call sends
// only their values. The script's XADD names each of the 9.
var enqueueFixedFields = [9]string{fieldID, fieldMethod, fieldParams, fieldReplyTo, fieldDeadline, fieldAttempt, fieldEnqueued, fieldTTL, fieldCaller}

// enqueueFieldsLua is enqueueFixedFields as a Lua table's items.
var enqueueFieldsLua = "'" + strings.Join(enqueueFixedFields[:], "', '") + "'"

// enqueueOp is one call waiting in the enqueue batcher.
type enqueueOp struct {
	pending
	handler string
	prio    Priority
	options bool      // an idempotency key or an async state: keys and options are sent
	keys    [2]string // idempotency key, result key (sent when options)
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
			if o.options {
				keys = append(keys, o.keys[0], o.keys[1])
			}
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
			o.kind, o.value = enqueueOutcome(res[j])
			o.complete(nil)
		}
	}
}

// enqueueKinds are the outcomes enqueueScript returns, by their first byte.
var enqueueKinds = [256]string{'n': "new", 'd': "dup", 'e': "err"}

// enqueueOutcome splits one call's reply of enqueueScript (see its returns)
// into the outcome's kind ("new", "dup" or "err"; "" when the reply is not
// one of them, which Enqueue reports) and its value.
func enqueueOutcome(r any) (kind, value string) {
	s, _ := r.(string)
	if s == "" {
		return "", ""
	}
	return enqueueKinds[s[0]], s[1:]
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
	// o, k, the fixed fields' values, the optional fields, the options: see
	// enqueueScript. The envelope is appendFields' (one encoding of it),
	// less the fixed fields' names, compacted in place.
	o.options = idemValue != "" || state != ""
	o.args = make([]any, 0, 2+2*len(enqueueFixedFields)+10)
	o.args = append(o.args, "", 0)
	o.args = call.appendFields(o.args)
	fields := o.args[2:]
	nf := len(enqueueFixedFields)
	for i := range nf {
		fields[i] = fields[2*i+1]
	}
	k := copy(fields[nf:], fields[2*nf:])
	o.args = o.args[:2+nf+k]
	o.args[1] = k
	if o.options {
		o.args[0] = "1"
		o.args = append(o.args, idemValue, idemTTL, state, stateTTL.Milliseconds())
	}
	return o
}
