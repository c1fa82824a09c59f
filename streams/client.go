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
	// MaxBatch is the most script calls one pipeline carries. Default 256.
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
	rdb     redis.UniversalClient
	opts    Options
	enqueue *batcher
	finish  *batcher
	wg      sync.WaitGroup
	once    sync.Once
}

// New returns a Client over rdb.
func New(rdb redis.UniversalClient, opts Options) *Client {
	opts = opts.withDefaults()
	c := &Client{
		rdb:     rdb,
		opts:    opts,
		enqueue: newBatcher(rdb, opts.MaxBatch, opts.BatchTimeout),
		finish:  newBatcher(rdb, opts.MaxBatch, opts.BatchTimeout),
	}
	c.enqueue.start(&c.wg)
	c.finish.start(&c.wg)
	return c
}

// Close stops the pipeline loops. Safe to call more than once.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.enqueue.shutdown()
		c.finish.shutdown()
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

// enqueueScript appends a call to its handler's stream if a consumer has
// registered the handler and method.
//
//	KEYS[1] the handler's calls stream
//	KEYS[2] the handler's methods hash
//	ARGV[1] method
//	ARGV[2] backlog limit (0: none)
//	ARGV[3..] envelope field/value pairs
//	returns the stream entry id; errors NOHANDLER, NOMETHOD, BACKLOG
var enqueueScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOHANDLER') end
  return redis.error_reply('NOMETHOD')
