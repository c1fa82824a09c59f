package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// abandonAfter is how long Shutdown waits, after the grace period, for
// handlers whose context it cancelled.
const abandonAfter = 5 * time.Second

// ErrServerClosed is returned by Start after Shutdown or Close.
var ErrServerClosed = errors.New("consumers: server closed")

// Server reads a handler's calls from Redis and runs them.
//
// Start registers the handler's methods and starts reading. Shutdown stops
// reading, lets the calls in flight finish until its context ends, then
// cancels what still runs and leaves those calls pending in Redis for another
// consumer to take. Close is Shutdown without a grace period.
//
// Delivery is at least once: a call taken by a consumer that dies is claimed
// by another after VisibilityTimeout; a retryable error is retried with
// backoff up to MaxAttempts, then the call goes to the dead letters.
type Server struct {
	cfg     Config
	handler Handler
	streams *streams.Client
	log     *slog.Logger
	stats   *statsKeeper
	obs     *observer // metrics, call logs and spans (observe.go)

	mu      sync.Mutex
	started bool
	closed  bool

	reader    *reader
	forwarder *periodic // moves due retries into the stream
	lease     *periodic // renews the lease of running calls
	beat      *periodic // heartbeats to the registry
	loops     sync.WaitGroup
	inflight  sync.WaitGroup

	running sync.Map // stream entry id -> struct{}: calls this server holds
	cancels sync.Map // call id -> context.CancelCauseFunc of its running handler
	watcher *cancelWatcher

	// runCtx is the parent of every handler's context; cancelled when the
	// shutdown grace period is over.
	runCtx    context.Context
	cancelRun context.CancelFunc
	once      sync.Once
}

// NewServer returns a Server for cfg.Handler that runs calls with h. The
// go-redis client stays the caller's to close.
func NewServer(rdb redis.UniversalClient, cfg Config, h Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: nil Handler", ErrConfig)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		handler: h,
		streams: streams.New(rdb, streams.Options{ResultTTL: cfg.ResultTTL, Durability: cfg.Durability}),
		log:     cfg.Logger.With("handler", cfg.Handler, "consumer", cfg.Name),
		stats:   newStatsKeeper(),
	}
	obs, err := newObserver(cfg, s.log, h)
	if err != nil {
		return nil, err
	}
	s.obs = obs
	s.runCtx, s.cancelRun = context.WithCancel(context.Background())
	return s, nil
}

// ConnectRedis returns a go-redis client for a REDIS_URL: one node, a Redis
// Cluster or a Sentinel-managed primary (see streams.RedisOptions.URL).
func ConnectRedis(url string) (redis.UniversalClient, error) {
	return streams.Connect(streams.RedisOptions{URL: url})
}

// Name is this consumer's name in the group.
func (s *Server) Name() string { return s.cfg.Name }

// Stats returns a snapshot of what this server has done.
func (s *Server) Stats() Stats { return s.stats.snapshot(s.cfg.Handler, s.cfg.Name) }

// Start registers the handler and starts taking calls. It returns once the
// registration is in Redis, so calls made after it are accepted by the edge.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return nil
	}
	if err := s.register(ctx); err != nil {
		return err
	}
	s.reader = &reader{s: s, stop: make(chan struct{}), done: make(chan struct{}), slots: make(chan struct{}, s.cfg.Concurrency)}
	s.forwarder = newPeriodic(s.forwardDue)
	s.lease = newPeriodic(s.renewLeases)
	s.beat = newPeriodic(s.heartbeat)
	s.beat.start(&s.loops)
	s.watcher = newCancelWatcher(s)
	s.watcher.start(&s.loops)
	s.reader.start(&s.loops)
	s.forwarder.start(&s.loops)
	s.lease.start(&s.loops)
	s.started = true
	s.log.Info("consumer started", "concurrency", s.cfg.Concurrency, "max_attempts", s.cfg.MaxAttempts,
		"visibility_timeout", s.cfg.VisibilityTimeout)
	return nil
}

func (s *Server) register(ctx context.Context) error {
	var methods []MethodInfo
	if ml, ok := s.handler.(MethodLister); ok {
		methods = ml.Methods()
	}
	if len(methods) == 0 {
		return fmt.Errorf("%w: the handler lists no methods (use a Mux, or implement MethodLister)", ErrConfig)
	}
	if err := s.streams.EnsureGroup(ctx, s.cfg.Handler); err != nil {
		return fmt.Errorf("consumers: creating the consumer group: %w", err)
	}
	info := streams.HandlerInfo{
		Name: s.cfg.Handler, Description: s.cfg.Description, Kind: s.kind(), Version: s.cfg.Version,
		Concurrency: s.cfg.Concurrency, MaxAttempts: s.cfg.MaxAttempts, Methods: methods,
	}
	if err := s.streams.Register(ctx, info, streams.HandlerSettings{MaxBacklog: s.cfg.MaxBacklog}); err != nil {
		return fmt.Errorf("consumers: registering %s: %w", s.cfg.Handler, err)
	}
	s.heartbeat()
	return nil
}

