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
	out := decodeClaimed(handler, entries, counts)
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
//	KEYS[1] calls stream, KEYS[2] consumers zset, KEYS[3] consumer info hash
//	ARGV[1] group, ARGV[2] the claiming consumer, ARGV[3] dead after ms,
//	ARGV[4] most calls to claim
//	returns {{id, fields}...}, {deliveries...}, {the dead consumer of each...},
//	{each dead consumer removed...}
var rescueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadAfter = tonumber(ARGV[3])
local cutoff = now - deadAfter
local want = tonumber(ARGV[4])
local entries, counts, from, removed = {}, {}, {}, {}
local inGroup = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local name = f['name']
  inGroup[name] = true
  if name ~= ARGV[2] then
    local score = redis.call('ZSCORE', KEYS[2], name)
    local dead
    if score then dead = tonumber(score) < cutoff else dead = tonumber(f['idle']) >= deadAfter end
    if dead then
      local pending = tonumber(f['pending'])
      if pending > 0 and #entries < want then
        local ids, seen = {}, {}
        for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', want - #entries, name)) do
          ids[#ids + 1] = p[1]
          seen[p[1]] = p[4]
        end
        local claimed = {}
        if #ids > 0 then claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids)) end
        for _, e in ipairs(claimed) do
          if e and e[1] then
            entries[#entries + 1] = e
            counts[#counts + 1] = seen[e[1]] + 1
            from[#from + 1] = name
          end
        end
        -- an entry deleted meanwhile leaves the PEL without being returned
        pending = #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, name)
      end
      if pending == 0 then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
        redis.call('ZREM', KEYS[2], name)
        redis.call('HDEL', KEYS[3], name)
        removed[#removed + 1] = name
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
return {entries, counts, from, removed}
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
	keys := []string{callsKey(handler), consumersKey(handler), consumerInfoKey(handler)}
	res, err := rescueScript.Run(ctx, c.rdb, keys, Group, consumer, deadAfter.Milliseconds(), count).Slice()
	if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "ERR no such key") {
		return Rescued{}, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return Rescued{}, unavailable(err)
	}
	if len(res) != 4 {
		return Rescued{}, fmt.Errorf("streams: rescue: unexpected reply %v", res)
	}
	entries, _ := res[0].([]any)
	counts, _ := res[1].([]any)
	from, _ := res[2].([]any)
	var out Rescued
	ds := decodeClaimed(handler, entries, counts)
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

// decodeClaimed turns claimed entries and their delivery counts into
// deliveries.
func decodeClaimed(handler string, entries, counts []any) []Delivery {
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
	args := make([]any, 0, 2+len(ids))
	args = append(args, Group, consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	lost, err := leaseScript.Run(ctx, c.rdb, []string{callsKey(handler)}, args...).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return ids, nil
	}
	return lost, unavailable(err)
}
