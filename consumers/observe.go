package consumers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/streams"
)

// LatencyBuckets are the upper bounds, in seconds, of the consumer's latency
// histograms; the edge uses the same, so that the two can be compared.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// labelUnknown stands in for a method name the handler does not list: names
// that reach a consumer are the caller's, and must not make series.
const labelUnknown = "_unknown"

// observer measures, logs (and, with tracing, spans) each handler run. A nil
// observer does nothing, so a Server built without NewServer still works.
type observer struct {
	handler string
	log     *slog.Logger
	m       *consumerMetrics // nil without Config.Registerer
	known   map[string]bool  // the methods the handler lists; nil: any
	tracer  trace.Tracer     // nil without Config.TracerProvider: no spans
}

func newObserver(cfg Config, log *slog.Logger, h Handler) (*observer, error) {
	o := &observer{handler: cfg.Handler, log: log}
	if cfg.TracerProvider != nil {
		o.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if ml, ok := h.(MethodLister); ok {
		o.known = map[string]bool{}
		for _, m := range ml.Methods() {
			o.known[m.Name] = true
		}
	}
	if cfg.Registerer != nil {
		m, err := newConsumerMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		o.m = m
	}
	return o, nil
}

// run is one handler run being observed. A value, not a closure: observing
// a run allocates nothing of its own.
type run struct {
	o      *observer
	req    *Request
	start  time.Time
	method string // the label: req.Method, or _unknown
	s      *methodSeries
	span   trace.Span
}

// begin is called as a handler starts, with the context the handler gets;
// run.end as it returns, with its error (a recovered panic's included).
func (o *observer) begin(ctx context.Context, req *Request) (context.Context, run) {
	if o == nil {
		return ctx, run{}
	}
	r := run{o: o, req: req, start: time.Now(), method: req.Method}
	if o.known != nil && !o.known[r.method] {
		r.method = labelUnknown
	}
	if o.m != nil {
		r.s = o.m.seriesFor(o.handler, r.method)
		r.s.inFlight.Inc()
		if !req.EnqueuedAt.IsZero() {
			r.s.queueWait.Observe(max(r.start.Sub(req.EnqueuedAt), 0).Seconds())
		}
	}
	switch {
	case o.tracer != nil:
		ctx, r.span = o.startSpan(ctx, req)
	case req.trace.parent != "":
		// Tracing off: the caller's trace context still reaches the handler
		// (trace.SpanContextFromContext) and the sidecar's upstream, as a
		// remote parent, so that their own spans continue the caller's trace.
		ctx = propagator.Extract(ctx, &req.trace)
	}
	return ctx, r
}

func (r run) end(err error) {
	if r.o == nil {
		return
	}
	took := time.Since(r.start)
	var rerr *streams.Error
	if err != nil {
		rerr = &streams.Error{Code: errorCode(err)}
	}
	outcome := streams.OutcomeOf(rerr).Label()
	if r.s != nil {
		r.s.inFlight.Dec()
		r.s.processing.Observe(took.Seconds())
		if err == nil {
			r.s.ok.Inc()
		} else {
			r.o.m.runs.WithLabelValues(r.o.handler, r.method, outcome).Inc()
		}
	}
	if r.span != nil {
		endSpan(r.span, err, outcome)
	}
	r.o.logRun(r.req, outcome, took, err)
}

// logRun writes a run's line at debug level: the call's id and names, never
// its params or result (they may hold secrets).
func (o *observer) logRun(req *Request, outcome string, took time.Duration, err error) {
	ctx := context.Background()
	if !o.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("call_id", req.ID), slog.String("method", req.Method), slog.Int("attempt", req.Attempt),
		slog.String("outcome", outcome), slog.Duration("took", took),
	}
	if req.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", req.RequestID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	o.log.LogAttrs(ctx, slog.LevelDebug, "call", attrs...)
}

// errorCode is the wire code of what a handler returned, as wireError would
// give it, without encoding its data.
func errorCode(err error) int {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, ErrMethodNotFound):
		return streams.CodeMethodNotFound
	case errors.Is(err, errPanic):
		return streams.CodeInternal
	}
	return streams.CodeHandlerError
}

// withTiming puts the run's queue wait and processing time on its reply, for
// the edge's histograms. A call that was not run carries none.
func withTiming(reply streams.Reply, call *streams.Call, run streams.Run) streams.Reply {
	if run.Started.IsZero() || call == nil {
		return reply
	}
	if !call.EnqueuedAt.IsZero() {
		reply.QueueWait = max(run.Started.Sub(call.EnqueuedAt), 0) // clocks of edge and consumer may differ
	}
	reply.Processing = run.Took
	return reply
}

// consumerMetrics are a consumer's Prometheus metrics. They live on the
// Registerer of Config; two Servers on one Registerer share them.
type consumerMetrics struct {
	runs       *prometheus.CounterVec
	queueWait  *prometheus.HistogramVec
	processing *prometheus.HistogramVec
	inFlight   *prometheus.GaugeVec

	series sync.Map // [2]string{handler, method} -> *methodSeries
}

// methodSeries are one method's pre-resolved children: resolving labels on
// every call hashes them and takes a lock.
type methodSeries struct {
	ok                    prometheus.Counter
	queueWait, processing prometheus.Observer
	inFlight              prometheus.Gauge
}

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	m := &consumerMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrpc_consumer_runs_total",
			Help: "Handler runs (attempts) by handler, method and outcome (ok or an error code name); a retried call runs more than once.",
		}, []string{"handler", "method", "outcome"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamrpc_consumer_queue_wait_seconds",
			Help:    "Time from a call's enqueue to this consumer starting it (retries: earlier attempts and backoff included).",
			Buckets: LatencyBuckets,
		}, []string{"handler", "method"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamrpc_consumer_processing_seconds",
			Help:    "Time the handler ran, per attempt.",
			Buckets: LatencyBuckets,
		}, []string{"handler", "method"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "streamrpc_consumer_in_flight",
			Help: "Calls this consumer's handlers are running now.",
		}, []string{"handler", "method"}),
	}
	var err error
	m.runs, err = register(reg, m.runs)
	if err == nil {
		m.queueWait, err = register(reg, m.queueWait)
	}
	if err == nil {
		m.processing, err = register(reg, m.processing)
	}
	if err == nil {
		m.inFlight, err = register(reg, m.inFlight)
	}
	if err != nil {
		return nil, errors.Join(ErrConfig, err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (another Server on the same Registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if prev, ok := are.ExistingCollector.(C); ok {
			return prev, nil
		}
	}
	return c, err
}

func (m *consumerMetrics) seriesFor(handler, method string) *methodSeries {
	k := [2]string{handler, method}
	if s, ok := m.series.Load(k); ok {
		return s.(*methodSeries)
	}
	s := &methodSeries{
		ok:         m.runs.WithLabelValues(handler, method, streams.OutcomeOK),
		queueWait:  m.queueWait.WithLabelValues(handler, method),
		processing: m.processing.WithLabelValues(handler, method),
		inFlight:   m.inFlight.WithLabelValues(handler, method),
	}
	prev, _ := m.series.LoadOrStore(k, s)
	return prev.(*methodSeries)
}
