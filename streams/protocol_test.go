package streams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProtocol runs every script of the protocol (each redis.NewScript of
// this package) through the Client methods that use it, on each topology,
// and checks what they return and what they leave in Redis.
func TestProtocol(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			rdb := tp.client(t)
			_, cluster := rdb.(*redis.ClusterClient)
			for _, tc := range protocolCases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newProtoEnv(t, rdb, cluster))
				})
			}
		})
	}
}

// protoEnv is one case's world: a fresh Client, and a handler name no other
// case uses (so that cases share a Redis without flushing it).
type protoEnv struct {
	t       *testing.T
	ctx     context.Context
	rdb     redis.UniversalClient
	c       *Client
	h       string
	cluster bool
}

var protoSeq atomic.Int64

func newProtoEnv(t *testing.T, rdb redis.UniversalClient, cluster bool) *protoEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c := New(rdb, Options{})
	t.Cleanup(func() { _ = c.Close() })
	return &protoEnv{t: t, ctx: ctx, rdb: rdb, c: c, h: uniqueName("proto"), cluster: cluster}
}

// uniqueName is a name no earlier call returned in this process, and none
// of an earlier run (the topologies are fresh per run, but -count reuses them).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, protoSeq.Add(1))
}

const protoMethod = "echo"

func (e *protoEnv) register(h string, settings HandlerSettings) {
	e.t.Helper()
	if err := e.c.Register(e.ctx, HandlerInfo{Name: h, Methods: []MethodInfo{{Name: protoMethod}}}, settings); err != nil {
		e.t.Fatalf("register %s: %v", h, err)
	}
	if err := e.c.EnsureGroup(e.ctx, h); err != nil {
		e.t.Fatalf("ensure group %s: %v", h, err)
	}
}

func (e *protoEnv) newCall(h, replyTo string) *Call {
	now := time.Now()
	return &Call{
		ID: NewCallID(h), Handler: h, Method: protoMethod, Params: json.RawMessage(`{"n":1}`),
		ReplyTo: replyTo, Deadline: now.Add(time.Minute), Attempt: 1, EnqueuedAt: now,
	}
}

func (e *protoEnv) enqueue(call *Call, opts EnqueueOptions) Enqueued {
	e.t.Helper()
	res, err := e.c.Enqueue(e.ctx, call, opts)
	if err != nil {
		e.t.Fatalf("enqueue %s: %v", call.ID, err)
	}
	return res
}

// read takes n new calls as consumer; it fails unless exactly n come.
func (e *protoEnv) read(consumer string, n int) []Delivery {
	e.t.Helper()
	ds, err := e.c.ReadCalls(e.ctx, e.h, consumer, int64(n)+1, 100*time.Millisecond)
	if err != nil {
		e.t.Fatalf("read calls: %v", err)
	}
	if len(ds) != n {
		e.t.Fatalf("read %d calls, want %d", len(ds), n)
	}
	return ds
}

// takenMany registers e.h, opens a reply stream for a new edge, enqueues n
// calls replying to it and reads them as consumer.
func (e *protoEnv) takenMany(consumer string, n int) (edge string, ds []Delivery) {
	e.t.Helper()
	e.register(e.h, HandlerSettings{})
	edge = e.edge()
	for range n {
		e.enqueue(e.newCall(e.h, edge), EnqueueOptions{})
	}
	return edge, e.read(consumer, n)
}

// answerBatch settles ds, answered by consumer, in one answer script run
// (as the answer batcher sends calls finished together), and returns which
// were settled.
func (e *protoEnv) answerBatch(consumer string, ds ...*Delivery) []bool {
	e.t.Helper()
	ops := make([]*answerOp, len(ds))
	for i, d := range ds {
		ops[i] = &answerOp{d: d, reply: ResultReply(d.Call.ID, json.RawMessage(`1`)).encode(), ttl: 30000,
			group: d.Handler + "\x00" + consumer + "\x00" + refPrefix(d.Priority())}
		ops[i].init(e.ctx)
	}
	e.c.sendAnswers(e.ctx, ops)
	settled := make([]bool, len(ops))
	for i, o := range ops {
		if o.err != nil {
			e.t.Fatalf("answer %d: %v", i, o.err)
		}
		settled[i] = o.settled
	}
	return settled
}

// taken enqueues a call of e.h (replying to edge) and reads it as consumer.
func (e *protoEnv) taken(edge, consumer string) Delivery {
	e.t.Helper()
	e.enqueue(e.newCall(e.h, edge), EnqueueOptions{})
	d := e.read(consumer, 1)[0]
	if d.Err != nil {
		e.t.Fatalf("delivery: %v", d.Err)
	}
	return d
}

// edge opens a reply stream for a new edge id.
func (e *protoEnv) edge() string {
	e.t.Helper()
	id := uniqueName("edge")
	if err := e.c.OpenReplyStream(e.ctx, id); err != nil {
		e.t.Fatalf("open reply stream: %v", err)
	}
	return id
}

func (e *protoEnv) replies(edge string) []Reply {
	e.t.Helper()
	rs, _, err := e.c.ReadReplies(e.ctx, edge, "0", 1000, -1)
	if err != nil {
		e.t.Fatalf("read replies: %v", err)
	}
	return rs
}

// Redis state, read directly.

