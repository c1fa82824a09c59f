package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	// Claimed says why this consumer took the call over from another (empty
	// on a first read): the call's story shows it.
	Claimed   string
	ClaimedAt time.Time
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

// answerScript settles a batch of answered calls of one handler, taken by one
// consumer, in one run: it keeps each reply under its call id and, on one
// Redis (not a Cluster), hands the replies to the waiting edges, one stream
// entry per edge. On Redis Cluster an edge's reply stream is in another hash
// slot (it collects replies of every handler) and a script may only touch
// keys of one slot, so publishReplies appends them afterwards, a second round
// trip (see docs/scaling.md for what it costs).
//
// A call is settled only if it is still pending for this consumer (XPENDING
// names its owner; it is acked at once). One that is not was settled by
// another consumer after a redelivery, or claimed by another consumer when
// this one was declared dead (it stopped heartbeating: a SIGSTOP, a long GC
// pause, a partition) and woke up late: its reply is dropped here, and not
// published, so a caller never gets a second reply, and the run that now
// holds the call settles it. Settled entries are then deleted, so the
// stream's length is the backlog. Stats are not written
// here: the recorder adds them up and writes them a few times a second (see
// recorder.go).
//
//	KEYS[1] calls stream, KEYS[1+c] call c's result key,
//	KEYS[1+n+e] reply stream of edge e (1-based), when the replies go here
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] n, ARGV[4] reply stream max
//	length, or '' when the replies are not appended here (Redis Cluster),
//	then per call 5 values: entry id, call id, encoded reply, result TTL ms,
//	edge e (0: no edge waits, or replies not appended here)
//	returns per call 1 (settled here) or 0 (already settled elsewhere)
//
// A reply stream that no longer exists (its edge is gone) is not recreated
// (NOMKSTREAM): the result stays readable by id.
var answerScript = redis.NewScript(`
local n = tonumber(ARGV[3])
local mine, owned = {}, {}
for c = 1, n do
  local id = ARGV[5 * c]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] and not mine[id] then
    mine[id] = true
    owned[#owned + 1] = id
  end
end
if #owned > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(owned))
  redis.call('XDEL', KEYS[1], unpack(owned))
end
local out, per = {}, {}
for c = 1, n do
  local a = 5 * c
  if mine[ARGV[a]] then
    redis.call('SET', KEYS[1 + c], ARGV[a + 2], 'PX', ARGV[a + 3])
    local e = tonumber(ARGV[a + 4])
    if e > 0 then
      local f = per[e]
      if not f then f = {}; per[e] = f end
      f[#f + 1] = ARGV[a + 1]
      f[#f + 1] = ARGV[a + 2]
    end
    out[c] = 1
  else
    out[c] = 0
  end
end
for e, f in pairs(per) do
  redis.call('XADD', KEYS[1 + n + e], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[4], '*', unpack(f))
end
return out
`)

// answerOp is one answered call waiting in the answer batcher.
type answerOp struct {
	pending
	d     *Delivery
	reply []byte // encoded
	ttl   int64  // ms
	group string // handler and consumer: the ops one script run can carry
	// set by sendAnswers
	settled bool
}

// sendAnswers runs one answerScript per handler and consumer in the batch,
// all in one pipeline. On Redis Cluster it then publishes the settled calls'
// replies to their edges in a second one: one XADD per edge.
func (c *Client) sendAnswers(ctx context.Context, batch []*answerOp) {
	order, groups := groupBy(batch, func(o *answerOp) string { return o.group })
	calls := make([]*scriptCall, len(order))
	maxLen := any("")
	if c.inlineReplies {
		maxLen = c.opts.ReplyStreamMaxLen
	}
	for i, g := range order {
		ops := groups[g]
		handler, consumer, _ := strings.Cut(g, "\x00")
		keys := make([]string, 1, 2+len(ops))
		keys[0] = callsKey(handler)
		var edges map[string]int
		var edgeKeys []string
		args := make([]any, 0, 4+5*len(ops))
		args = append(args, Group, consumer, len(ops), maxLen)
		for _, o := range ops {
			keys = append(keys, resultKey(o.d.Call.ID))
			e := 0
			if to := o.d.Call.ReplyTo; c.inlineReplies && to != "" {
				if edges == nil {
					edges = map[string]int{}
				}
				var ok bool
				if e, ok = edges[to]; !ok {
					edgeKeys = append(edgeKeys, replyKey(to))
					e = len(edgeKeys)
					edges[to] = e
				}
			}
			args = append(args, o.d.StreamID, o.d.Call.ID, o.reply, o.ttl, e)
		}
		keys = append(keys, edgeKeys...)
		calls[i] = &scriptCall{script: answerScript, keys: keys, args: args}
	}
	durable := c.runScripts(ctx, calls)
	var replies edgeReplies
	errs := make([]error, len(order))
	for i, g := range order {
		ops := groups[g]
		res, err := calls[i].cmd.Int64Slice()
		if err == nil && len(res) != len(ops) {
			err = fmt.Errorf("streams: answer: unexpected reply %v", res)
		}
		if err == nil && durable != nil && durable[i] != nil {
			// Settled on the primary, not confirmed by its replicas: the
			// consumer hears of it, the caller gets the reply all the same.
			slog.Warn("streams: settled calls not confirmed by replicas", "handler", ops[0].d.Handler, "calls", len(ops), "err", durable[i])
		}
		errs[i] = err
		for j, o := range ops {
			if err == nil {
				o.settled = res[j] == 1
				if o.settled && !c.inlineReplies {
					replies.add(o.d.Call.ReplyTo, o.d.Call.ID, o.reply)
				}
			}
		}
	}
	// The calls are settled and their results kept whatever happens to the
	// replies: an edge that misses one finds the result by id (see
	// app/waiters.go). The callers wait for the publish all the same, so that
	// a settled call's reply is on its way when Finish returns.
	c.publishReplies(ctx, replies)
	for i, g := range order {
		for _, o := range groups[g] {
			o.complete(errs[i])
		}
	}
}

