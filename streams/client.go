// Package streams is the one place that knows streamrpc's Redis layout and
// protocol: key names, the call envelope, consumer groups, the reply path and
// the Lua scripts. The edge (app) and the consumer SDK (consumers) use it
// through Client and never name a key or run a stream command themselves.
package streams

import (
	"context"
	"errors"
	"fmt"
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
	recorder *recorder             // stats, activity and stories, written in the background
	wg       sync.WaitGroup
	once     sync.Once
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
	c.enqueue = newBatcher(opts.MaxBatch, opts.BatchTimeout, sendEnqueues(rdb))
	c.answers = newBatcher(opts.MaxBatch, opts.BatchTimeout, c.sendAnswers)
	c.enqueue.start(&c.wg)
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
		c.answers.shutdown()
		c.finish.shutdown()
		c.recorder.shutdown()
		c.wg.Wait()
	})
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
		redis.HasErrorPrefix(err, "LOADING") || redis.HasErrorPrefix(err, "READONLY") ||
		redis.HasErrorPrefix(err, "MASTERDOWN") || redis.HasErrorPrefix(err, "CLUSTERDOWN") ||
		strings.Contains(err.Error(), "connection refused") || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}