func (e *protoEnv) xlen(key string) int64 {
	e.t.Helper()
	n, err := e.rdb.XLen(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

func (e *protoEnv) pending() int64 {
	e.t.Helper()
	n, err := e.c.Pending(e.ctx, e.h)
	if err != nil {
		e.t.Fatalf("pending: %v", err)
	}
	return n
}

func (e *protoEnv) exists(key string) bool {
	e.t.Helper()
	n, err := e.rdb.Exists(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// pttl fails unless key has a TTL in (0, most].
func (e *protoEnv) pttl(key string, most time.Duration) {
	e.t.Helper()
	d, err := e.rdb.PTTL(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("PTTL %s: %v", key, err)
	}
	if d <= 0 || d > most {
		e.t.Fatalf("PTTL %s = %v, want in (0, %v]", key, d, most)
	}
}

func (e *protoEnv) want(what string, got, want any) {
	e.t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// owner is the consumer that holds the pending entry id ("" if none).
func (e *protoEnv) owner(id string) string {
	e.t.Helper()
	p, err := e.rdb.XPendingExt(e.ctx, &redis.XPendingExtArgs{Stream: callsKey(e.h), Group: Group, Start: id, End: id, Count: 1}).Result()
	if err != nil {
		e.t.Fatalf("XPENDING %s: %v", id, err)
	}
	if len(p) == 0 {
		return ""
	}
	return p[0].Consumer
}

// redisNow is Redis's clock, which heartbeats are stamped with.
func (e *protoEnv) redisNow() time.Time {
	e.t.Helper()
	now, err := e.rdb.Time(e.ctx).Result()
	if err != nil {
		e.t.Fatalf("TIME: %v", err)
	}
	return now
}

func (e *protoEnv) noErr(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

func (e *protoEnv) isErr(what string, err, want error) {
	e.t.Helper()
	if !errors.Is(err, want) {
		e.t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}

var protoRun = Run{Consumer: "a", Started: time.Now(), Took: 3 * time.Millisecond}

type protocolCase struct {
	name string
	run  func(t *testing.T, e *protoEnv)
}

// protocolCases are run on every topology. Scripts: enqueueScript,
// claimScript, answerScript, settleScript, poisonScript, forwardScript,
// cancelScheduledScript, limitedReadScript,
// replayScript, rateLimitScript, cancelScript, forgetScript, flushScript.
var protocolCases = []protocolCase{
	// enqueueScript
	{"enqueue/new call is appended and its async state recorded", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		call := e.newCall(e.h, "")
		call.ResultTTL = 30 * time.Second
		res := e.enqueue(call, EnqueueOptions{Async: true})
		if res.ID != call.ID || res.StreamID == "" || res.Duplicate {
			t.Fatalf("enqueued %+v", res)
		}
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 1)
		v, err := e.rdb.Get(e.ctx, resultKey(call.ID)).Result()
		e.noErr("GET result", err)
		e.want("async state", v, queuedState(e.h, res.StreamID))
		e.pttl(resultKey(call.ID), 30*time.Second)
		st, err := e.c.CallStatus(e.ctx, call.ID)
		e.noErr("call status", err)
		e.want("state", st.State, StateQueued)
		e.want("stream id", st.StreamID, res.StreamID)
		d := e.read("a", 1)[0]
		if d.Err != nil || d.Call.ID != call.ID || string(d.Call.Params) != `{"n":1}` || d.Deliveries != 1 {
			t.Fatalf("read back %+v (call %+v)", d, d.Call)
		}
		st, err = e.c.CallStatus(e.ctx, call.ID)
		e.noErr("call status", err)
		e.want("state once read", st.State, StateRunning)
		e.want("consumer", st.Consumer, "a")
	}},
	{"enqueue/unknown handler or method is refused and nothing is appended", func(t *testing.T, e *protoEnv) {
		_, err := e.c.Enqueue(e.ctx, e.newCall(e.h, ""), EnqueueOptions{})
		e.isErr("unregistered handler", err, ErrNoHandler)
		e.register(e.h, HandlerSettings{})
		call := e.newCall(e.h, "")
		call.Method = "nope"
		_, err = e.c.Enqueue(e.ctx, call, EnqueueOptions{Async: true})
		e.isErr("unknown method", err, ErrNoMethod)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("async state recorded", e.exists(resultKey(call.ID)), false)
	}},
	{"enqueue/backlog limit, the handler's registered one wins", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		opts := EnqueueOptions{BacklogLimit: 2}
		e.enqueue(e.newCall(e.h, ""), opts)
		e.enqueue(e.newCall(e.h, ""), opts)
		_, err := e.c.Enqueue(e.ctx, e.newCall(e.h, ""), opts)
		e.isErr("third call", err, ErrBacklogFull)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 2)
		e.register(e.h, HandlerSettings{MaxBacklog: 3})
		e.enqueue(e.newCall(e.h, ""), opts)
		_, err = e.c.Enqueue(e.ctx, e.newCall(e.h, ""), opts)
		e.isErr("fourth call", err, ErrBacklogFull)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 3)
	}},
	{"enqueue/idempotency key: a repeat is a duplicate, other params a mismatch", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		idem := &Idempotency{Key: "order-1", TTL: time.Minute}
		first := e.newCall(e.h, "")
		res := e.enqueue(first, EnqueueOptions{Idempotency: idem})
		dup := e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Idempotency: idem})
		if !dup.Duplicate || dup.ID != first.ID || dup.StreamID != "" {
			t.Fatalf("repeat: %+v, want a duplicate of %s", dup, res.ID)
		}
		other := e.newCall(e.h, "")
		other.Params = json.RawMessage(`{"n":2}`)
		_, err := e.c.Enqueue(e.ctx, other, EnqueueOptions{Idempotency: idem})
		e.isErr("other params", err, ErrIdempotencyMismatch)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 1)
		k := sha256.Sum256([]byte(idem.Key))
		e.pttl(idemKey(e.h, hex.EncodeToString(k[:])), time.Minute)
	}},
	{"enqueue/concurrent calls of two handlers all land once", func(t *testing.T, e *protoEnv) {
		h2 := uniqueName("proto")
		e.register(e.h, HandlerSettings{})
		e.register(h2, HandlerSettings{})
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, n)
		ids := make(chan string, n)
		for i := range n {
			h := []string{e.h, h2}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.c.Enqueue(e.ctx, e.newCall(h, ""), EnqueueOptions{BacklogLimit: n})
				errs <- err
				ids <- res.StreamID
			}()
		}
		wg.Wait()
		close(errs)
		close(ids)
		for err := range errs {
			e.noErr("enqueue", err)
		}
		seen := map[string]bool{}
		for id := range ids {
			seen[id] = true
		}
		e.want("XLEN calls of "+e.h, e.xlen(callsKey(e.h)), n/2)
		e.want("XLEN calls of "+h2, e.xlen(callsKey(h2)), n/2)
		if len(seen) < n/2 { // stream ids are per stream: the two may share some
			t.Fatalf("%d distinct stream ids for %d calls", len(seen), n)
		}
	}},

	{"enqueue/one script run carries mixed outcomes in order", func(t *testing.T, e *protoEnv) {
		// Concurrent Enqueues share a run only when they meet in the
		// batcher; here the batch is handed to sendEnqueues directly, so
		// that one run carries all of them.
		e.register(e.h, HandlerSettings{})
		idem := &Idempotency{Key: "k", TTL: time.Minute}
		nope := e.newCall(e.h, "")
		nope.Method = "nope"
		first := e.newCall(e.h, "")
		ops := []*enqueueOp{
			batchOp(e, first, EnqueueOptions{BacklogLimit: 2, Idempotency: idem}),
			batchOp(e, nope, EnqueueOptions{BacklogLimit: 2}),
			batchOp(e, e.newCall(e.h, ""), EnqueueOptions{BacklogLimit: 2, Idempotency: idem}), // same key, same params
			batchOp(e, e.newCall(e.h, ""), EnqueueOptions{BacklogLimit: 2}),
			batchOp(e, e.newCall(e.h, ""), EnqueueOptions{BacklogLimit: 2}), // the backlog counts this run's calls
		}
		e.c.sendEnqueues(e.ctx, ops)
		want := [][2]string{{"new", ""}, {"err", "NOMETHOD"}, {"dup", first.ID}, {"new", ""}, {"err", "BACKLOG"}}
		for i, o := range ops {
			<-o.done
			e.noErr("op", o.err)
			if o.kind != want[i][0] || (want[i][1] != "" && o.value != want[i][1]) {
				t.Fatalf("op %d: %s %s, want %s %s", i, o.kind, o.value, want[i][0], want[i][1])
			}
		}
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 2)
	}},
	{"enqueue/plain, async, idempotent and scheduled calls in one run keep their envelopes, keys and states", func(t *testing.T, e *protoEnv) {
		// A plain call sends no options and no keys (enqueueScript): the
		// others' keys must still be their own, and every envelope, the
		// optional fields included, must be appendFields' byte for byte.
		e.register(e.h, HandlerSettings{})
		withExtras := func(c *Call) *Call {
			c.RequestID, c.TraceParent, c.TraceState = "req-1", testTraceParent, "congo=t61rcWkgMzE"
			return c
		}
		plain, async, idem, sched, last := withExtras(e.newCall(e.h, "edge-x")), e.newCall(e.h, ""), e.newCall(e.h, ""), withExtras(e.newCall(e.h, "")), e.newCall(e.h, "edge-x")
		due := time.Now().Add(time.Hour)
		sched.Deadline = due.Add(time.Minute)
		ik := &Idempotency{Key: "mixed", TTL: time.Minute}
		ops := []*enqueueOp{
			batchOp(e, plain, EnqueueOptions{}),
			batchOp(e, async, EnqueueOptions{Async: true}),
			batchOp(e, idem, EnqueueOptions{Idempotency: ik}),
			batchOp(e, sched, EnqueueOptions{Async: true, ScheduleAt: due}),
			batchOp(e, last, EnqueueOptions{}),
		}
		e.c.sendEnqueues(e.ctx, ops)
		for i, o := range ops {
			<-o.done
			e.noErr("op", o.err)
			if o.kind != "new" || (o.value == "") != (i == 3) {
				t.Fatalf("op %d: %q %q, want new (an entry id unless scheduled)", i, o.kind, o.value)
			}
		}
		entries, err := e.rdb.XRange(e.ctx, callsKey(e.h), "-", "+").Result()
		e.noErr("XRANGE", err)
		appended := []*Call{plain, async, idem, last}
		e.want("entries", len(entries), len(appended))
		for i, en := range entries {
			e.want("entry id", en.ID, ops[[]int{0, 1, 2, 4}[i]].value)
			e.want("fields of "+appended[i].ID, fmt.Sprint(en.Values), fmt.Sprint(fieldMap(appended[i].appendFields(nil))))
		}
		v, err := e.rdb.Get(e.ctx, resultKey(async.ID)).Result()
		e.noErr("GET async state", err)
		e.want("async state", v, queuedState(e.h, entries[1].ID))
		k := sha256.Sum256([]byte(ik.Key))
		v, err = e.rdb.Get(e.ctx, idemKey(e.h, hex.EncodeToString(k[:]))).Result()
		e.noErr("GET idempotency key", err)
		if !strings.HasPrefix(v, idem.ID+" ") {
			t.Fatalf("idempotency value %q, want the call id %s first", v, idem.ID)
		}
		st, err := e.c.CallStatus(e.ctx, sched.ID)
		e.noErr("call status", err)
		e.want("scheduled state", st.State, StateScheduled)
		raw, err := e.rdb.HGet(e.ctx, scheduledKey(e.h), sched.ID).Result()
		e.noErr("HGET scheduled", err)
		var env []string
		e.noErr("scheduled envelope", json.Unmarshal([]byte(raw), &env))
		e.want("scheduled envelope", fmt.Sprint(env), fmt.Sprint(fieldStrings(sched.appendFields(nil))))
		for _, c := range []*Call{plain, last} {
			e.want("result key of a plain call", e.exists(resultKey(c.ID)), false)
		}
	}},

	// claimScript
	{"claim/an idle call is taken over with its delivery count", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		none, err := e.c.Claim(e.ctx, e.h, "b", time.Hour, 10)
		e.noErr("claim", err)
		e.want("claimed within the lease", len(none), 0)
		got, err := e.c.Claim(e.ctx, e.h, "b", 0, 10)
		e.noErr("claim", err)
		if len(got) != 1 || got[0].StreamID != d.StreamID || got[0].Call.ID != d.Call.ID {
			t.Fatalf("claimed %+v, want %s", got, d.StreamID)
		}
		e.want("deliveries", got[0].Deliveries, 2)
		e.want("attempt", got[0].Attempt(), 2)
		p, err := e.rdb.XPendingExt(e.ctx, &redis.XPendingExtArgs{Stream: callsKey(e.h), Group: Group, Start: "-", End: "+", Count: 10}).Result()
		e.noErr("XPENDING", err)
		if len(p) != 1 || p[0].Consumer != "b" || p[0].RetryCount != 2 {
			t.Fatalf("XPENDING %+v, want one entry of b delivered twice", p)
		}
	}},
	{"claim/a lease extended is not claimed", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		// Wait until the entry has been idle for a while, then renew it.
		waitFor(t, "entry idle 1s", func() bool {
			p, err := e.rdb.XPendingExt(e.ctx, &redis.XPendingExtArgs{Stream: callsKey(e.h), Group: Group, Start: "-", End: "+", Count: 1}).Result()
			return err == nil && len(p) == 1 && p[0].Idle >= time.Second
		})
		lost, err := e.c.ExtendLease(e.ctx, e.h, "a", []string{d.StreamID})
		e.noErr("extend lease", err)
		e.want("leases lost", len(lost), 0)
		got, err := e.c.Claim(e.ctx, e.h, "b", time.Second, 10)
		e.noErr("claim", err)
		e.want("claimed after renewal", len(got), 0)
	}},
	{"claim/a missing group is created", func(t *testing.T, e *protoEnv) {
		got, err := e.c.Claim(e.ctx, e.h, "b", 0, 10)
		e.noErr("claim", err)
		e.want("claimed", len(got), 0)
		groups, err := e.rdb.XInfoGroups(e.ctx, callsKey(e.h)).Result()
		e.noErr("XINFO GROUPS", err)
		if len(groups) != 1 || groups[0].Name != Group {
			t.Fatalf("groups %+v, want %s", groups, Group)
		}
	}},

	// leaseScript
	{"lease/a call claimed by another is reported lost and not taken back", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		got, err := e.c.Claim(e.ctx, e.h, "b", 0, 10)
		e.noErr("claim", err)
		e.want("claimed by b", len(got), 1)
		lost, err := e.c.ExtendLease(e.ctx, e.h, "a", []string{d.StreamID})
		e.noErr("extend lease", err)
		e.want("lost", lost, []string{d.StreamID})
		e.want("owner", e.owner(d.StreamID), "b")
	}},

	// heartbeatScript
	{"heartbeat/stamped with Redis's clock; consumers silent for an hour are forgotten", func(t *testing.T, e *protoEnv) {
		now := e.redisNow()
		e.noErr("ZADD stale", e.rdb.ZAdd(e.ctx, consumersKey(e.h), redis.Z{Score: float64(now.Add(-2 * time.Hour).UnixMilli()), Member: "stale"}).Err())
		e.noErr("heartbeat", e.c.Heartbeat(e.ctx, e.h, ConsumerInfo{Name: "a"}))
		score, err := e.rdb.ZScore(e.ctx, consumersKey(e.h), "a").Result()
		e.noErr("ZSCORE a", err)
		if d := time.UnixMilli(int64(score)).Sub(now); d < -time.Second || d > 5*time.Second {
			t.Fatalf("heartbeat stamped %s from Redis's clock, want within a few seconds", d)
		}
		e.want("info kept", e.rdb.HExists(e.ctx, consumerInfoKey(e.h), "a").Val(), true)
		_, err = e.rdb.ZScore(e.ctx, consumersKey(e.h), "stale").Result()
		e.isErr("stale consumer forgotten", err, redis.Nil)
	}},

	// rescueScript
	{"rescue/a dead consumer's calls are claimed at once, then it is removed", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		e.noErr("heartbeat a", e.c.Heartbeat(e.ctx, e.h, ConsumerInfo{Name: "a"}))
		e.noErr("heartbeat b", e.c.Heartbeat(e.ctx, e.h, ConsumerInfo{Name: "b"}))
		// a's last heartbeat is 10 s old: dead after 3 s.
		e.noErr("age a", e.rdb.ZAdd(e.ctx, consumersKey(e.h), redis.Z{Score: float64(e.redisNow().Add(-10 * time.Second).UnixMilli()), Member: "a"}).Err())
		res, err := e.c.ClaimFromDead(e.ctx, e.h, "b", 3*time.Second, 10)
		e.noErr("claim from dead", err)
		if len(res.Deliveries) != 1 || res.Deliveries[0].StreamID != d.StreamID {
			t.Fatalf("rescued %+v, want %s", res.Deliveries, d.StreamID)
		}
		e.want("deliveries", res.Deliveries[0].Deliveries, 2)
		if c := res.Deliveries[0].Claimed; !strings.Contains(c, "consumer a stopped heartbeating") || !strings.Contains(c, "claimed by b") {
			t.Fatalf("Claimed = %q, want who stopped and who claimed", c)
		}
		e.want("owner", e.owner(d.StreamID), "b")
		e.want("removed", res.Removed, []string{"a"})
		_, err = e.rdb.ZScore(e.ctx, consumersKey(e.h), "a").Result()
		e.isErr("a left the registry", err, redis.Nil)
		e.want("a's info", e.rdb.HExists(e.ctx, consumerInfoKey(e.h), "a").Val(), false)
	}},
	{"rescue/a consumer still heartbeating is never robbed", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		e.noErr("heartbeat a", e.c.Heartbeat(e.ctx, e.h, ConsumerInfo{Name: "a"}))
		res, err := e.c.ClaimFromDead(e.ctx, e.h, "b", 3*time.Second, 10)
		e.noErr("claim from dead", err)
		e.want("rescued", len(res.Deliveries), 0)
		e.want("removed", len(res.Removed), 0)
		e.want("owner", e.owner(d.StreamID), "a")
	}},
	{"rescue/a consumer with no heartbeat is dead once it has not touched the stream for dead-after", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		res, err := e.c.ClaimFromDead(e.ctx, e.h, "b", time.Hour, 10)
		e.noErr("claim from dead", err)
		e.want("rescued while recently active", len(res.Deliveries), 0)
		waitFor(t, "a idle 200ms", func() bool {
			cs, err := e.rdb.XInfoConsumers(e.ctx, callsKey(e.h), Group).Result()
			return err == nil && len(cs) > 0 && cs[0].Idle >= 200*time.Millisecond
		})
		res, err = e.c.ClaimFromDead(e.ctx, e.h, "b", 100*time.Millisecond, 10)
		e.noErr("claim from dead", err)
		if len(res.Deliveries) != 1 || res.Deliveries[0].StreamID != d.StreamID {
			t.Fatalf("rescued %+v, want %s", res.Deliveries, d.StreamID)
		}
		e.want("owner", e.owner(d.StreamID), "b")
	}},

	// answerScript
	{"answer/settles, keeps the result and replies once", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		call := e.newCall(e.h, edge)
		call.ResultTTL = 30 * time.Second
		e.enqueue(call, EnqueueOptions{})
		d := e.read("a", 1)[0]
		ok, err := e.c.Finish(e.ctx, &d, ResultReply(call.ID, json.RawMessage(`{"ok":1}`)), protoRun)
		e.noErr("finish", err)
		e.want("settled", ok, true)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
		r, err := e.c.Result(e.ctx, call.ID)
		e.noErr("result", err)
		if !r.OK || string(r.Body) != `{"ok":1}` {
			t.Fatalf("result %+v", r)
		}
		e.pttl(resultKey(call.ID), 30*time.Second)
		rs := e.replies(edge)
		if len(rs) != 1 || rs[0].ID != call.ID || string(rs[0].Body) != `{"ok":1}` {
			t.Fatalf("replies %+v, want the one reply", rs)
		}
	}},
	{"answer/a call settled elsewhere is dropped and gets no second reply", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		d := e.taken(edge, "a")
		claimed, err := e.c.Claim(e.ctx, e.h, "b", 0, 10)
		e.noErr("claim", err)
		e.want("claimed", len(claimed), 1)
		ok, err := e.c.Finish(e.ctx, &claimed[0], ResultReply(d.Call.ID, json.RawMessage(`"b"`)), Run{Consumer: "b"})
		e.noErr("finish b", err)
		e.want("b settled", ok, true)
		ok, err = e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`"a"`)), Run{Consumer: "a"})
		e.noErr("finish a", err)
		e.want("a settled", ok, false)
		r, err := e.c.Result(e.ctx, d.Call.ID)
		e.noErr("result", err)
		e.want("kept result", string(r.Body), `"b"`)
		rs := e.replies(edge)
		if len(rs) != 1 || string(rs[0].Body) != `"b"` {
			t.Fatalf("replies %+v, want b's only", rs)
		}
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
	}},
	{"answer/one batch among the consumer's other calls: only its own settle", func(t *testing.T, e *protoEnv) {
		edge, ds := e.takenMany("a", 10)
		// calls 0, 5 and 9 in one script run: the range 0..9 holds the
		// consumer's 7 others, within the cap (12)
		settled := e.answerBatch("a", &ds[9], &ds[0], &ds[5])
		e.want("settled", fmt.Sprint(settled), "[true true true]")
		e.want("pending", e.pending(), 7)
		e.want("replies", len(e.replies(edge)), 3)
	}},
	{"answer/one batch whose range holds more than the cap: each still checked", func(t *testing.T, e *protoEnv) {
		_, ds := e.takenMany("a", 20)
		// 2 calls, cap 8, 20 pending in their range: the last is past the cap
		settled := e.answerBatch("a", &ds[0], &ds[19])
		e.want("settled", fmt.Sprint(settled), "[true true]")
		e.want("pending", e.pending(), 18)
	}},
	{"answer/one batch with a call claimed away: the others settle, it does not", func(t *testing.T, e *protoEnv) {
		edge, ds := e.takenMany("a", 3)
		_, err := e.rdb.XClaim(e.ctx, &redis.XClaimArgs{Stream: callsKey(e.h), Group: Group, Consumer: "b", Messages: []string{ds[1].StreamID}}).Result()
		e.noErr("claim by b", err)
		settled := e.answerBatch("a", &ds[0], &ds[1], &ds[2])
		e.want("settled", fmt.Sprint(settled), "[true false true]")
		e.want("owner of the claimed call", e.owner(ds[1].StreamID), "b")
		// one entry's replies come back in no set order
		rs := e.replies(edge)
		got := map[string]bool{}
		for _, r := range rs {
			got[r.ID] = true
		}
		if len(rs) != 2 || !got[ds[0].Call.ID] || !got[ds[2].Call.ID] {
			t.Fatalf("replies %+v, want the two settled calls'", rs)
		}
	}},
	{"answer/a gone edge's reply stream is not recreated", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		gone := uniqueName("gone")
		d := e.taken(gone, "a")
		ok, err := e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`1`)), protoRun)
		e.noErr("finish", err)
		e.want("settled", ok, true)
		e.want("reply stream exists", e.exists(replyKey(gone)), false)
		_, err = e.c.Result(e.ctx, d.Call.ID)
		e.noErr("result", err)
	}},
	{"answer/concurrent finishes all settle and reply", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		const n = 30
		for range n {
			e.enqueue(e.newCall(e.h, edge), EnqueueOptions{})
		}
		ds := e.read("a", n)
		var wg sync.WaitGroup
		settled := make(chan bool, n)
		errs := make(chan error, n)
		for i := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := e.c.Finish(e.ctx, &ds[i], ResultReply(ds[i].Call.ID, json.RawMessage(strconv.Itoa(i))), protoRun)
				settled <- ok
				errs <- err
			}()
		}
		wg.Wait()
		close(settled)
		close(errs)
		for err := range errs {
			e.noErr("finish", err)
		}
		for ok := range settled {
			e.want("settled", ok, true)
		}
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
		e.want("replies", len(e.replies(edge)), n)
		ids := make([]string, n)
		for i, d := range ds {
			ids[i] = d.Call.ID
		}
		rs, err := e.c.Results(e.ctx, ids)
		e.noErr("results", err)
		e.want("results", len(rs), n)
	}},

	// settleScript
	{"settle/retry goes into the delayed set, without a reply", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		d := e.taken(edge, "a")
		due := time.Now().Add(time.Hour)
		ok, err := e.c.Retry(e.ctx, &d, due, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("retry", err)
		e.want("settled", ok, true)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
		members, err := e.rdb.ZRangeWithScores(e.ctx, delayedKey(e.h), 0, -1).Result()
		e.noErr("ZRANGE delayed", err)
		if len(members) != 1 || int64(members[0].Score) != due.UnixMilli() {
			t.Fatalf("delayed %+v, want one due at %d", members, due.UnixMilli())
		}
		e.want("result kept", e.exists(resultKey(d.Call.ID)), false)
		e.want("replies", len(e.replies(edge)), 0)
		story, err := e.rdb.LLen(e.ctx, storyKey(d.Call.ID)).Result()
		e.noErr("LLEN story", err)
		if story < 2 {
			t.Fatalf("story has %d events, want queued and this attempt's", story)
		}
		e.pttl(storyKey(d.Call.ID), 10*time.Minute)
		ok, err = e.c.Retry(e.ctx, &d, due, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("second retry", err)
		e.want("settled twice", ok, false)
		n, err := e.c.Delayed(e.ctx, e.h)
		e.noErr("delayed", err)
		e.want("delayed", n, 1)
	}},
	{"settle/dead letter keeps the call, its result and replies", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		d := e.taken(edge, "a")
		ok, err := e.c.DeadLetter(e.ctx, &d, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("dead letter", err)
		e.want("settled", ok, true)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
		dls, err := e.c.DeadLetters(e.ctx, e.h, "", 10)
		e.noErr("dead letters", err)
		if len(dls) != 1 || dls[0].ID != d.Call.ID || dls[0].Attempts != 1 || dls[0].Consumer != "a" ||
			dls[0].Error == nil || dls[0].Error.Message != "boom" || dls[0].Fields != nil {
			t.Fatalf("dead letters %+v", dls)
		}
		r, err := e.c.Result(e.ctx, d.Call.ID)
		e.noErr("result", err)
		e.want("result code", r.Err().Code, CodeDeadLettered)
		rs := e.replies(edge)
		if len(rs) != 1 || rs[0].Err().Code != CodeDeadLettered {
			t.Fatalf("replies %+v, want one dead_lettered", rs)
		}
		ok, err = e.c.DeadLetter(e.ctx, &d, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("second dead letter", err)
		e.want("settled twice", ok, false)
		e.want("XLEN dead", e.xlen(deadKey(e.h)), 1)
		e.want("replies", len(e.replies(edge)), 1)
	}},

	// poisonScript
	{"poison/an undecodable entry moves to the dead letters", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.noErr("append raw", e.c.AppendRaw(e.ctx, e.h, "junk", "1"))
		d := e.read("a", 1)[0]
		e.isErr("delivery", d.Err, ErrBadEnvelope)
		e.noErr("poison", e.c.Poison(e.ctx, &d, "a"))
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("pending", e.pending(), 0)
		dls, err := e.c.DeadLetters(e.ctx, e.h, "", 10)
		e.noErr("dead letters", err)
		if len(dls) != 1 || dls[0].Fields["junk"] != "1" || dls[0].Consumer != "a" ||
			dls[0].Error == nil || dls[0].Error.Code != CodeInvalidRequest {
			t.Fatalf("dead letters %+v", dls)
		}
	}},

	// forwardScript
	{"forward/due retries move into the stream, the next due is returned", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		n, next, err := e.c.ForwardDue(e.ctx, e.h, time.Now(), 10)
		e.noErr("forward nothing", err)
		if n != 0 || !next.IsZero() {
			t.Fatalf("nothing waiting: moved %d, next %v", n, next)
		}
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		ds := e.read("a", 2)
		now := time.Now()
		later := now.Add(time.Hour)
		for i, due := range []time.Time{now.Add(-time.Second), later} {
			ok, err := e.c.Retry(e.ctx, &ds[i], due, NewError(CodeHandlerError, "boom"), protoRun)
			e.noErr("retry", err)
			e.want("settled", ok, true)
		}
		n, next, err = e.c.ForwardDue(e.ctx, e.h, now, 10)
		e.noErr("forward", err)
		e.want("moved", n, 1)
		e.want("next due", next.UnixMilli(), later.UnixMilli())
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 1)
		e.want("ZCARD delayed", e.rdb.ZCard(e.ctx, delayedKey(e.h)).Val(), 1)
		d := e.read("a", 1)[0]
		if d.Err != nil || d.Call.ID != ds[0].Call.ID || d.Call.Attempt != 2 {
			t.Fatalf("forwarded %+v (call %+v), want %s at attempt 2", d, d.Call, ds[0].Call.ID)
		}
		n, next, err = e.c.ForwardDue(e.ctx, e.h, now, 10)
		e.noErr("forward again", err)
		e.want("moved again", n, 0)
		e.want("next due", next.UnixMilli(), later.UnixMilli())
	}},

	{"forward/a scheduled call is kept out of the stream until due, then queued where it can be cancelled", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		call := e.newCall(e.h, "")
		due := time.Now().Add(time.Hour)
		call.Deadline = due.Add(time.Minute)
		res := e.enqueue(call, EnqueueOptions{Async: true, ScheduleAt: due})
		if res.ID != call.ID || res.StreamID != "" {
			t.Fatalf("enqueued %+v", res)
		}
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		e.want("HLEN scheduled", e.rdb.HLen(e.ctx, scheduledKey(e.h)).Val(), 1)
		st, err := e.c.CallStatus(e.ctx, call.ID)
		e.noErr("call status", err)
		e.want("state", st.State, StateScheduled)
		e.want("due", st.Due.UnixMilli(), due.UnixMilli())
		if ttl := e.rdb.PTTL(e.ctx, resultKey(call.ID)).Val(); ttl < time.Hour {
			t.Fatalf("the scheduled state expires in %s, before the call is due", ttl)
		}
		n, next, err := e.c.ForwardDue(e.ctx, e.h, time.Now(), 10)
		e.noErr("forward early", err)
		e.want("moved early", n, 0)
		e.want("next due", next.UnixMilli(), due.UnixMilli())
		n, _, err = e.c.ForwardDue(e.ctx, e.h, due, 10)
		e.noErr("forward when due", err)
		e.want("moved when due", n, 1)
		e.want("HLEN scheduled", e.rdb.HLen(e.ctx, scheduledKey(e.h)).Val(), 0)
		st, err = e.c.CallStatus(e.ctx, call.ID)
		e.noErr("call status", err)
		e.want("state once due", st.State, StateQueued)
		if ttl := e.rdb.PTTL(e.ctx, resultKey(call.ID)).Val(); ttl < time.Hour {
			t.Fatalf("the queued state lost its TTL: %s", ttl)
		}
		was, err := e.c.CancelCall(e.ctx, st, time.Minute)
		e.noErr("cancel", err)
		e.want("cancelled from", was, StateQueued)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
	}},

	// cancelScheduledScript
	{"cancel scheduled/removed before it is due, or cancelled in the stream once moved", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		for _, moved := range []bool{false, true} {
			call := e.newCall(e.h, "")
			due := time.Now().Add(time.Hour)
			e.enqueue(call, EnqueueOptions{Async: true, ScheduleAt: due})
			st, err := e.c.CallStatus(e.ctx, call.ID)
			e.noErr("call status", err)
			if moved { // the forwarder moved it after the caller read its state
				_, _, err := e.c.ForwardDue(e.ctx, e.h, due, 10)
				e.noErr("forward", err)
			}
			was, err := e.c.CancelCall(e.ctx, st, time.Minute)
			e.noErr("cancel", err)
			want := StateScheduled
			if moved {
				want = StateQueued
			}
			e.want("cancelled from", was, want)
			st, err = e.c.CallStatus(e.ctx, call.ID)
			e.noErr("call status", err)
			e.want("state", st.State, StateCancelled)
			e.want("ZCARD delayed", e.rdb.ZCard(e.ctx, delayedKey(e.h)).Val(), 0)
			e.want("HLEN scheduled", e.rdb.HLen(e.ctx, scheduledKey(e.h)).Val(), 0)
			e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		}
	}},

	// limitedReadScript
	{"limited read/max_concurrency counts every consumer's pending calls; calls over it stay in the stream", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{Limits: Limits{MaxConcurrency: 2}})
		for range 5 {
			e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		}
		r, err := e.c.ReadLimited(e.ctx, e.h, "a", 5, 7*time.Millisecond)
		e.noErr("read a", err)
		e.want("taken by a", len(r.Deliveries), 2)
		r, err = e.c.ReadLimited(e.ctx, e.h, "b", 5, 7*time.Millisecond)
		e.noErr("read b", err)
		if len(r.Deliveries) != 0 || r.Wait != 7*time.Millisecond {
			t.Fatalf("at the limit: %d taken, wait %s", len(r.Deliveries), r.Wait)
		}
		e.want("pending", e.pending(), 2)
		e.noErr("ack", e.rdb.XAck(e.ctx, callsKey(e.h), Group, r0(e, "a")).Err())
		r, err = e.c.ReadLimited(e.ctx, e.h, "b", 5, 7*time.Millisecond)
		e.noErr("read b again", err)
		e.want("taken by b once one settled", len(r.Deliveries), 1)
		e.noErr("the API wins", e.c.SetHandlerLimits(e.ctx, e.h, LimitsUpdate{MaxConcurrency: ptr(int64(0))}))
		r, err = e.c.ReadLimited(e.ctx, e.h, "b", 5, 7*time.Millisecond)
		e.noErr("read b with no limit", err)
		e.want("taken with the API's 0 (none)", len(r.Deliveries), 2)
		r, err = e.c.ReadLimited(e.ctx, e.h, "b", 5, 7*time.Millisecond)
		e.noErr("read an empty stream", err)
		if len(r.Deliveries) != 0 || r.Wait != 0 || r.LastID == "" || r.LastID == "0-0" {
			t.Fatalf("nothing new: %+v", r)
		}
	}},
	{"limited read/rate: a GCRA allowance, the wait until the next start", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.noErr("set rate", e.c.SetHandlerLimits(e.ctx, e.h, LimitsUpdate{Rate: ptr(10.0)}))
		for range 3 {
			e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		}
		r, err := e.c.ReadLimited(e.ctx, e.h, "a", 3, time.Second)
		e.noErr("read", err)
		e.want("taken at 10/s (burst 1)", len(r.Deliveries), 1)
		r, err = e.c.ReadLimited(e.ctx, e.h, "a", 3, time.Second)
		e.noErr("read again", err)
		if len(r.Deliveries) != 0 || r.Wait <= 0 || r.Wait > 100*time.Millisecond {
			t.Fatalf("over the rate: %d taken, wait %s (want up to 100ms)", len(r.Deliveries), r.Wait)
		}
		e.noErr("clear", e.c.SetHandlerLimits(e.ctx, e.h, LimitsUpdate{ClearRate: true}))
		ls, err := e.c.HandlerLimits(e.ctx, e.h)
		e.noErr("limits", err)
		if ls.Effective.Any() || ls.API.Rate != nil {
			t.Fatalf("after clearing: %+v", ls)
		}
	}},

	// replayScript
	{"replay/a dead letter goes back as a new first attempt", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		ids := e.deadLetters(e.edge(), 1)
		dls, err := e.c.DeadLetters(e.ctx, e.h, "", 10)
		e.noErr("dead letters", err)
		deadline := time.Now().Add(2 * time.Minute)
		id, err := e.c.ReplayDeadLetter(e.ctx, e.h, dls[0].StreamID, deadline)
		e.noErr("replay", err)
		e.want("replayed id", id, ids[0])
		e.want("XLEN dead", e.xlen(deadKey(e.h)), 0)
		d := e.read("a", 1)[0]
		if d.Err != nil || d.Call.ID != ids[0] || d.Call.Attempt != 1 || d.Call.ReplyTo != "" ||
			d.Call.Deadline.UnixMilli() != deadline.UnixMilli() {
			t.Fatalf("replayed %+v (call %+v)", d, d.Call)
		}
		_, err = e.c.ReplayDeadLetter(e.ctx, e.h, dls[0].StreamID, deadline)
		e.isErr("replay again", err, ErrNotFound)
		_, err = e.c.ReplayDeadLetter(e.ctx, e.h, "not-an-id", deadline)
		e.isErr("replay malformed id", err, ErrNotFound)
	}},
	{"replay/the oldest first, up to the limit", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		ids := e.deadLetters("", 3)
		got, err := e.c.ReplayDeadLetters(e.ctx, e.h, time.Now().Add(time.Minute), 2)
		e.noErr("replay", err)
		e.want("replayed", got, ids[:2])
		e.want("XLEN dead", e.xlen(deadKey(e.h)), 1)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 2)
	}},
	{"deadletters/delete one, then all", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.deadLetters("", 3)
		dls, err := e.c.DeadLetters(e.ctx, e.h, "", 10)
		e.noErr("dead letters", err)
		e.noErr("delete", e.c.DeleteDeadLetter(e.ctx, e.h, dls[0].StreamID))
		e.isErr("delete again", e.c.DeleteDeadLetter(e.ctx, e.h, dls[0].StreamID), ErrNotFound)
		e.isErr("delete a malformed id", e.c.DeleteDeadLetter(e.ctx, e.h, "not-an-id"), ErrNotFound)
		after, err := e.c.DeadLetters(e.ctx, e.h, dls[0].StreamID, 10)
		e.noErr("dead letters after the first", err)
		e.want("after the first", len(after), 2)
		n, err := e.c.DeleteDeadLetters(e.ctx, e.h)
		e.noErr("delete all", err)
		e.want("deleted", n, 2)
		e.want("dead-letter stream exists", e.exists(deadKey(e.h)), false)
	}},

	// rateLimitScript
	{"ratelimit/a burst is allowed, then refused with a retry-after", func(t *testing.T, e *protoEnv) {
		subject := "ip:" + e.h
		// One request per 10 s: the test has 10 s before the allowance grows.
		limit := RateLimit{Rate: 0.1, Burst: 3}
		for i, remaining := range []int{2, 1, 0} {
			dec, err := e.c.RateLimit(e.ctx, subject, limit)
			e.noErr("rate limit", err)
			if !dec.Allowed || dec.Remaining != remaining {
				t.Fatalf("request %d: %+v, want allowed with %d remaining", i+1, dec, remaining)
			}
		}
		dec, err := e.c.RateLimit(e.ctx, subject, limit)
		e.noErr("rate limit", err)
		if dec.Allowed || dec.RetryAfter <= 0 || dec.RetryAfter > 10*time.Second {
			t.Fatalf("fourth request: %+v, want refused with a retry-after in (0, 10s]", dec)
		}
		e.pttl(rateLimitKey(subject), 30*time.Second+time.Second)
		free := "ip:free-" + e.h
		dec, err = e.c.RateLimit(e.ctx, free, RateLimit{})
		e.noErr("no limit", err)
		e.want("allowed without a limit", dec.Allowed, true)
		e.want("key written without a limit", e.exists(rateLimitKey(free)), false)
	}},

	// cancelScript
	{"cancel/a queued call is removed and answered cancelled", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		call := e.newCall(e.h, "")
		res := e.enqueue(call, EnqueueOptions{Async: true})
		st, err := e.c.Cancel(e.ctx, e.h, call.ID, res.StreamID, 30*time.Second)
		e.noErr("cancel", err)
		e.want("state", st, StateQueued)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		cs, err := e.c.CallStatus(e.ctx, call.ID)
		e.noErr("call status", err)
		e.want("call state", cs.State, StateCancelled)
		e.pttl(resultKey(call.ID), 30*time.Second)
		st, err = e.c.Cancel(e.ctx, e.h, call.ID, res.StreamID, 0)
		e.noErr("cancel again", err)
		e.want("state", st, StateDone)
	}},
	{"cancel/a running call is announced to the handler's consumers", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		ctx, stop := context.WithCancel(e.ctx)
		got := make(chan string, 100)
		done := make(chan error, 1)
		go func() { done <- e.c.WatchCancels(ctx, e.h, nil, func(id string) { got <- id }) }()
		t.Cleanup(func() {
			stop()
			<-done
		})
		// The subscription has no ready signal: cancel until it hears one.
		var heard string
		waitFor(t, "the cancel to be heard", func() bool {
			st, err := e.c.Cancel(e.ctx, e.h, d.Call.ID, d.StreamID, 0)
			if err != nil || st != StateRunning {
				t.Fatalf("cancel: %v %v, want running", st, err)
			}
			select {
			case heard = <-got:
				return true
			case <-time.After(50 * time.Millisecond):
				return false
			}
		})
		e.want("cancelled id", heard, d.Call.ID)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 1)
		e.want("pending", e.pending(), 1)
	}},
	{"cancel/a settled call, or one of a handler without a group, is done", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		ok, err := e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`1`)), protoRun)
		e.noErr("finish", err)
		e.want("settled", ok, true)
		st, err := e.c.Cancel(e.ctx, e.h, d.Call.ID, d.StreamID, 0)
		e.noErr("cancel", err)
		e.want("state", st, StateDone)
		other := uniqueName("proto")
		st, err = e.c.Cancel(e.ctx, other, NewCallID(other), "1-1", 0)
		e.noErr("cancel without a group", err)
		e.want("state", st, StateDone)
	}},

	// forgetScript
	{"forget/refused while consumers are online or calls wait", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.noErr("heartbeat", e.c.Heartbeat(e.ctx, e.h, ConsumerInfo{Name: "a"}))
		e.isErr("forget with a consumer online", e.c.Forget(e.ctx, e.h), ErrHandlerBusy)
		e.noErr("deregister", e.c.Deregister(e.ctx, e.h, "a"))
		d := e.taken("", "a")
		e.isErr("forget with a call waiting", e.c.Forget(e.ctx, e.h), ErrHandlerBusy)
		_, err := e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`1`)), protoRun)
		e.noErr("finish", err)
		e.noErr("forget", e.c.Forget(e.ctx, e.h))
		e.want("methods kept", e.exists(methodsKey(e.h)), false)
		e.want("info kept", e.exists(infoKey(e.h)), false)
		hs, err := e.c.Handlers(e.ctx)
		e.noErr("handlers", err)
		e.want("still listed", slices.Contains(hs, e.h), false)
		_, err = e.c.Enqueue(e.ctx, e.newCall(e.h, ""), EnqueueOptions{})
		e.isErr("enqueue after forget", err, ErrNoHandler)
	}},

	// flushScript
	{"recorder/settled calls reach the stats, rate and activity", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		_, err := e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`1`)), protoRun)
		e.noErr("finish", err)
		d2 := e.taken("", "a")
		_, err = e.c.DeadLetter(e.ctx, &d2, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("dead letter", err)
		e.noErr("close", e.c.Close()) // writes what was recorded
		stats, err := e.rdb.HGetAll(e.ctx, statsKey(e.h)).Result()
		e.noErr("HGETALL stats", err)
		e.want("calls", stats[protoMethod+":calls"], 2)
		e.want("runs", stats[protoMethod+":runs"], 2)
		e.want("errors", stats[protoMethod+":errors"], 1)
		e.want("dead", stats[protoMethod+":dead"], 1)
		rate, err := e.rdb.HLen(e.ctx, rateKey(e.h)).Result()
		e.noErr("HLEN rate", err)
		if rate == 0 {
			t.Fatal("rate hash is empty")
		}
		e.want("XLEN activity", e.xlen(activityKey(e.h)), 2)
		events, err := e.c.Story(e.ctx, d.Call.ID)
		e.noErr("story", err)
		if len(events) < 2 || events[0].Event != "queued" {
			t.Fatalf("story %+v, want queued then this attempt's events", events)
		}
	}},

	// pauseScript
	// storyNoteScript
	// runNowScript
	// (their cases are operateProtocolCases, in operate_protocol_test.go)
}

