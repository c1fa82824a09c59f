// Package streams is the one place that knows streamrpc's Redis layout and
// protocol: key names, the call envelope, consumer groups, the reply path and
// the Lua scripts. The edge (app) and the consumer SDK (consumers) use it
// through Client and never name a key or run a stream command themselves.
package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a Client. The zero value works.
type Options struct {
	// ResultTTL is how long a call's reply stays readable by id. Default 10m.
	ResultTTL time.Duration
	// ReplyStreamMaxLen caps each edge's reply stream (approximate trim). Default 10000.
	ReplyStreamMaxLen int64
	// MaxBatch is the most calls one batch carries (enqueues, answers). Default 256.
	MaxBatch int
	// BatchTimeout bounds one pipeline's round trip. Default 5s.
	BatchTimeout time.Duration
	// Durability asks for writes confirmed by replicas. Default: off.
	Durability Durability
}

// Durability asks that the writes a caller is told about (a call enqueued, a
// call settled) be confirmed by replicas with Redis's WAIT before the caller
// hears of them, so that a failover right after loses none of them (see
// durable.go for what WAIT does and does not promise). It costs the time a
// replica takes to acknowledge, on every batch.
type Durability struct {
	// Replicas is how many replicas must have a write. Default 0: off.
	Replicas int `env:"STREAMRPC_DURABLE_REPLICAS"`
	// Timeout bounds the wait; a write not confirmed in time is reported
	// as ErrNotReplicated (a call enqueued so may still run). Default 1s.
	Timeout time.Duration `env:"STREAMRPC_DURABLE_TIMEOUT"`
}

func (o Options) withDefaults() Options {
	if o.ResultTTL <= 0 {
		o.ResultTTL = 10 * time.Minute
	}
	if o.ReplyStreamMaxLen <= 0 {
		o.ReplyStreamMaxLen = 10000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 5 * time.Second
	}
	if o.Durability.Timeout <= 0 {
		o.Durability.Timeout = time.Second
	}
	return o
}

// ReplyStreamTTL is how long an edge's reply stream outlives the edge's last
// keep-alive; an edge refreshes it every ReplyStreamTTL/3.
const ReplyStreamTTL = 60 * time.Second

// Client runs the protocol over one go-redis client. It is safe for concurrent
// use; Close stops its pipeline loops (the go-redis client stays the caller's).
type Client struct {
	rdb      redis.UniversalClient
	opts     Options
	enqueue  *batcher[*enqueueOp]  // enqueue scripts, one run per handler per batch
	answers  *batcher[*answerOp]   // answered calls, one run per handler per batch
	finish   *batcher[*scriptCall] // retries, dead letters and rate limits, pipelined
	emits    *batcher[*emitOp]     // streamed events, one XADD per edge per batch
	recorder *recorder             // stats, activity and stories, written in the background
	// inlineReplies: the settle scripts append replies to the edges' reply
	// streams themselves. True on one Redis; on Redis Cluster the reply
	// streams are in other hash slots, and a second command appends them.
	inlineReplies bool
	wg            sync.WaitGroup
	once          sync.Once
}

// New returns a Client over rdb.
func New(rdb redis.UniversalClient, opts Options) *Client {
	opts = opts.withDefaults()
	c := &Client{
		rdb:      rdb,
		opts:     opts,
		finish:   newScriptBatcher(rdb, opts.MaxBatch, opts.BatchTimeout),
		recorder: newRecorder(rdb),
	}
	_, cluster := rdb.(*redis.ClusterClient)
	c.inlineReplies = !cluster
	c.enqueue = newBatcher(opts.MaxBatch, opts.BatchTimeout, c.sendEnqueues)
	c.answers = newBatcher(opts.MaxBatch, opts.BatchTimeout, c.sendAnswers)
	c.emits = newBatcher(opts.MaxBatch, opts.BatchTimeout, c.sendEmissions)
	c.enqueue.start(&c.wg)
	c.emits.start(&c.wg)
	c.answers.start(&c.wg)
	c.finish.start(&c.wg)
	c.recorder.start(&c.wg)
	return c
}

// Close stops the pipeline loops, after writing the stats recorded so far.
// Safe to call more than once.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.enqueue.shutdown()
		c.emits.shutdown() // before the answers: a call's events go out before its reply
		c.answers.shutdown()
		c.finish.shutdown()
		c.recorder.shutdown()
		c.wg.Wait()
	})
	return nil
}

// runScripts runs calls in one pipeline (one per node on a Cluster), durably
// if asked: then errs holds each call's ErrNotReplicated, or nil.
func (c *Client) runScripts(ctx context.Context, calls []*scriptCall) (errs []error) {
	if d := c.opts.Durability; d.Replicas > 0 {
		return runScriptsDurable(ctx, c.rdb, calls, d.Replicas, d.Timeout)
	}
	runScripts(ctx, c.rdb, calls)
	return nil
}

// Redis returns the underlying go-redis client.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// unavailable wraps errors that mean Redis could not be used: network errors,
// timeouts, a closed pool, a server that is loading or read-only.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || // the server went away mid-command

		redis.HasErrorPrefix(err, "LOADING") || redis.HasErrorPrefix(err, "READONLY") ||
		redis.HasErrorPrefix(err, "MASTERDOWN") || redis.HasErrorPrefix(err, "CLUSTERDOWN") ||
		redis.HasErrorPrefix(err, "TRYAGAIN") || // a Cluster slot being migrated or failed over
		strings.Contains(err.Error(), "connection refused") || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err) // both: a deadline stays a deadline (app answers it 504)
	}
	return err
}
