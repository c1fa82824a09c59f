package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/streams"
)

// The floor is the least this design can cost on this machine with go-redis:
// a caller XADDs params to a request stream and waits for the answer with a
// blocking XREAD on its own reply stream; a worker, on its own go-redis
// client, takes the request with a blocking XREADGROUP and answers with one
// small script (XACK, XDEL, XADD to the caller's reply stream), as our
// consumer's answer script does. No HTTP, no JSON, no edge, no batching, no
// goroutine between the caller and Redis: what is left is Redis round trips
// and wake-ups. Measured in the same run as the baseline, it says how close
// to the queue-less echo any edge built this way can get.

// floorAnswer acks and deletes the request and hands the reply to its caller.
//
//	KEYS[1] request stream, KEYS[2] the caller's reply stream
//	ARGV[1] group, ARGV[2] entry id, ARGV[3] request id, ARGV[4] params
var floorAnswer = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', 'id', ARGV[3], 'p', ARGV[4])
`)

const floorGroup = "floor"

// floor is a running floor measurement: the workers, and the callers' state.
type floor struct {
	callers, workers *redis.Client
	prefix           string // every key it makes starts with it; deleted at the end
	reqKey           string
	params           []byte
	timeout          time.Duration
	// per caller (the load's worker index): its reply stream and the last
	// entry it read there. Each is touched by its own goroutine only.
	replyKeys []string
	lastIDs   []string
	seqs      []uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error // a worker's first error, reported by stop
}

// startFloor makes the streams and starts nWorkers workers on redisURL.
func startFloor(ctx context.Context, cfg Config, nWorkers int) (*floor, error) {
	var tag [6]byte
	_, _ = rand.Read(tag[:])
	prefix := "srpc:benchfloor:" + hex.EncodeToString(tag[:]) + ":"
	connect := func(pool int) (*redis.Client, error) {
		u, err := streams.Connect(streams.RedisOptions{URL: cfg.RedisURL, PoolSize: pool})
		if err != nil {
			return nil, err
		}
		c, ok := u.(*redis.Client)
		if !ok {
			_ = u.Close()
			return nil, errors.New("-floor runs on one Redis node (a redis:// URL), not a Cluster or Sentinel")
		}
		return c, nil
	}
	f := &floor{prefix: prefix, reqKey: prefix + "req", params: Params(cfg.Size), timeout: cfg.Timeout}
	var err error
	// Every caller and worker holds a connection in its blocking read.
	if f.callers, err = connect(cfg.Concurrency + 2); err != nil {
		return nil, err
	}
	if f.workers, err = connect(nWorkers + 2); err != nil {
		_ = f.callers.Close()
		return nil, err
	}
	fail := func(err error) (*floor, error) {
		_ = f.callers.Close()
		_ = f.workers.Close()
		return nil, err
	}
	if err := f.workers.XGroupCreateMkStream(ctx, f.reqKey, floorGroup, "$").Err(); err != nil {
		return fail(fmt.Errorf("floor: creating the group: %w", err))
	}
	if err := floorAnswer.Load(ctx, f.workers).Err(); err != nil {
		return fail(fmt.Errorf("floor: loading the script: %w", err))
	}
	for i := range cfg.Concurrency {
		f.replyKeys = append(f.replyKeys, prefix+"rep:"+strconv.Itoa(i))
		f.lastIDs = append(f.lastIDs, "0-0")
		f.seqs = append(f.seqs, 0)
	}
	wctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for i := range nWorkers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.work(wctx, "w"+strconv.Itoa(i))
		}()
	}
	return f, nil
}

// work takes one request at a time and answers it, until ctx ends.
func (f *floor) work(ctx context.Context, name string) {
	for ctx.Err() == nil {
		res, err := f.workers.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: floorGroup, Consumer: name, Streams: []string{f.reqKey, ">"}, Count: 1, Block: 100 * time.Millisecond,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			f.fail(ctx, err)
			return
		}
		for _, s := range res {
			for _, m := range s.Messages {
				id, _ := m.Values["id"].(string)
				to, _ := m.Values["r"].(string)
				p, _ := m.Values["p"].(string)
				err := floorAnswer.EvalSha(ctx, f.workers, []string{f.reqKey, to}, floorGroup, m.ID, id, p).Err()
				if err != nil {
					f.fail(ctx, err)
					return
				}
			}
		}
	}
}

func (f *floor) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopping: the read was cut short
	}
	f.errMu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf("floor worker: %w", err)
	}
	f.errMu.Unlock()
}

// call is one request from caller w: XADD, then a blocking XREAD of w's reply
// stream; the reply must carry this request's id and params.
func (f *floor) call(ctx context.Context, w int) error {
	f.seqs[w]++
	id := strconv.Itoa(w) + "." + strconv.FormatUint(f.seqs[w], 10)
	err := f.callers.XAdd(ctx, &redis.XAddArgs{
		Stream: f.reqKey, Values: []any{"id", id, "r", f.replyKeys[w], "p", f.params},
	}).Err()
	if err != nil {
		return err
	}
	for {
		block := f.timeout
		if d, ok := ctx.Deadline(); ok {
			block = max(time.Until(d), time.Millisecond)
		}
		res, err := f.callers.XRead(ctx, &redis.XReadArgs{
			Streams: []string{f.replyKeys[w], f.lastIDs[w]}, Count: 1, Block: block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			return context.DeadlineExceeded
		}
		if err != nil {
			return err
		}
		if len(res) != 1 || len(res[0].Messages) != 1 {
			return errMismatch
		}
		m := res[0].Messages[0]
		f.lastIDs[w] = m.ID
		// One call in flight per caller: the next entry on its stream is its
		// answer, unless it is the late answer of one that timed out.
		got, _ := m.Values["id"].(string)
		if got != id {
			if f.stale(w, got) {
				continue
			}
			return errMismatch
		}
		if p, _ := m.Values["p"].(string); p != string(f.params) {
			return errMismatch
		}
		return nil
	}
}

// stale reports whether id is an earlier request of caller w.
func (f *floor) stale(w int, id string) bool {
	c, seq, ok := strings.Cut(id, ".")
	n, err := strconv.ParseUint(seq, 10, 64)
	return ok && err == nil && c == strconv.Itoa(w) && n < f.seqs[w]
}

func (f *floor) close() {}

// stop stops the workers, deletes the floor's keys and reports a worker's
// error, if one failed.
func (f *floor) stop() error {
	f.cancel()
	f.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys := append([]string{f.reqKey}, f.replyKeys...)
	_ = f.callers.Del(ctx, keys...).Err()
	_ = f.callers.Close()
	_ = f.workers.Close()
	return f.err
}

// measureFloor runs cfg's closed-loop load on the floor, with as many workers
// as calls in flight (as the consumer runs with -consumer-concurrency c).
func measureFloor(ctx context.Context, cfg Config) (Result, error) {
	f, err := startFloor(ctx, cfg, cfg.Concurrency)
	if err != nil {
		return Result{}, err
	}
	if cfg.Warmup > 0 {
		load(ctx, cfg, f, cfg.Warmup, "floor")
	}
	// Redis's CPU per call (INFO cpu) beside this process's: the floor's
	// whole cost, to set beside the edge's, the consumer's and Redis's.
	redisCPU := newProcWatch(nil, f.callers)
	redisCPU.start(ctx)
	res := load(ctx, cfg, f, cfg.Duration, "floor")
	res.Procs = redisCPU.finish(ctx, res.Calls)
	if err := f.stop(); err != nil {
		return res, err
	}
	return res, ctx.Err()
}
