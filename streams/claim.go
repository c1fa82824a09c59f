package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Taking calls over: from consumers declared dead (no heartbeat), from
// consumers that stopped renewing their leases, and renewing the leases of
// running calls.

// claimScript takes over calls whose consumer has not renewed its lease for
// minIdle (it crashed or hung), with each one's delivery count, from the
// handler's calls stream and its priority streams (priority.go), those
// first, while they exist.
//
//	KEYS[1] the handler's calls stream, KEYS[2..] its priority streams
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] count
//	returns {{id, fields}...}, {deliveries...}, {key index of each...}
var claimScript = redis.NewScript(`
local want = tonumber(ARGV[4])
local entries, counts, from = {}, {}, {}
local order = {}
for k = 2, #KEYS do order[#order + 1] = k end
order[#order + 1] = 1
for _, k in ipairs(order) do
  if #entries < want and (k == 1 or redis.call('EXISTS', KEYS[k]) == 1) then
    local res = redis.call('XAUTOCLAIM', KEYS[k], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', want - #entries)
    for _, e in ipairs(res[2]) do
      if e and e[1] then
        local p = redis.call('XPENDING', KEYS[k], ARGV[1], e[1], e[1], 1)
        table.insert(entries, e)
        table.insert(counts, (p[1] and p[1][4]) or 1)
        table.insert(from, k)
      end
    end
  end
end
return {entries, counts, from}
`)

// sweptStreams are the keys of claimScript and rescueScript for handler:
// the calls stream, then the priority streams.
func sweptStreams(handler string) []string {
	return []string{callsKey(handler), priorityStreamKey(handler, PriorityHigh), priorityStreamKey(handler, PriorityLow)}
}

// sweptPriority is the priority of claimScript's key index v (1-based).
func sweptPriority(v any) Priority {
	switch v, _ := v.(int64); v {
	case 2:
		return PriorityHigh
	case 3:
		return PriorityLow
	}
	return PriorityNormal
}

// Claim takes over up to count calls that have been pending for longer than
// minIdle: their consumer died or stopped renewing their lease.
func (c *Client) Claim(ctx context.Context, handler, consumer string, minIdle time.Duration, count int64) ([]Delivery, error) {
	res, err := claimScript.Run(ctx, c.rdb, sweptStreams(handler), Group, consumer, minIdle.Milliseconds(), count).Slice()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if len(res) != 3 {
		return nil, fmt.Errorf("streams: claim: unexpected reply %v", res)
	}
	entries, _ := res[0].([]any)
	counts, _ := res[1].([]any)
	keys, _ := res[2].([]any)
	out := decodeClaimed(handler, entries, counts, keys)
	now := time.Now()
	for i := range out {
		out[i].Claimed = fmt.Sprintf("its lease was not renewed for %s; claimed by %s", minIdle, consumer)
		out[i].ClaimedAt = now
	}
	return out, nil
}

