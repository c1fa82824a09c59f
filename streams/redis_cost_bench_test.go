package streams

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/internal/redistest"
)

// What a call costs Redis, step by step: Redis's own CPU (INFO cpu, its main
// thread) per call for each step of the protocol, as the product runs it
// (scripts) and as the same commands sent without Lua and without any check
// (the least those commands can cost: not a protocol that keeps the
// promises), at batch sizes 1, 5 (what 64 calls in flight give) and 16, and
// one round trip (PING) per batch. docs/performance.md, "Seventh round", reads
// these figures.
//
//	STREAMRPC_BENCH_REDIS=127.0.0.1:6379 go test -run '^$' -bench RedisCPU ./streams/
//
// Without STREAMRPC_BENCH_REDIS it starts a redis:7-alpine container (its
// port mapping adds Docker's proxy to every round trip, but not to Redis's
// CPU, which is what is measured).
func BenchmarkRedisCPUPerCall(b *testing.B) {
	rdb := benchRedis(b)
	ctx := context.Background()
	for _, batch := range []int{1, 5, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for _, v := range []struct {
				name string
				run  func(p *costProbe, b *testing.B)
			}{
				{"protocol", (*costProbe).protocol},
				{"commands-without-lua", (*costProbe).commandsOnly},
			} {
				b.Run(v.name, func(b *testing.B) {
					if err := rdb.FlushAll(ctx).Err(); err != nil {
						b.Fatal(err)
					}
					p := newCostProbe(b, rdb, batch)
					v.run(p, b)
				})
			}
		})
	}
}

func benchRedis(b *testing.B) *redis.Client {
	if addr := os.Getenv("STREAMRPC_BENCH_REDIS"); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		b.Cleanup(func() { _ = rdb.Close() })
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			b.Fatalf("STREAMRPC_BENCH_REDIS=%s: %v", addr, err)
		}
		return rdb
	}
	rdb := redistest.StartSingle(b).Client()
	b.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// costProbe runs the protocol's steps on a handler "echo" with one consumer
// and one edge's reply stream.
type costProbe struct {
	b      *testing.B
	rdb    *redis.Client
	c      *Client
	batch  int
	params []byte
	held   []Delivery // read, not answered yet
}

const (
	costHandler  = "echo"
	costConsumer = "c1"
	costEdge     = "edge1"
)

func newCostProbe(b *testing.B, rdb *redis.Client, batch int) *costProbe {
	ctx := context.Background()
	c := New(rdb, Options{})
	b.Cleanup(func() { _ = c.Close() })
	if err := c.EnsureGroup(ctx, costHandler); err != nil {
		b.Fatal(err)
	}
	if err := c.Register(ctx, HandlerInfo{Name: costHandler, Methods: []MethodInfo{{Name: "echo"}}}, HandlerSettings{}); err != nil {
		b.Fatal(err)
	}
	if err := c.OpenReplyStream(ctx, costEdge); err != nil {
		b.Fatal(err)
	}
	return &costProbe{b: b, rdb: rdb, c: c, batch: batch, params: []byte(`{"data":"` + strings.Repeat("x", 256-11) + `"}`)}
}

// redisCPU is Redis's main thread's CPU time so far: the thread that runs
// commands and scripts, without the background ones that `bench -spawn`'s
// whole-process figure (internal/bench, which imports this package) counts.
func (p *costProbe) redisCPU() time.Duration {
	info, err := p.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		p.b.Fatal(err)
	}
	var sec float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		if name == "used_cpu_sys_main_thread" || name == "used_cpu_user_main_thread" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.b.Fatalf("INFO cpu %q: %v", line, err)
			}
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// step runs f b.N times (each one batch) and reports Redis's CPU per call
// as the metric name.
func (p *costProbe) step(name string, f func()) {
	before := p.redisCPU()
	for range p.b.N {
		f()
	}
	per := p.redisCPU() - before
	p.b.ReportMetric(float64(per.Microseconds())/float64(p.b.N*p.batch), name)
}

func (p *costProbe) calls() []*Call {
	now := time.Now()
	calls := make([]*Call, p.batch)
	for i := range calls {
		calls[i] = &Call{ID: NewCallID(costHandler), Handler: costHandler, Method: "echo", Params: p.params,
			ReplyTo: costEdge, Deadline: now.Add(time.Minute), EnqueuedAt: now, Caller: "127.0.0.1"}
	}
	return calls
}

