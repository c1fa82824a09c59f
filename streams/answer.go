package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Answering calls: a batch of answered calls settled in one script run, and
// their replies handed to the edges waiting for them.

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
// holds the call settles it. The check is one XPENDING per batch, not per
// call: over the range of the batch's entry ids, filtered to this consumer,
// capped at 4 entries per call (the range also holds the consumer's other
// calls in flight); a call absent from a capped answer is checked on its own.
// Settled entries are then deleted, so the stream's length is the backlog.
// Stats are not written here: the recorder adds them up and writes them a
// few times a second (see recorder.go).
//
//	KEYS[1] calls stream, KEYS[1+c] call c's result key,
//	KEYS[1+n+e] reply stream of edge e (1-based), when the replies go here
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] n, ARGV[4] reply stream max
//	length, or '' when the replies are not appended here (Redis Cluster),
//	ARGV[5] and ARGV[6] the lowest and highest entry id of the batch,
//	ARGV[7] the cap of the batch's XPENDING,
//	then per call 5 values: entry id, call id, encoded reply, result TTL ms,
//	edge e (0: no edge waits, or replies not appended here)
//	returns per call 1 (settled here) or 0 (already settled elsewhere)
//
// A reply stream that no longer exists (its edge is gone) is not recreated
// (NOMKSTREAM): the result stays readable by id.
var answerScript = redis.NewScript(`
local n = tonumber(ARGV[3])
local pending = {}
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[5], ARGV[6], ARGV[7], ARGV[2])
for i = 1, #p do pending[p[i][1]] = true end
local capped = #p >= tonumber(ARGV[7])
local mine, owned = {}, {}
for c = 1, n do
  local id = ARGV[3 + 5 * c]
  local ok = pending[id]
  if not ok and capped then
    local q = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
    ok = q[1] ~= nil
  end
  if ok and not mine[id] then
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
  local a = 3 + 5 * c
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
	group string // handler, consumer and priority: the ops one script run can carry
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
		_, rest, _ := strings.Cut(g, "\x00")
		consumer, _, _ := strings.Cut(rest, "\x00")
		keys := make([]string, 1, 2+len(ops))
		keys[0] = ops[0].d.streamKey()
		var edges map[string]int
		var edgeKeys []string
		args := make([]any, 0, 7+5*len(ops))
		low, high := entryRange(ops)
		args = append(args, Group, consumer, len(ops), maxLen, low, high, answerPendingPerCall*len(ops))
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
			args = append(args, o.d.entryID(), o.d.Call.ID, o.reply, o.ttl, e)
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

// answerPendingPerCall caps the answer script's XPENDING over the batch's
// range at this many entries per call in the batch: the range also holds
// the consumer's other calls in flight, a few times the batch under load.
const answerPendingPerCall = 4

// entryRange returns the lowest and highest entry id of the ops, as
// XPENDING's range; the whole stream ("-", "+") if one cannot be parsed
// (never, for ids Redis gave).
func entryRange(ops []*answerOp) (low, high string) {
	var lo, hi streamID
	for i, o := range ops {
		entry := o.d.entryID()
		id, ok := parseStreamID(entry)
		if !ok {
			return "-", "+"
		}
		if i == 0 || id.less(lo) {
			lo, low = id, entry
		}
		if i == 0 || hi.less(id) {
			hi, high = id, entry
		}
	}
	return low, high
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

// Finish acks the delivery and publishes its reply. Calls finished at the
// same time share one script run. It reports whether this consumer settled
// the call (false: someone else had).
func (c *Client) Finish(ctx context.Context, d *Delivery, reply Reply, run Run) (bool, error) {
	ttl := c.resultTTL(d)
	o := &answerOp{d: d, reply: reply.encode(), ttl: ttl.Milliseconds(), group: d.Handler + "\x00" + run.Consumer + "\x00" + refPrefix(d.Priority())}
	if err := c.answers.do(ctx, o); err != nil {
		return false, unavailable(err)
	}
	if o.settled {
		c.recorder.record(settledOf(d, settleAnswer, reply, run, "", ttl))
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
	o := &answerOp{d: d, reply: reply.encode(), ttl: ttl.Milliseconds(), group: d.Handler + "\x00" + run.Consumer + "\x00" + refPrefix(d.Priority())}
	c.answers.post(ctx, o, func() {
		if cancel != nil {
			cancel()
		}
		if o.err != nil {
			done(false, unavailable(o.err))
			return
		}
		if o.settled {
			c.recorder.record(settledOf(d, settleAnswer, reply, run, "", ttl))
		}
		done(o.settled, nil)
	})
}
