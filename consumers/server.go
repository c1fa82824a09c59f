package consumers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// ErrConfig wraps every error Config.Validate returns.
var ErrConfig = errors.New("consumers: invalid config")

// ErrServerClosed is returned by Start after Shutdown or Close.
var ErrServerClosed = errors.New("consumers: server closed")

// Config configures a Server. Only Handler is required; every other zero
// value means the default given on the field.
type Config struct {
	// Handler is the handler name this server serves. Required.
	Handler string
	// Description is shown in the registry and the UI.
	Description string
	// Concurrency is how many calls run at once. Default 16.
	Concurrency int
	// Name identifies this consumer in the group. Default host-pid-random.
	Name string
	// ReadBlock is how long one read waits for calls. It bounds how long a
	// Shutdown waits for the reader to stop. Default 2s.
	ReadBlock time.Duration
	// ResultTTL is how long replies stay readable by id. Default 10m.
	ResultTTL time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports a config that cannot work; errors wrap ErrConfig.
func (c Config) Validate() error {
	if err := streams.ValidateName("handler", c.Handler); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("%w: Concurrency %d is negative", ErrConfig, c.Concurrency)
	}
	if c.ReadBlock < 0 || c.ResultTTL < 0 {
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Name = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.ReadBlock == 0 {
		c.ReadBlock = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server reads a handler's calls from Redis and runs them.
//
// Start registers the handler's methods and starts reading. Shutdown stops
// reading, lets the calls in flight finish until its context ends, then
// cancels what still runs and leaves those calls pending in Redis for another
// consumer to take. Close is Shutdown without a grace period.
type Server struct {
	cfg     Config
	handler Handler
	streams *streams.Client
	log     *slog.Logger
	stats   *statsKeeper

	mu      sync.Mutex
	started bool
	closed  bool

	reader   *reader
	wg       sync.WaitGroup // the reader
	inflight sync.WaitGroup // calls being run

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
		streams: streams.New(rdb, streams.Options{ResultTTL: cfg.ResultTTL}),
		log:     cfg.Logger.With("handler", cfg.Handler, "consumer", cfg.Name),
		stats:   newStatsKeeper(),
	}
	s.runCtx, s.cancelRun = context.WithCancel(context.Background())
	return s, nil
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
	s.reader.start(&s.wg)
	s.started = true
	s.log.Info("consumer started", "concurrency", s.cfg.Concurrency)
	return nil
}

func (s *Server) register(ctx context.Context) error {
	methods := map[string][]byte{}
	if ml, ok := s.handler.(MethodLister); ok {
		for _, m := range ml.Methods() {
			b, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("consumers: method %s: %w", m.Name, err)
			}
			methods[m.Name] = b
		}
	}
	if len(methods) == 0 {
		return fmt.Errorf("%w: the handler lists no methods (use a Mux, or implement MethodLister)", ErrConfig)
	}
	if err := s.streams.EnsureGroup(ctx, s.cfg.Handler); err != nil {
		return fmt.Errorf("consumers: creating the consumer group: %w", err)
	}
	if err := s.streams.Register(ctx, s.cfg.Handler, methods); err != nil {
		return fmt.Errorf("consumers: registering %s: %w", s.cfg.Handler, err)
	}
	return nil
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
	r := s.reader
	s.mu.Unlock()
	var err error
	s.once.Do(func() {
		if r != nil {
			r.shutdown() // stop taking work
		}
		s.wg.Wait()
		drained := make(chan struct{})
		go func() { s.inflight.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			err = fmt.Errorf("consumers: calls still running at the end of the grace period: %w", ctx.Err())
			s.cancelRun()
			<-drained // handlers see ctx cancelled; their replies are short
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

// reader is the loop that takes calls from the stream, only as many as there
// are free slots, and starts one goroutine per call.
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
		// A read is not cancelled by shutdown: calls Redis handed over would
		// be left pending. It returns within ReadBlock.
		ds, err := s.streams.ReadCalls(context.Background(), s.cfg.Handler, s.cfg.Name, int64(n), s.cfg.ReadBlock)
		for i := len(ds); i < n; i++ {
			<-r.slots
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
		for i := range ds {
			d := ds[i]
			s.inflight.Add(1)
			go func() {
				defer func() { <-r.slots; s.inflight.Done() }()
				s.process(&d)
			}()
		}
		select {
		case <-r.stop:
			return
		default:
		}
	}
}

var errPanic = errors.New("handler panicked")

// process runs one delivery and settles it.
func (s *Server) process(d *streams.Delivery) {
	if d.Err != nil {
		s.poison(d)
		return
	}
	call := d.Call
	if !call.Deadline.IsZero() && time.Now().After(call.Deadline) {
		s.stats.expired(call.Method)
		s.settle(d, streams.ErrorReply(call.ID, streams.NewError(streams.CodeTimeout, "the call's deadline passed while it was queued; it was not run")))
		return
	}
	req := &Request{
		ID: call.ID, Handler: call.Handler, Method: call.Method, Params: call.Params,
		Attempt: call.Attempt, Deadline: call.Deadline, EnqueuedAt: call.EnqueuedAt,
	}
	ctx, cancel := context.WithDeadline(s.runCtx, call.Deadline)
	start := time.Now()
	res, err := s.serve(ctx, req)
	cancel()
	took := time.Since(start)
	var reply streams.Reply
	if err == nil {
		reply, err = resultReply(call.ID, res)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = &Error{Code: CodeTimeout, Message: "the handler did not finish before the call's deadline"}
		}
		we := wireError(err)
		reply = streams.ErrorReply(call.ID, we)
		s.stats.record(call.Method, took, we)
	} else {
		s.stats.record(call.Method, took, nil)
	}
	s.settle(d, reply)
}

// serve runs the handler; a panic becomes an internal error.
func (s *Server) serve(ctx context.Context, req *Request) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "method", req.Method, "id", req.ID, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return s.handler.ServeRPC(ctx, req)
}

func resultReply(id string, res any) (streams.Reply, error) {
	if raw, ok := res.(json.RawMessage); ok {
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		if !json.Valid(raw) {
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

// settle writes the reply and acks, retrying while Redis is unavailable until
// the server's run context ends. If it cannot, the call stays pending and is
// redelivered: at least once, never lost.
func (s *Server) settle(d *streams.Delivery, reply streams.Reply) {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.streams.Finish(ctx, d, reply)
		cancel()
		if err == nil {
			return
		}
		s.log.Warn("writing the reply failed; retrying", "id", d.Call.ID, "err", err)
		select {
		case <-time.After(backoff):
		case <-s.runCtx.Done():
			s.log.Warn("reply not written before shutdown; the call stays pending for redelivery", "id", d.Call.ID)
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// poison settles an entry that cannot be decoded: the caller (if it can be
// told) gets an invalid-request error, and the entry is removed.
func (s *Server) poison(d *streams.Delivery) {
	s.log.Error("undecodable call envelope", "stream_id", d.StreamID, "err", d.Err)
	s.stats.poisoned()
	if d.Call != nil && d.Call.ID != "" && d.Call.ReplyTo != "" {
		s.settle(d, streams.ErrorReply(d.Call.ID, streams.NewError(streams.CodeInvalidRequest, d.Err.Error())))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.streams.Drop(ctx, d); err != nil {
		s.log.Warn("dropping an undecodable entry failed", "stream_id", d.StreamID, "err", err)
	}
}

// ConnectRedis returns a go-redis client for a REDIS_URL
// (redis://[user:password@]host:port/db, or rediss:// for TLS).
func ConnectRedis(url string) (redis.UniversalClient, error) {
	return streams.Connect(streams.RedisOptions{URL: url})
}
