package streams

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends operations from many goroutines to Redis in batches. Its loop
// takes whatever is queued when it is free, up to max, so a lone operation goes
// out at once and operations that arrive while a batch is in flight share the
// next one: no added delay at low load, few round trips (and few script runs)
// under load. What a batch becomes on the wire is send's choice: one pipeline
// of script calls, or one script call carrying many operations.
type batcher[T op] struct {
	queue   chan T
	max     int
	timeout time.Duration
	send    func(ctx context.Context, batch []T) // completes every op it is given

	// inflight counts batches being sent, by the loop or by callers.
	inflight atomic.Int32

	stop chan struct{} // closed by shutdown: stop taking work
	done chan struct{} // closed when the loop has returned
	once sync.Once
}

// op is one operation waiting in a batcher: a type that embeds pending.
type op interface{ base() *pending }

// pending is the part of an operation the batcher manages: its caller's
// context, and its completion.
type pending struct {
	ctx  context.Context
	err  error
	done chan struct{}
	// then, if set (post), runs when the operation completes, on the
	// goroutine that completes it: it must be quick and must not block.
	then func()
}

func (p *pending) base() *pending { return p }

func (p *pending) init(ctx context.Context) { p.ctx, p.done = ctx, make(chan struct{}) }

// complete ends the operation with err (nil: its results are set).
func (p *pending) complete(err error) {
	p.err = err
	close(p.done)
	if p.then != nil {
		p.then()
	}
}

var errClosed = errors.New("streams: client closed")

func newBatcher[T op](max int, timeout time.Duration, send func(ctx context.Context, batch []T)) *batcher[T] {
	return &batcher[T]{
		queue:   make(chan T, max),
		max:     max,
		timeout: timeout,
		send:    send,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (b *batcher[T]) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(b.done)
		b.loop()
	}()
}

// shutdown stops the loop after the batch in flight; operations still queued
// fail with errClosed. Safe to call more than once.
func (b *batcher[T]) shutdown() {
	b.once.Do(func() { close(b.stop) })
	<-b.done
}

// do queues o (initialised with ctx) and waits until it is complete or ctx
// ends. When no batch is in flight, o is sent at once from the caller's
// goroutine: a lone call pays no hand-off to the loop and back (two goroutine
// wake-ups, a large part of a round trip on loopback).
func (b *batcher[T]) do(ctx context.Context, o T) error {
	p := o.base()
	p.init(ctx)
	if b.inflight.CompareAndSwap(0, 1) {
		select {
		case <-b.stop:
			b.inflight.Add(-1)
			return errClosed
		default:
		}
		b.sendLive([]T{o})
		b.inflight.Add(-1)
		return p.err
	}
	select {
	case b.queue <- o:
	case <-b.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		// The operation may still be sent: the caller cannot know if it took effect.
		return ctx.Err()
	}
}

// post is do without waiting: it queues o (initialised with ctx) and returns;
// then runs when o is complete (its error in o.base().err), on the goroutine
// that completes it. When no batch is in flight, o is sent at once from the
// caller's goroutine, as by do. The caller is not woken back: under load this
// saves a goroutine wake-up per operation. Blocks only while the queue is
// full (back-pressure); when the batcher has stopped, o completes with
// errClosed.
func (b *batcher[T]) post(ctx context.Context, o T, then func()) {
	p := o.base()
	p.init(ctx)
	p.then = then
	if b.inflight.CompareAndSwap(0, 1) {
		select {
		case <-b.stop:
			b.inflight.Add(-1)
			p.complete(errClosed)
			return
		default:
		}
		b.sendLive([]T{o})
		b.inflight.Add(-1)
		return
	}
	select {
	case b.queue <- o:
	case <-b.stop:
		p.complete(errClosed)
	}
}

func (b *batcher[T]) loop() {
	batch := make([]T, 0, b.max)
	for {
		select {
		case <-b.stop:
			b.failQueued()
			return
		case o := <-b.queue:
			batch = append(batch[:0], o)
		}
	fill:
		for len(batch) < b.max {
			select {
			case o := <-b.queue:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		b.inflight.Add(1)
		b.sendLive(batch)
		b.inflight.Add(-1)
	}
}

// sendLive sends the operations whose caller is still waiting, so that an
// operation the caller saw fail is not sent after the fact.
func (b *batcher[T]) sendLive(batch []T) {
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.base().ctx.Err(); err != nil {
			o.base().complete(err)
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	b.send(ctx, live)
}

func (b *batcher[T]) failQueued() {
	for {
		select {
		case o := <-b.queue:
			o.base().complete(errClosed)
		default:
			return
		}
	}
}

// scriptCall is one script run through a pipelining batcher.
type scriptCall struct {
	pending
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// newScriptBatcher sends each batch of script calls as one pipeline of EVALSHAs.
func newScriptBatcher(rdb redis.UniversalClient, max int, timeout time.Duration) *batcher[*scriptCall] {
	return newBatcher(max, timeout, func(ctx context.Context, batch []*scriptCall) {
		runScripts(ctx, rdb, batch)
		for _, sc := range batch {
			sc.complete(sc.cmd.Err())
		}
	})
}

// runScript queues one script call on b, waits until its batch has run and
// returns the script's reply.
func runScript(ctx context.Context, b *batcher[*scriptCall], s *redis.Script, keys []string, args ...any) (any, error) {
	sc := &scriptCall{script: s, keys: keys, args: args}
	if err := b.do(ctx, sc); err != nil {
		return nil, err
	}
	return sc.cmd.Result()
}

// runScripts runs calls as one pipeline of EVALSHAs; errors are left on each
// call's cmd. Scripts unknown to Redis (NOSCRIPT, after a restart or
// failover) are sent again with EVAL, which also loads them.
func runScripts(ctx context.Context, rdb redis.UniversalClient, calls []*scriptCall) {
	pipe := rdb.Pipeline()
	for _, sc := range calls {
		sc.cmd = sc.script.EvalSha(ctx, pipe, sc.keys, sc.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are on each command
	var retry []*scriptCall
	for _, sc := range calls {
		if redis.HasErrorPrefix(sc.cmd.Err(), "NOSCRIPT") {
			retry = append(retry, sc)
		}
	}
	if len(retry) > 0 {
		pipe = rdb.Pipeline()
		for _, sc := range retry {
			sc.cmd = sc.script.Eval(ctx, pipe, sc.keys, sc.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
}

// groupBy splits a batch into the groups one script run can carry, in the
// order their first operations were queued.
func groupBy[T any](batch []T, key func(T) string) (order []string, groups map[string][]T) {
	groups = make(map[string][]T)
	for _, o := range batch {
		k := key(o)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o)
	}
	return order, groups
}