// deadLetters enqueues n calls of e.h and dead-letters them in order; it
// returns their ids.
func (e *protoEnv) deadLetters(edge string, n int) []string {
	e.t.Helper()
	for range n {
		e.enqueue(e.newCall(e.h, edge), EnqueueOptions{})
	}
	ids := make([]string, n)
	for i, d := range e.read("a", n) {
		ok, err := e.c.DeadLetter(e.ctx, &d, NewError(CodeHandlerError, "boom"), protoRun)
		e.noErr("dead letter", err)
		e.want("settled", ok, true)
		ids[i] = d.Call.ID
	}
	return ids
}

// TestEveryScriptHasProtocolCases fails when a script of the package
// (a variable holding redis.NewScript) has no section in protocolCases: a
// "// <name>" comment line in this file heading its cases.
func TestEveryScriptHasProtocolCases(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	for _, en := range entries {
		if name := en.Name(); strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				vs, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, v := range vs.Values {
					call, ok := v.(*ast.CallExpr)
					if !ok {
						continue
					}
					if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewScript" {
						scripts = append(scripts, vs.Names[i].Name)
					}
				}
				return true
			})
		}
	}
	if len(scripts) == 0 {
		t.Fatal("found no scripts: the parse is broken")
	}
	src, err := os.ReadFile("protocol_test.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for _, s := range scripts {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "// "+s }) {
			t.Errorf("script %s has no protocol cases (no %q section in protocolCases)", s, "// "+s)
		}
	}
}

