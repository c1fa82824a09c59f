package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

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
// Delivery is at least once: a call taken by a consumer that dies (it stops
// heartbeating for DeadAfter) is claimed by a live one at once, and one whose
// lease is not renewed for VisibilityTimeout is claimed as a backstop; a
// retryable error is retried with backoff up to MaxAttempts, then the call
// goes to the dead letters.
//
// A handler that is a Prober (the Sidecar) is asked whether its app can take
// calls: while it cannot, the server takes none (State is
// streams.ConsumerWaitingForApp) and the calls wait in the stream.
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
	probe     *periodic // asks a Prober handler whether its app is up; nil if not a Prober
	flow      *flowState
	loops     sync.WaitGroup

	appGate  gate // shut while the app is down: take no calls
	pause    gate // shut while an operator paused the handler (pause.go)
	inflight sync.WaitGroup

	running sync.Map // stream entry id -> call id ("" if undecodable): calls this server holds
	cancels sync.Map // call id -> context.CancelCauseFunc of its running handler
	// cancelled holds the calls in hand whose caller cancelled them, also
	// before their handler started (the cancel would be lost otherwise):
	// runOnce checks it once the handler's cancel func is stored.
	cancelled sync.Map // call id -> struct{}
	// early keeps the cancels heard for calls not held when heard: they may
	// be about to be (early_cancels.go).
	early   earlyCancels
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
		flow:    newFlowState(),
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
	s.reader = &reader{s: s, stop: make(chan struct{}), done: make(chan struct{}), slots: make(chan struct{}, s.cfg.Concurrency),
		settles: make(chan struct{}, settleSlotsPer*s.cfg.Concurrency), work: make(chan streams.Delivery)}
	s.forwarder = newPeriodic(s.forwardDue)
	s.lease = newPeriodic(s.renewLeases)
	s.beat = newPeriodic(s.heartbeat)
	s.beat.start(&s.loops)
	if _, ok := s.handler.(Prober); ok {
		s.probe = newPeriodic(s.probeApp)
		s.probe.start(&s.loops)
	}
	s.watcher = newCancelWatcher(s)
	s.watcher.start(&s.loops)
	// A cancel published before the subscription is confirmed would be lost:
	// wait for it before taking calls (briefly: Redis answered register).
	select {
	case <-s.watcher.ready:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		s.log.Warn("the cancel subscription is not confirmed yet; taking calls anyway")
	}
	s.reader.start(&s.loops)
	s.forwarder.start(&s.loops)
	s.lease.start(&s.loops)
	s.started = true
	s.log.Info("consumer started", "concurrency", s.cfg.Concurrency, "max_attempts", s.cfg.MaxAttempts,
		"visibility_timeout", s.cfg.VisibilityTimeout, "heartbeat_interval", s.cfg.HeartbeatInterval, "dead_after", s.cfg.DeadAfter)
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
	if err := s.streams.Register(ctx, info, streams.HandlerSettings{MaxBacklog: s.cfg.MaxBacklog,
		Limits: streams.Limits{MaxConcurrency: s.cfg.HandlerMaxConcurrency, Rate: s.cfg.HandlerRate}}); err != nil {
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

// State is what the registry shows of this consumer:
// streams.ConsumerRunning, or streams.ConsumerWaitingForApp while its
// handler's app is down.
func (s *Server) State() string {
	if s.appGate.isShut() {
		return streams.ConsumerWaitingForApp
	}
	if s.pause.isShut() {
		return streams.ConsumerPaused
	}
	return streams.ConsumerRunning
}

// appDown stops taking calls until the Prober handler's app answers again.
func (s *Server) appDown(err error) {
	if !s.appGate.set(true) {
		return
	}
	s.log.Warn("the app is down; taking no calls until it answers (they wait in the stream)", "err", err)
	s.beat.poke() // the registry shows it now
	s.probe.poke()
}

// appUp takes calls again.
func (s *Server) appUp() {
	if !s.appGate.set(false) {
		return
	}
	s.log.Info("the app answers again; taking calls")
	s.beat.poke()
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
			if s.probe != nil {
				s.probe.shutdown()
			}
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