// rescueScript takes over the calls of the handler's consumers that were
// declared dead: their last heartbeat (srpc:{h}:consumers, written with
// Redis's clock) is older than the dead-after time. A consumer that holds
// calls but has no heartbeat at all (it deregistered, leaving calls it could
// not finish, or it never heartbeated) is dead once it has not touched the
// stream for the dead-after time either. Each dead consumer's pending calls
// are claimed at once (XPENDING … consumer, then XCLAIM, which counts a
// delivery), up to the given number; a dead consumer that holds nothing
// more is removed from the group (XGROUP DELCONSUMER) and the registry. It
// runs in the handler's slot: every key is the handler's.
//
// The priority streams (priority.go), while they exist, are swept first, in
// the same way except that a dead consumer leaves the registry only in the
// calls stream's pass, which sees its heartbeat.
//
//	KEYS[1] calls stream, KEYS[2] consumers zset, KEYS[3] consumer info hash,
//	KEYS[4..] the priority streams
//	ARGV[1] group, ARGV[2] the claiming consumer, ARGV[3] dead after ms,
//	ARGV[4] most calls to claim
//	returns {{id, fields}...}, {deliveries...}, {the dead consumer of each...},
//	{each dead consumer removed...}, {key index of each call...}
var rescueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadAfter = tonumber(ARGV[3])
local cutoff = now - deadAfter
local want = tonumber(ARGV[4])
local entries, counts, from, removed, keyOf = {}, {}, {}, {}, {}
local inGroup = {}
local order = {}
for k = 4, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then order[#order + 1] = k end
end
order[#order + 1] = 1
for _, k in ipairs(order) do
local sk = KEYS[k]
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', sk, ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local name = f['name']
  if k == 1 then inGroup[name] = true end
  if name ~= ARGV[2] then
    local score = redis.call('ZSCORE', KEYS[2], name)
    local dead
    if score then dead = tonumber(score) < cutoff else dead = tonumber(f['idle']) >= deadAfter end
    if dead then
      local pending = tonumber(f['pending'])
      if pending > 0 and #entries < want then
        local ids, seen = {}, {}
        for _, p in ipairs(redis.call('XPENDING', sk, ARGV[1], '-', '+', want - #entries, name)) do
          ids[#ids + 1] = p[1]
          seen[p[1]] = p[4]
        end
        local claimed = {}
        if #ids > 0 then claimed = redis.call('XCLAIM', sk, ARGV[1], ARGV[2], 0, unpack(ids)) end
        for _, e in ipairs(claimed) do
          if e and e[1] then
            entries[#entries + 1] = e
            counts[#counts + 1] = seen[e[1]] + 1
            from[#from + 1] = name
            keyOf[#keyOf + 1] = k
          end
        end
        -- an entry deleted meanwhile leaves the PEL without being returned
        pending = #redis.call('XPENDING', sk, ARGV[1], '-', '+', 1, name)
      end
      if pending == 0 then
        redis.call('XGROUP', 'DELCONSUMER', sk, ARGV[1], name)
        if k == 1 then
          redis.call('ZREM', KEYS[2], name)
          redis.call('HDEL', KEYS[3], name)
          removed[#removed + 1] = name
        end
      end
    end
  end
end
end
-- dead consumers that never read (not in the group) leave the registry too
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, 16)) do
  if not inGroup[name] and name ~= ARGV[2] then
    redis.call('ZREM', KEYS[2], name)
    redis.call('HDEL', KEYS[3], name)
    removed[#removed + 1] = name
  end
end
return {entries, counts, from, removed, keyOf}
`)

// Rescued is what one dead-consumer sweep did.
type Rescued struct {
	Deliveries []Delivery // calls taken over, each with Claimed set
	Removed    []string   // dead consumers removed from the group and the registry
}

// ClaimFromDead takes over, for consumer, up to count calls held by the
// handler's consumers that were declared dead (no heartbeat for deadAfter:
// see rescueScript). It is one script run, whatever it finds; each consumer
// runs it every heartbeat interval while it has free slots, never per call.
func (c *Client) ClaimFromDead(ctx context.Context, handler, consumer string, deadAfter time.Duration, count int64) (Rescued, error) {
	sk := sweptStreams(handler)
	keys := []string{sk[0], consumersKey(handler), consumerInfoKey(handler), sk[1], sk[2]}
	res, err := rescueScript.Run(ctx, c.rdb, keys, Group, consumer, deadAfter.Milliseconds(), count).Slice()
	if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "ERR no such key") {
		return Rescued{}, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return Rescued{}, unavailable(err)
	}
	if len(res) != 5 {
		return Rescued{}, fmt.Errorf("streams: rescue: unexpected reply %v", res)
	}
	entries, _ := res[0].([]any)
	counts, _ := res[1].([]any)
	from, _ := res[2].([]any)
	var out Rescued
	keyOf, _ := res[4].([]any)
	ds := decodeClaimed(handler, entries, counts, sweptIndexes(keyOf))
	now := time.Now()
	for i := range ds {
		dead := ""
		if i < len(from) {
			dead, _ = from[i].(string)
		}
		ds[i].Claimed = fmt.Sprintf("consumer %s stopped heartbeating (no heartbeat for %s); claimed by %s", dead, deadAfter, consumer)
		ds[i].ClaimedAt = now
	}
	out.Deliveries = ds
	removed, _ := res[3].([]any)
	for _, r := range removed {
		if name, ok := r.(string); ok {
			out.Removed = append(out.Removed, name)
		}
	}
	return out, nil
}

// sweptIndexes maps rescueScript's key indexes (priority streams at 4 and
// 5) to claimScript's (2 and 3).
func sweptIndexes(keyOf []any) []any {
	out := make([]any, len(keyOf))
	for i, v := range keyOf {
		if k, _ := v.(int64); k >= 4 {
			v = k - 2
		}
		out[i] = v
	}
	return out
}

// decodeClaimed turns claimed entries, their delivery counts and the key
// index of their stream (claimScript's) into deliveries.
func decodeClaimed(handler string, entries, counts, keys []any) []Delivery {
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
		p := PriorityNormal
		if i < len(keys) {
			p = sweptPriority(keys[i])
		}
		out = append(out, newDelivery(handler, redis.XMessage{ID: entryRef(p, id), Values: values}, n))
	}
	return out
}

// leaseScript renews the lease of the entries ids for consumer: only those
// it still owns (XPENDING names the owner), so that a consumer that was
// declared dead and wakes up does not take back calls another consumer
// claimed meanwhile. XCLAIM JUSTID resets their idle time and does not count
// a delivery.
//
//	KEYS[1] the handler's calls stream
//	ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
//	returns the ids this consumer no longer owns (settled, or claimed by another)
var leaseScript = redis.NewScript(`
local mine, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #mine > 0 then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine), 'JUSTID') end
return lost
`)

// ExtendLease tells the group that consumer is still working on the entries
// ids, so that no one claims them. It returns the ids this consumer no
// longer holds: another consumer claimed them (this one was declared dead)
// or they were settled.
func (c *Client) ExtendLease(ctx context.Context, handler, consumer string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// One script run per stream the ids are in (priority.go), one pipeline.
	var calls []*scriptCall
	var prios []Priority
	byPrio := map[Priority]int{}
	for _, ref := range ids {
		p, id := splitRef(ref)
		i, ok := byPrio[p]
		if !ok {
			i = len(calls)
			byPrio[p] = i
			prios = append(prios, p)
			calls = append(calls, &scriptCall{script: leaseScript, keys: []string{priorityStreamKey(handler, p)}, args: []any{Group, consumer}})
		}
		calls[i].args = append(calls[i].args, id)
	}
	runScripts(ctx, c.rdb, calls)
	var lost []string
	for i, sc := range calls {
		l, err := sc.cmd.StringSlice()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case redis.HasErrorPrefix(err, "NOGROUP"):
			l = l[:0]
			for _, a := range sc.args[2:] {
				l = append(l, a.(string))
			}
		case err != nil:
			return lost, unavailable(err)
		}
		for _, id := range l {
			lost = append(lost, entryRef(prios[i], id))
		}
	}
	return lost, nil
}
