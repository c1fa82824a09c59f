package streams

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends script calls from many goroutines to Redis in pipelines. Its
// loop takes whatever is queued when it is free, up to max, so a lone call goes
// out at once and calls that arrive while a pipeline is in flight share the next
// one: no added delay at low load, few round trips under load.
type batcher struct {
	rdb     redis.UniversalClient
	queue   chan *scriptCall
	max     int
	timeout time.Duration

	stop chan struct{} // closed by shutdown: stop taking work
	done chan struct{} // closed when the loop has returned
	once sync.Once
}

type scriptCall struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	done   chan struct{}
}

var errClosed = errors.New("streams: client closed")

func newBatcher(rdb redis.UniversalClient, max int, timeout time.Duration) *batcher {
	return &batcher{
		rdb:     rdb,
		queue:   make(chan *scriptCall, max),
		max:     max,
		timeout: timeout,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (b *batcher) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(b.done)
		b.loop()
	}()
}

// shutdown stops the loop after the pipeline in flight; calls still queued fail
// with errClosed. Safe to call more than once.
func (b *batcher) shutdown() {
	b.once.Do(func() { close(b.stop) })
	<-b.done
}

// run queues one script call and waits for its reply or for ctx.
func (b *batcher) run(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	sc := &scriptCall{ctx: ctx, script: s, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.queue <- sc:
	case <-b.stop:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-sc.done:
		return sc.cmd.Result()
	case <-ctx.Done():
		// The call may still be sent: the caller cannot know if it took effect.
		return nil, ctx.Err()
	}
}

func (b *batcher) loop() {
	batch := make([]*scriptCall, 0, b.max)
	for {
		select {
		case <-b.stop:
			b.failQueued()
			return
		case sc := <-b.queue:
			batch = append(batch[:0], sc)
		}
	fill:
		for len(batch) < b.max {
			select {
			case sc := <-b.queue:
				batch = append(batch, sc)
			default:
				break fill
			}
		}
		b.send(batch)
	}
}

func (b *batcher) failQueued() {
	for {
		select {
		case sc := <-b.queue:
			sc.cmd = redis.NewCmd(sc.ctx)
			sc.cmd.SetErr(errClosed)
			close(sc.done)
		default:
			return
		}
	}
}

// send runs one batch as a pipeline of EVALSHAs. Calls whose caller has given up
// are left out, so that a call the caller saw fail is not sent after the fact.
// Scripts unknown to Redis (NOSCRIPT, after a restart or failover) are sent
// again with EVAL, which also loads them.
func (b *batcher) send(batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	pipe := b.rdb.Pipeline()
	live := batch[:0:0]
	for _, sc := range batch {
		if err := sc.ctx.Err(); err != nil {
			sc.cmd = redis.NewCmd(sc.ctx)
			sc.cmd.SetErr(err)
			close(sc.done)
			continue
		}
		sc.cmd = sc.script.EvalSha(ctx, pipe, sc.keys, sc.args...)
		live = append(live, sc)
	}
	if len(live) == 0 {
		return
	}
	_, _ = pipe.Exec(ctx) // errors are on each command
	var retry []*scriptCall
	for _, sc := range live {
		if redis.HasErrorPrefix(sc.cmd.Err(), "NOSCRIPT") {
			retry = append(retry, sc)
			continue
		}
		close(sc.done)
	}
	if len(retry) > 0 {
		pipe = b.rdb.Pipeline()
		for _, sc := range retry {
			sc.cmd = sc.script.Eval(ctx, pipe, sc.keys, sc.args...)
		}
		_, _ = pipe.Exec(ctx)
		for _, sc := range retry {
			close(sc.done)
		}
	}
}