// edgeReplies are settled calls' replies by the edge waiting for them: the
// field/value pairs (call id, encoded reply) of one reply stream entry each.
type edgeReplies struct {
	edges []string
	pairs map[string][]any
}

func (r *edgeReplies) add(edgeID, callID string, reply []byte) {
	if edgeID == "" { // no edge waits: an async call, or a replayed dead letter
		return
	}
	if r.pairs == nil {
		r.pairs = map[string][]any{}
	}
	if _, ok := r.pairs[edgeID]; !ok {
		r.edges = append(r.edges, edgeID)
	}
	r.pairs[edgeID] = append(r.pairs[edgeID], callID, reply)
}

// publishReplies appends one entry per edge to the edges' reply streams, in
// one pipeline. A reply stream that no longer exists (its edge is gone) is
// not recreated (NOMKSTREAM). A failure is only logged: the replies' results
// are kept, and the edges look them up for calls that wait too long.
func (c *Client) publishReplies(ctx context.Context, r edgeReplies) {
	if len(r.edges) == 0 {
		return
	}
	pipe := c.rdb.Pipeline()
	for _, e := range r.edges {
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: replyKey(e), NoMkStream: true, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: r.pairs[e],
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		slog.Debug("streams: publishing replies failed; edges will read the results", "edges", len(r.edges), "err", err)
	}
}

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
		return OutcomeOK
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

func (c *Client) resultTTL(d *Delivery) time.Duration {
	if d.Call.ResultTTL > 0 {
		return d.Call.ResultTTL
	}
	return c.opts.ResultTTL
}

// settle runs settleScript for a retry or a dead letter.
func (c *Client) settle(ctx context.Context, d *Delivery, mode string, reply Reply, run Run, detail string, extra ...any) (bool, error) {
	ttl := c.resultTTL(d)
	rec := settledOf(d, mode, reply, run, detail, ttl)
	events := rec.runEvents()
	args := make([]any, 0, 13+len(events)+len(extra))
	encoded := reply.encode()
	keys := []string{callsKey(d.Handler), resultKey(d.Call.ID), delayedKey(d.Handler), deadKey(d.Handler), storyKey(d.Call.ID)}
	maxLen := any("")
	inline := c.inlineReplies && d.Call.ReplyTo != ""
	if inline {
		keys = append(keys, replyKey(d.Call.ReplyTo))
		maxLen = c.opts.ReplyStreamMaxLen
	}
	args = append(args, Group, d.StreamID, mode, d.Call.ID, encoded, ttl.Milliseconds(), maxLen,
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
		if mode == "dead" && !inline {
			var r edgeReplies
			r.add(d.Call.ReplyTo, d.Call.ID, encoded)
			c.publishReplies(ctx, r)
		}
	}
	return n == 1, nil
}

// Finish acks the delivery and publishes its reply. Calls finished at the
// same time share one script run. It reports whether this consumer settled
// the call (false: someone else had).
func (c *Client) Finish(ctx context.Context, d *Delivery, reply Reply, run Run) (bool, error) {
	ttl := c.resultTTL(d)
	o := &answerOp{d: d, reply: reply.encode(), ttl: ttl.Milliseconds(), group: d.Handler + "\x00" + run.Consumer}
	if err := c.answers.do(ctx, o); err != nil {
		return false, unavailable(err)
	}
	if o.settled {
		c.recorder.record(settledOf(d, "answer", reply, run, "", ttl))
	}
	return o.settled, nil
}

// FinishAsync is Finish without waiting: done runs once the answer is
// settled (or failed: err is then as Finish's), on the goroutine that
// completed it (the answer batcher's, or the caller's when it sent the batch
// itself); done must be quick and must not block. ctx bounds the attempt;
// cancel (may be nil) is called before done.
func (c *Client) FinishAsync(ctx context.Context, cancel context.CancelFunc, d *Delivery, reply Reply, run Run, done func(settled bool, err error)) {
	ttl := c.resultTTL(d)
	o := &answerOp{d: d, reply: reply.encode(), ttl: ttl.Milliseconds(), group: d.Handler + "\x00" + run.Consumer}
	c.answers.post(ctx, o, func() {
		if cancel != nil {
			cancel()
		}
		if o.err != nil {
			done(false, unavailable(o.err))
			return
		}
		if o.settled {
			c.recorder.record(settledOf(d, "answer", reply, run, "", ttl))
		}
		done(o.settled, nil)
	})
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
