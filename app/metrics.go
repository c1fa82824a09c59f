package app

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamrpc/streamrpc/streams"
)

// LatencyBuckets are the upper bounds, in seconds, of every latency
// histogram streamrpc exports (edge and consumers): from 1 ms to the longest
// sensible call deadline.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Outcome labels besides the error code names of streams.Codes.
const (
	OutcomeOK       = streams.OutcomeOK
	OutcomeAccepted = "accepted" // async call or notification: enqueued, not waited for
)

// Label values that stand in for caller-chosen names, so that callers cannot
// grow the number of series without bound.
const (
	labelUnknown = "_unknown" // a handler or method that does not exist
	labelOther   = "_other"   // past maxSeries handler/method pairs
)

// maxSeries bounds the handler/method pairs the edge labels its metrics
// with; a fleet with more is labelled _other past it.
const maxSeries = 2000

// Redis operations counted in streamrpc_redis_errors_total.
const (
	opEnqueue     = "enqueue"
	opReadReplies = "read_replies"
	opPing        = "ping"
	opScrape      = "scrape"
)

// outcomeLabel is the outcome label of a call that ended with e (streams.Outcome).
func outcomeLabel(e *streams.Error) string { return streams.OutcomeOf(e).Label() }

// metrics are the edge's Prometheus metrics, on a registry of its own (not
// the process-wide default) so that several edges in one process do not
// collide.
type metrics struct {
	reg         *prometheus.Registry
	calls       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	queueWait   *prometheus.HistogramVec
	processing  *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	redisErrors *prometheus.CounterVec
	redisErrOps map[string]prometheus.Counter
	recovered   prometheus.Counter

	// series caches each handler/method pair's pre-resolved children:
	// WithLabelValues hashes the labels and takes a lock on every call.
	series  sync.Map // seriesKey -> *callSeries
	nSeries atomic.Int64
}

type seriesKey struct{ handler, method string }

// callSeries are the children of one handler/method pair.
type callSeries struct {
	handler, method string
	ok, accepted    prometheus.Counter
	duration        prometheus.Observer
	queueWait       prometheus.Observer
	processing      prometheus.Observer
}