// replies reads the answered batches' replies off the edge's reply stream,
// one entry (one batch) per read, as the edge's XREAD does.
func (p *costProbe) replies() {
	after := p.replyMarker()
	p.step("reply-µs/call", func() {
		var err error
		var rs []Reply
		rs, after, err = p.c.ReadReplies(context.Background(), costEdge, after, 1, -1)
		if err != nil || len(rs) != p.batch {
			p.b.Fatalf("replies %d of %d: %v", len(rs), p.batch, err)
		}
	})
}

// replyMarker is the id of the reply stream's first entry, which opened it.
func (p *costProbe) replyMarker() string {
	es, err := p.rdb.XRangeN(context.Background(), replyKey(costEdge), "-", "+", 1).Result()
	if err != nil || len(es) != 1 {
		p.b.Fatalf("reply stream: %v %v", es, err)
	}
	return es[0].ID
}

// read takes a batch of calls and keeps them for next.
func (p *costProbe) read() {
	ds, err := p.c.ReadCalls(context.Background(), costHandler, costConsumer, int64(p.batch), -1)
	if err != nil || len(ds) != p.batch {
		p.b.Fatalf("read %d calls of %d: %v", len(ds), p.batch, err)
	}
	p.held = append(p.held, ds...)
}

// next returns the oldest batch of calls read and not answered yet.
func (p *costProbe) next() []Delivery {
	ds := p.held[:p.batch]
	p.held = p.held[p.batch:]
	return ds
}

// protocol: the enqueue script, XREADGROUP, the answer script (which appends
// the replies to the edge's stream), the edge's XREAD; one batch each.
func (p *costProbe) protocol(b *testing.B) {
	ctx := context.Background()
	b.ResetTimer()
	p.step("rtt-µs/call", func() { p.rdb.Ping(ctx) })
	p.step("enqueue-µs/call", func() {
		calls := p.calls()
		ops := make([]*enqueueOp, len(calls))
		for i, call := range calls {
			ops[i] = p.c.newEnqueueOp(call, EnqueueOptions{})
			ops[i].init(ctx)
		}
		p.c.sendEnqueues(ctx, ops)
		if ops[0].err != nil || ops[0].kind != "new" {
			b.Fatalf("enqueue: %v %q %q", ops[0].err, ops[0].kind, ops[0].value)
		}
	})
	p.step("read-µs/call", p.read)
	// The calls read above are answered here, a batch at a time.
	p.step("answer-µs/call", func() {
		ds := p.next()
		ops := make([]*answerOp, len(ds))
		for i := range ds {
			ops[i] = &answerOp{d: &ds[i], reply: ResultReply(ds[i].Call.ID, p.params).encode(), ttl: 60_000,
				group: costHandler + "\x00" + costConsumer + "\x00"}
			ops[i].init(ctx)
		}
		p.c.sendAnswers(ctx, ops)
		if !ops[0].settled {
			b.Fatal("answer: not settled")
		}
	})
	p.replies()
}

// commandsOnly: the same commands in plain pipelines, no script and no
// check: XADDs; XREADGROUP; XPENDING, XACK, XDEL, a SET per call and one
// XADD of the replies; XREAD.
func (p *costProbe) commandsOnly(b *testing.B) {
	ctx := context.Background()
	key := callsKey(costHandler)
	b.ResetTimer()
	p.step("rtt-µs/call", func() { p.rdb.Ping(ctx) })
	p.step("enqueue-µs/call", func() {
		pipe := p.rdb.Pipeline()
		for _, call := range p.calls() {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: call.appendFields(nil)})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	})
	p.step("read-µs/call", p.read)
	p.step("answer-µs/call", func() {
		ds := p.next()
		ops := make([]*answerOp, len(ds))
		for i := range ds {
			ops[i] = &answerOp{d: &ds[i]}
		}
		low, high := entryRange(ops)
		ids := make([]string, len(ds))
		var replies []any
		pipe := p.rdb.Pipeline()
		pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: Group, Start: low, End: high, Count: int64(answerPendingPerCall * len(ds)), Consumer: costConsumer})
		for i, d := range ds {
			ids[i] = d.entryID()
			reply := ResultReply(d.Call.ID, p.params).encode()
			pipe.Set(ctx, resultKey(d.Call.ID), reply, time.Minute)
			replies = append(replies, d.Call.ID, reply)
		}
		pipe.XAck(ctx, key, Group, ids...)
		pipe.XDel(ctx, key, ids...)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: replyKey(costEdge), NoMkStream: true, MaxLen: 10_000, Approx: true, Values: replies})
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	})
	p.replies()
}