// kind is how the registry shows this consumer: the Go SDK or the sidecar.
func (s *Server) kind() string {
	if _, ok := s.handler.(*Sidecar); ok {
		return "sidecar"
	}
	return "go"
}

// heartbeat tells the registry this consumer is online and what it runs.
func (s *Server) heartbeat() time.Duration {
	n := 0
	s.running.Range(func(_, _ any) bool { n++; return true })
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.streams.Heartbeat(ctx, s.cfg.Handler, streams.ConsumerInfo{
		Name: s.cfg.Name, Kind: s.kind(), Version: s.cfg.Version, Host: host,
		Concurrency: s.cfg.Concurrency, Running: n, Started: s.stats.started,
	})
	if err != nil {
		s.log.Debug("heartbeat failed", "err", err)
	}
	return streams.ConsumerOnlineAfter / 3
}

// Run starts the server and serves until ctx ends, then shuts down with up
// to grace for calls in flight.
func (s *Server) Run(ctx context.Context, grace time.Duration) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown stops taking calls and waits for those in flight to finish and be
// acknowledged, until ctx ends. Calls still running then get their context
// cancelled; a call whose reply could not be written stays pending in Redis
// and is redelivered to another consumer. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.mu.Unlock()
	var err error
	s.once.Do(func() {
		if started {
			// Stop taking work; leases keep being renewed while calls drain.
			s.reader.shutdown()
			s.forwarder.shutdown()
			drained := make(chan struct{})
			go func() { s.inflight.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-ctx.Done():
				err = fmt.Errorf("consumers: calls still running at the end of the grace period: %w", ctx.Err())
				s.cancelRun()
				// Handlers see their context cancelled; one that ignores it is
				// abandoned after abandonAfter (its call stays pending and is
				// redelivered) rather than holding the process forever.
				select {
				case <-drained:
				case <-time.After(abandonAfter):
					s.log.Warn("handlers ignored their cancelled context; abandoning them", "after", abandonAfter)
				}
			}
			s.lease.shutdown()
			s.watcher.shutdown()
			s.beat.shutdown()
			s.loops.Wait()
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if derr := s.streams.Deregister(dctx, s.cfg.Handler, s.cfg.Name); derr != nil {
				s.log.Debug("deregistering failed; the consumer shows offline after its heartbeat lapses", "err", derr)
			}
			cancel()
		}
		s.cancelRun()
		_ = s.streams.Close()
		s.log.Info("consumer stopped")
	})
	return err
}

// Close stops at once: running calls are cancelled. Safe to call more than once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
	return nil
}

// reader is the loop that takes calls, only as many as there are free slots,
// and starts one goroutine per call. Before reading new calls it claims, at
// most every VisibilityTimeout/2, calls whose consumer stopped renewing them.
type reader struct {
	s     *Server
	slots chan struct{} // a token per running call
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (r *reader) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		r.loop()
	}()
}

func (r *reader) shutdown() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *reader) loop() {
	s := r.s
	outages := outage.New(s.log)
	claimEvery := s.cfg.VisibilityTimeout / 2
	var lastClaim time.Time
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case r.slots <- struct{}{}:
		case <-r.stop:
			return
		}
		n := 1
		for n < cap(r.slots) {
			select {
			case r.slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		// Reads are not cancelled by shutdown: calls Redis handed over would
		// be left pending. They return within ReadBlock.
		var ds []streams.Delivery
		var err error
		if time.Since(lastClaim) >= claimEvery {
			lastClaim = time.Now()
			ds, err = s.streams.Claim(context.Background(), s.cfg.Handler, s.cfg.Name, s.cfg.VisibilityTimeout, int64(n))
			if len(ds) > 0 {
				s.log.Info("claimed calls from a consumer that stopped renewing them", "count", len(ds))
			}
		}
		if err == nil && len(ds) < n {
			var fresh []streams.Delivery
			block := s.cfg.ReadBlock
			if len(ds) > 0 {
				block = -1 // do not wait: there is work in hand
			}
			fresh, err = s.streams.ReadCalls(context.Background(), s.cfg.Handler, s.cfg.Name, int64(n-len(ds)), block)
			ds = append(ds, fresh...)
		}
		for i := len(ds); i < n; i++ {
			<-r.slots
		}
		for i := range ds {
			d := ds[i]
			s.running.Store(d.StreamID, struct{}{})
			s.inflight.Add(1)
			go func() {
				defer func() { s.running.Delete(d.StreamID); <-r.slots; s.inflight.Done() }()
				s.process(&d)
			}()
		}
		if err != nil {
			outages.Failed(err)
			select {
			case <-time.After(outages.Backoff()):
			case <-r.stop:
				return
			}
			continue
		}
		outages.OK()
		select {
		case <-r.stop:
			return
		default:
		}
	}
}