func newMetrics(e *Edge) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamrpc_calls_total",
		Help: "Calls the edge answered, by handler, method and outcome (ok, accepted, or an error code name).",
	}, []string{"handler", "method", "outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "streamrpc_call_duration_seconds",
		Help:    "End-to-end time of calls answered by the edge, from the request to the answer.",
		Buckets: LatencyBuckets,
	}, []string{"handler", "method"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "streamrpc_queue_wait_seconds",
		Help:    "Time calls waited from their enqueue to a consumer starting them, as the consumer measured it.",
		Buckets: LatencyBuckets,
	}, []string{"handler", "method"})
	m.processing = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "streamrpc_processing_seconds",
		Help:    "Time handlers ran for the calls the edge answered, as the consumer measured it.",
		Buckets: LatencyBuckets,
	}, []string{"handler", "method"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamrpc_calls_in_flight",
		Help: "Calls the edge is waiting on now.",
	})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamrpc_redis_errors_total",
		Help: "Redis commands of the edge that failed, by operation.",
	}, []string{"op"})
	m.recovered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamrpc_replies_recovered_total",
		Help: "Calls answered from their kept result because their reply never reached the edge's reply stream.",
	})
	m.redisErrOps = map[string]prometheus.Counter{}
	for _, op := range []string{opEnqueue, opReadReplies, opPing, opScrape} {
		m.redisErrOps[op] = m.redisErrors.WithLabelValues(op) // present at 0 from the start
	}
	wsConns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamrpc_websocket_connections",
		Help: "Open WebSocket connections on this edge.",
	}, func() float64 { open, _ := e.ws.state(); return float64(open) })
	m.reg.MustRegister(m.recovered, m.calls, m.duration, m.queueWait, m.processing, m.inFlight, m.redisErrors, wsConns,
		newQueueCollector(e.streams, m.redisErrOps[opScrape]),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// seriesFor returns the pre-resolved children of handler/method.
func (m *metrics) seriesFor(handler, method string) *callSeries {
	k := seriesKey{handler, method}
	if s, ok := m.series.Load(k); ok {
		return s.(*callSeries)
	}
	if m.nSeries.Load() >= maxSeries {
		k = seriesKey{labelOther, labelOther}
		if s, ok := m.series.Load(k); ok {
			return s.(*callSeries)
		}
	}
	s := &callSeries{
		handler: k.handler, method: k.method,
		ok:         m.calls.WithLabelValues(k.handler, k.method, OutcomeOK),
		accepted:   m.calls.WithLabelValues(k.handler, k.method, OutcomeAccepted),
		duration:   m.duration.WithLabelValues(k.handler, k.method),
		queueWait:  m.queueWait.WithLabelValues(k.handler, k.method),
		processing: m.processing.WithLabelValues(k.handler, k.method),
	}
	if prev, loaded := m.series.LoadOrStore(k, s); loaded {
		return prev.(*callSeries)
	}
	m.nSeries.Add(1)
	return s
}

// observeCall records a call the edge waited on (or, for a notification,
// only enqueued).
func (m *metrics) observeCall(req *callRequest, reply streams.Reply, rerr *streams.Error, took time.Duration) {
	handler, method := req.handler, req.method
	outcome := OutcomeOK
	switch {
	case rerr != nil:
		outcome = outcomeLabel(rerr)
	case req.notify:
		outcome = OutcomeAccepted
	case !reply.OK:
		outcome = outcomeLabel(reply.Err())
	}
	if outcome == "method_not_found" {
		// The names are the caller's, not a handler's: do not make series of them.
		if rerr != nil && strings.HasPrefix(rerr.Message, unknownHandlerMsg) {
			handler = labelUnknown
		}
		method = labelUnknown
	}
	s := m.seriesFor(handler, method)
	switch outcome {
	case OutcomeOK:
		s.ok.Inc()
	case OutcomeAccepted:
		s.accepted.Inc()
		return // nothing was waited for
	default:
		m.calls.WithLabelValues(s.handler, s.method, outcome).Inc()
	}
	if rerr != nil && rerr.Code == streams.CodeUnavailable {
		m.redisErrOps[opEnqueue].Inc()
	}
	s.duration.Observe(took.Seconds())
	if reply.QueueWait > 0 || reply.Processing > 0 {
		s.queueWait.Observe(reply.QueueWait.Seconds())
		s.processing.Observe(reply.Processing.Seconds())
	}
}

// observeAsync records an async call: accepted, or refused before it was
// enqueued. Its outcome is the consumer's to count.
func (m *metrics) observeAsync(req *callRequest, rerr *streams.Error) {
	if rerr == nil {
		m.seriesFor(req.handler, req.method).accepted.Inc()
		return
	}
	m.observeCall(req, streams.Reply{}, rerr, 0)
}

func (m *metrics) redisError(op string) { m.redisErrOps[op].Inc() }

func (m *metrics) replyRecovered() { m.recovered.Inc() }

// handler serves GET /metrics in the Prometheus text format.
func (m *metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A failing collector (Redis down at scrape time) must not hide the
		// edge's own metrics: serve what could be gathered.
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

// Registry is the edge's Prometheus registry (what GET /metrics serves), for
// adding metrics of the embedding program or for reading them in tests.
func (e *Edge) Registry() *prometheus.Registry { return e.metrics.reg }

// queueCacheFor is how long queueCollector reuses what it read from Redis: a
// burst of scrapes (several Prometheus replicas, a dashboard) costs one
// round trip.
const queueCacheFor = 2 * time.Second

// queueCollector exports each handler's queue as Redis holds it, read at
// scrape time with one pipeline (HandlerSummaries) and cached for
// queueCacheFor. Every edge exports the same values: aggregate with max(),
// not sum().
type queueCollector struct {
	streams *streams.Client
	errors  prometheus.Counter

	backlog, pending, delayed, dead, consumers *prometheus.Desc

	mu      sync.Mutex
	read    time.Time
	handles []streams.HandlerSummary
}

func newQueueCollector(sc *streams.Client, errors prometheus.Counter) *queueCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"handler"}, nil)
	}
	return &queueCollector{
		streams:   sc,
		errors:    errors,
		backlog:   desc("streamrpc_handler_backlog", "Calls queued or running for the handler (its stream's length)."),
		pending:   desc("streamrpc_handler_pending", "Calls consumers have taken and not yet settled."),
		delayed:   desc("streamrpc_handler_delayed", "Calls waiting for their retry's backoff (not in the backlog)."),
		dead:      desc("streamrpc_handler_dead_letters", "Calls in the handler's dead letters."),
		consumers: desc("streamrpc_handler_consumers_online", "Consumers whose heartbeat is fresh."),
	}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.backlog
	ch <- q.pending
	ch <- q.delayed
	ch <- q.dead
	ch <- q.consumers
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock() // one scrape reads Redis; concurrent ones wait for its answer
	defer q.mu.Unlock()
	if time.Since(q.read) >= queueCacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hs, err := q.streams.HandlerSummaries(ctx)
		cancel()
		if err != nil {
			q.errors.Inc()
			ch <- prometheus.NewInvalidMetric(q.backlog, err)
			return
		}
		q.handles, q.read = hs, time.Now()
	}
	for _, h := range q.handles {
		ch <- prometheus.MustNewConstMetric(q.backlog, prometheus.GaugeValue, float64(h.Backlog), h.Name)
		ch <- prometheus.MustNewConstMetric(q.pending, prometheus.GaugeValue, float64(h.Pending), h.Name)
		ch <- prometheus.MustNewConstMetric(q.delayed, prometheus.GaugeValue, float64(h.Delayed), h.Name)
		ch <- prometheus.MustNewConstMetric(q.dead, prometheus.GaugeValue, float64(h.DeadLetters), h.Name)
		ch <- prometheus.MustNewConstMetric(q.consumers, prometheus.GaugeValue, float64(h.ConsumersOnline), h.Name)
	}
}