end
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('XLEN', KEYS[1]) >= limit then return redis.error_reply('BACKLOG') end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
`)

// ErrBacklogFull is returned by Enqueue when the handler's backlog is at its limit.
var ErrBacklogFull = errors.New("handler backlog is full")

// Enqueue appends call to its handler's stream. backlogLimit > 0 refuses the
// call with ErrBacklogFull when that many calls are already queued or running.
func (c *Client) Enqueue(ctx context.Context, call *Call, backlogLimit int64) error {
	args := make([]any, 0, 16)
	args = append(args, call.Method, backlogLimit)
	args = call.appendFields(args)
	_, err := c.enqueue.run(ctx, enqueueScript, []string{callsKey(call.Handler), methodsKey(call.Handler)}, args...)
	switch {
	case err == nil:
		return nil
	case redis.HasErrorPrefix(err, "NOHANDLER"):
		return fmt.Errorf("%w: %q", ErrNoHandler, call.Handler)
	case redis.HasErrorPrefix(err, "NOMETHOD"):
		return fmt.Errorf("%w: %q has no method %q", ErrNoMethod, call.Handler, call.Method)
	case redis.HasErrorPrefix(err, "BACKLOG"):
		return fmt.Errorf("%w: %q has %d calls waiting", ErrBacklogFull, call.Handler, backlogLimit)
	}
	return unavailable(err)
}

// OpenReplyStream creates the reply stream of edge edgeID (with a marker entry
// that ReadReplies skips) and gives it ReplyStreamTTL. Consumers only write to
// a reply stream that exists, so an edge that is gone collects no replies.
func (c *Client) OpenReplyStream(ctx context.Context, edgeID string) error {
	key := replyKey(edgeID)
	pipe := c.rdb.Pipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: []any{"open", "1"}})
	pipe.Expire(ctx, key, ReplyStreamTTL)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// KeepReplyStream extends the reply stream's TTL, and recreates it if Redis
// lost it (a restart without persistence).
func (c *Client) KeepReplyStream(ctx context.Context, edgeID string) error {
	ok, err := c.rdb.Expire(ctx, replyKey(edgeID), ReplyStreamTTL).Result()
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return c.OpenReplyStream(ctx, edgeID)
	}
	return nil
}

// ReadReplies reads up to count replies after stream id `after` from edge
// edgeID's reply stream, blocking up to block. It returns the replies and the
// id to read after next time.
func (c *Client) ReadReplies(ctx context.Context, edgeID, after string, count int64, block time.Duration) ([]Reply, string, error) {
	res, err := c.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{replyKey(edgeID), after},
		Count:   count,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, unavailable(err)
	}
	var replies []Reply
	for _, s := range res {
		for _, m := range s.Messages {
			after = m.ID
			id, _ := m.Values["id"].(string)
			v, _ := m.Values["v"].(string)
			if id == "" {
				continue // the marker entry
			}
			r, err := decodeReply(id, v)
			if err != nil {
				continue
			}
			replies = append(replies, r)
		}
	}
	return replies, after, nil
}

// Result reads the reply kept under call id. ErrNotFound if there is none
// (unknown id, not finished yet, or expired).
func (c *Client) Result(ctx context.Context, id string) (Reply, error) {
	if err := ValidateID(id); err != nil {
		return Reply{}, err
	}
	v, err := c.rdb.Get(ctx, resultKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return Reply{}, ErrNotFound
	}
	if err != nil {
		return Reply{}, unavailable(err)
	}
	return decodeReply(id, v)
}

// Register records that handler serves methods (name -> JSON description), so
// that the edge accepts calls for them. Consumers call it on start.
func (c *Client) Register(ctx context.Context, handler string, methods map[string][]byte) error {
	if err := ValidateName("handler", handler); err != nil {
		return err
	}
	if len(methods) == 0 {
		return fmt.Errorf("%w: handler %q registers no methods", ErrInvalidName, handler)
	}
	fields := make([]any, 0, 2*len(methods))
	for m, info := range methods {
		if err := ValidateName("method", m); err != nil {
			return err
		}
		fields = append(fields, m, info)
	}
	pipe := c.rdb.Pipeline()
	pipe.HSet(ctx, methodsKey(handler), fields...)
	pipe.SAdd(ctx, handlersKey(), handler)
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
	Call     *Call // nil if Err is set and the entry had no usable id
	Err      error // ErrBadEnvelope when the entry could not be decoded
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
			call, err := decodeCall(handler, m.Values)
			out = append(out, Delivery{Handler: handler, StreamID: m.ID, Call: call, Err: err})
		}
	}
	return out, nil
}

// finishScript settles a call in one round trip: ack and delete the entry (so
// the stream's length is the backlog), keep the reply under the call id, and
// hand it to the waiting edge if that edge's reply stream still exists.
//
//	KEYS[1] the handler's calls stream
//	KEYS[2] the call's result key
//	KEYS[3] the edge's reply stream
//	ARGV[1] group, ARGV[2] stream entry id, ARGV[3] call id, ARGV[4] encoded reply,
//	ARGV[5] result TTL in ms, ARGV[6] reply stream max length
//	returns 1 if this settled the call, 0 if it was already settled (acked by
//	another consumer after a redelivery): then no second reply is sent.
//
// On Redis Cluster the three keys are in different slots; see the README.
var finishScript = redis.NewScript(`
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[3], 'v', ARGV[4])
end
return 1
`)

// Finish acks the delivery and publishes its reply, in one script call. It
// reports whether this consumer settled the call (false: someone else had).
func (c *Client) Finish(ctx context.Context, d *Delivery, reply Reply) (bool, error) {
	ttl := d.Call.ResultTTL
	if ttl <= 0 {
		ttl = c.opts.ResultTTL
	}
	res, err := c.finish.run(ctx, finishScript,
		[]string{callsKey(d.Handler), resultKey(d.Call.ID), replyKey(d.Call.ReplyTo)},
		Group, d.StreamID, d.Call.ID, reply.encode(), ttl.Milliseconds(), c.opts.ReplyStreamMaxLen)
	if err != nil {
		return false, unavailable(err)
	}
	n, _ := res.(int64)
	return n == 1, nil
}

// Drop acks and deletes an entry without replying: for poison entries that
// carry no usable call id.
func (c *Client) Drop(ctx context.Context, d *Delivery) error {
	pipe := c.rdb.Pipeline()
	pipe.XAck(ctx, callsKey(d.Handler), Group, d.StreamID)
	pipe.XDel(ctx, callsKey(d.Handler), d.StreamID)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// Handlers lists the names of every registered handler.
func (c *Client) Handlers(ctx context.Context) ([]string, error) {
	names, err := c.rdb.SMembers(ctx, handlersKey()).Result()
	return names, unavailable(err)
}

// Methods returns a handler's registered methods (name -> JSON description).
func (c *Client) Methods(ctx context.Context, handler string) (map[string]string, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	m, err := c.rdb.HGetAll(ctx, methodsKey(handler)).Result()
	return m, unavailable(err)
}

// Backlog is the number of calls queued or running for handler.
func (c *Client) Backlog(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.XLen(ctx, callsKey(handler)).Result()
	return n, unavailable(err)
}