var (
	errPanic             = errors.New("handler panicked")
	errCancelledByCaller = errors.New("cancelled by the caller")
)

// cancelWatcher listens on the handler's cancel channel (one subscription per
// server, not per call) and cancels the context of each running call named.
type cancelWatcher struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newCancelWatcher(s *Server) *cancelWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &cancelWatcher{s: s, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (w *cancelWatcher) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(w.done)
		for w.ctx.Err() == nil {
			_ = w.s.streams.WatchCancels(w.ctx, w.s.cfg.Handler, func(id string) {
				if c, ok := w.s.cancels.Load(id); ok {
					c.(context.CancelCauseFunc)(errCancelledByCaller)
				}
			})
		}
	}()
}

func (w *cancelWatcher) shutdown() {
	w.cancel()
	<-w.done
}

// process runs one delivery and settles it: an answer, a retry, or a dead letter.
func (s *Server) process(d *streams.Delivery) {
	if d.Err != nil {
		s.poison(d)
		return
	}
	call := d.Call
	attempt := d.Attempt()
	if attempt > s.cfg.MaxAttempts {
		// Delivered again and again without ever being settled: each consumer
		// that took it died or hung. Running it once more may kill this one.
		s.stats.deadLettered(call.Method)
		lastErr := streams.NewError(streams.CodeInternal, fmt.Sprintf("delivered %d times without finishing: every consumer that took it crashed or stopped", d.Deliveries))
		s.settle(d, func(ctx context.Context) (bool, error) {
			return s.streams.DeadLetter(ctx, d, lastErr, streams.Run{Consumer: s.cfg.Name})
		})
		return
	}
	if !call.Deadline.IsZero() && time.Now().After(call.Deadline) {
		s.stats.expired(call.Method)
		s.answer(d, streams.ErrorReply(call.ID, streams.NewError(streams.CodeTimeout, "the call's deadline passed while it was queued; it was not run")), streams.Run{Consumer: s.cfg.Name})
		return
	}
	req := &Request{
		ID: call.ID, Handler: call.Handler, Method: call.Method, Params: call.Params,
		Attempt: attempt, Deadline: call.Deadline, EnqueuedAt: call.EnqueuedAt, trace: requestTrace(call), RequestID: call.RequestID,
	}
	dctx, cancel := context.WithDeadline(s.runCtx, call.Deadline)
	ctx, cancelCall := context.WithCancelCause(dctx)
	s.cancels.Store(call.ID, cancelCall)
	start := time.Now()
	res, err := s.serve(ctx, req)
	s.cancels.Delete(call.ID)
	cancelled := errors.Is(context.Cause(ctx), errCancelledByCaller)
	cancelCall(nil)
	cancel()
	took := time.Since(start)
	run := streams.Run{Consumer: s.cfg.Name, Started: start, Took: took}
	var reply streams.Reply
	if err == nil {
		reply, err = resultReply(call.ID, call.Params, res)
	}
	if err == nil {
		s.stats.record(call.Method, took, nil)
		s.answer(d, reply, run)
		return
	}
	switch {
	case cancelled:
		err = &Error{Code: streams.CodeCancelled, Message: "the call was cancelled by its caller"}
	case errors.Is(err, context.DeadlineExceeded) && dctx.Err() != nil:
		err = &Error{Code: CodeTimeout, Message: "the handler did not finish before the call's deadline"}
	}
	we := wireError(err)
	s.stats.record(call.Method, took, we)
	if !IsRetryable(err) {
		s.answer(d, streams.ErrorReply(call.ID, we), run)
		return
	}
	if attempt >= s.cfg.MaxAttempts {
		s.stats.deadLettered(call.Method)
		s.log.Warn("call failed on every attempt; moved to the dead letters", "call_id", call.ID, "method", call.Method, "attempts", attempt, "err", we.Message)
		s.settle(d, func(ctx context.Context) (bool, error) { return s.streams.DeadLetter(ctx, d, we, run) })
		return
	}
	due := time.Now().Add(s.backoff(attempt))
	if due.After(call.Deadline) {
		// No caller will be waiting by then: answer with the error now.
		s.answer(d, streams.ErrorReply(call.ID, we), run)
		return
	}
	s.stats.retried(call.Method)
	s.settle(d, func(ctx context.Context) (bool, error) { return s.streams.Retry(ctx, d, due, we, run) })
	s.forwarder.poke() // it may be sleeping past this retry's due time
}