// batchOp is the enqueue operation Enqueue would queue for call, ready for
// sendEnqueues (initialised as the batcher does).
func batchOp(e *protoEnv, call *Call, opts EnqueueOptions) *enqueueOp {
	e.t.Helper()
	o := e.c.newEnqueueOp(call, opts)
	o.init(e.ctx)
	return o
}

func ptr[T any](v T) *T { return &v }

// r0 is the first call consumer holds (its pending entry id).
func r0(e *protoEnv, consumer string) string {
	e.t.Helper()
	p, err := e.rdb.XPendingExt(e.ctx, &redis.XPendingExtArgs{Stream: callsKey(e.h), Group: Group, Start: "-", End: "+", Count: 1, Consumer: consumer}).Result()
	if err != nil || len(p) == 0 {
		e.t.Fatalf("no pending call of %s: %v", consumer, err)
	}
	return p[0].ID
}

// fieldStrings is an envelope's field/value list as Redis stores it: strings.
func fieldStrings(fields []any) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		if b, ok := f.([]byte); ok {
			out[i] = string(b)
		} else {
			out[i] = fmt.Sprint(f)
		}
	}
	return out
}

// fieldMap is fieldStrings as go-redis hands a stream entry over.
func fieldMap(fields []any) map[string]any {
	s := fieldStrings(fields)
	m := make(map[string]any, len(s)/2)
	for i := 0; i < len(s); i += 2 {
		m[s[i]] = s[i+1]
	}
	return m
}