// backoff is the delay before retrying after attempt: exponential from
// RetryBaseDelay, capped at RetryMaxDelay, with jitter in [d/2, d).
func (s *Server) backoff(attempt int) time.Duration {
	d := s.cfg.RetryBaseDelay
	for i := 1; i < attempt && d < s.cfg.RetryMaxDelay; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMaxDelay)
	return d/2 + rand.N(d/2+1)
}

// serve runs the handler; a panic becomes an internal error.
func (s *Server) serve(ctx context.Context, req *Request) (res any, err error) {
	ctx, obs := s.obs.begin(ctx, req)
	defer func() { obs.end(err) }() // after the recover below: sees a panic's error
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "method", req.Method, "call_id", req.ID, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return s.handler.ServeRPC(ctx, req)
}

// resultReply encodes a handler's result. params are the call's params,
// which decodeCall has checked to be valid JSON (an entry whose params are not
// is poison and never reaches a handler): a handler that returns them as they
// are (an echo, a pass-through) returns valid JSON, which is not checked again.
func resultReply(id string, params json.RawMessage, res any) (streams.Reply, error) {
	if raw, ok := res.(json.RawMessage); ok {
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		if !sameBytes(raw, params) && !json.Valid(raw) {
			return streams.Reply{}, &Error{Code: CodeInternal, Message: "the handler returned invalid JSON"}
		}
		return streams.ResultReply(id, raw), nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return streams.Reply{}, &Error{Code: CodeInternal, Message: "the handler's result cannot be encoded as JSON: " + err.Error()}
	}
	return streams.ResultReply(id, b), nil
}

// sameBytes reports whether a and b are the same bytes in memory (not merely
// equal ones).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

func (s *Server) answer(d *streams.Delivery, reply streams.Reply, run streams.Run) {
	reply = withTiming(reply, d.Call, run)
	s.settle(d, func(ctx context.Context) (bool, error) { return s.streams.Finish(ctx, d, reply, run) })
}

// settle runs one settling script, retrying while Redis is unavailable until
// the server's run context ends. If it cannot, the call stays pending and is
// redelivered: at least once, never lost.
func (s *Server) settle(d *streams.Delivery, op func(ctx context.Context) (bool, error)) {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		settled, err := op(ctx)
		cancel()
		if err == nil {
			if !settled {
				s.stats.duplicate()
				s.log.Info("call was already settled by another consumer; this run's outcome is dropped", "call_id", d.Call.ID)
			}
			return
		}
		s.log.Debug("settling the call failed; retrying", "call_id", d.Call.ID, "err", err)
		select {
		case <-time.After(backoff):
		case <-s.runCtx.Done():
			s.log.Warn("call not settled before shutdown; it stays pending for redelivery", "call_id", d.Call.ID)
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// poison moves an entry that cannot be decoded to the dead letters. It is
// never run: no handler could make sense of it.
func (s *Server) poison(d *streams.Delivery) {
	s.log.Error("undecodable call envelope; moved to the dead letters", "stream_id", d.StreamID, "err", d.Err)
	s.stats.poisoned()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.streams.Poison(ctx, d, s.cfg.Name); err != nil {
		s.log.Warn("moving an undecodable entry failed; it stays pending", "stream_id", d.StreamID, "err", err)
	}
}

// forwardDue moves due retries into the stream; it sleeps until the next one
// is due, or at most a second when it knows of none (another consumer may
// schedule one), so it never busy-polls.
func (s *Server) forwardDue() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, next, err := s.streams.ForwardDue(ctx, s.cfg.Handler, time.Now(), 256)
	switch {
	case err != nil:
		return time.Second
	case next.IsZero():
		return time.Second
	}
	return min(max(time.Until(next), 5*time.Millisecond), time.Second)
}

// renewLeases extends the lease of every call this server is running.
func (s *Server) renewLeases() time.Duration {
	var ids []string
	s.running.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	if len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.streams.ExtendLease(ctx, s.cfg.Handler, s.cfg.Name, ids); err != nil {
			s.log.Warn("renewing leases failed", "calls", len(ids), "err", err)
		}
		cancel()
	}
	return s.cfg.VisibilityTimeout / 3
}
