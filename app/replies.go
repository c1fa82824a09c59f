package app

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// replyReader is the edge's one reader of its reply stream: it hands each
// reply to the call waiting for it, and keeps the stream alive in Redis.
type replyReader struct {
	streams  *streams.Client
	edgeID   string
	waiters  *waiters
	watchers *watchers
	log      *slog.Logger
	// running is true while the read loop runs: /readyz checks it, since an
	// edge whose reader has stopped would enqueue calls it never answers.
	running atomic.Bool
	metrics *metrics
	// maxAge bounds how long a reply stays in the stream (trimmed every
	// maxAge/5): a reply older than the call timeout has no waiter left.
	maxAge time.Duration

	ctx    context.Context // cancelled by shutdown
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// readBlock is how long one XREAD waits; it bounds how long shutdown waits.
const readBlock = time.Second

func newReplyReader(sc *streams.Client, edgeID string, w *waiters, lp *watchers, log *slog.Logger) *replyReader {
	ctx, cancel := context.WithCancel(context.Background())
	return &replyReader{streams: sc, edgeID: edgeID, waiters: w, watchers: lp, log: log, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (r *replyReader) start(wg *sync.WaitGroup) {
	r.running.Store(true) // before Start returns: no window where /readyz says 503
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(r.done)
		defer r.running.Store(false)
		r.read()
	}()
	go func() {
		defer wg.Done()
		r.keepAlive()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.trim()
	}()
	go func() {
		defer wg.Done()
		r.recoverLost()
	}()
}

func (r *replyReader) shutdown() {
	r.once.Do(r.cancel)
	<-r.done
}

func (r *replyReader) read() {
	outages := outage.New(r.log)
	after := "0-0" // the stream is this edge's own: everything in it is for us
	for r.ctx.Err() == nil {
		replies, next, err := r.streams.ReadReplies(r.ctx, r.edgeID, after, 1024, readBlock)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			outages.Failed(err)
			r.metrics.redisError(opReadReplies)
			select {
			case <-time.After(outages.Backoff()):
			case <-r.ctx.Done():
				return
			}
			continue
		}
		if outages.OK() {
			// Redis may have come back without our stream (no persistence):
			// recreate it now rather than at the next keep-alive.
			r.keep()
		}
		after = next
		for _, rep := range replies {
			if !r.waiters.deliver(rep) && rep.Events == nil {
				r.watchers.notify(rep.ID) // an async call: wake its long-polls
			}
		}
	}
}

func (r *replyReader) keepAlive() {
	t := time.NewTicker(streams.ReplyStreamTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.keep()
		case <-r.ctx.Done():
			return
		}
	}
}

// replyMaxAge caps how long a reply stays in an edge's reply stream, with a
// call timeout longer than that: with the trim period (a fifth of it), a
// reply is gone within a minute at most.
const replyMaxAge = 48 * time.Second

// trim removes the replies older than maxAge from the reply stream, every
// maxAge/5: its memory is bounded by age, not only by count.
func (r *replyReader) trim() {
	t := time.NewTicker(max(r.maxAge/5, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			err := r.streams.TrimReplyStream(ctx, r.edgeID, r.maxAge)
			cancel()
			if err != nil && r.ctx.Err() == nil {
				r.log.Debug("trimming the reply stream failed", "err", err)
			}
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *replyReader) keep() {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if err := r.streams.KeepReplyStream(ctx, r.edgeID); err != nil && r.ctx.Err() == nil {
		r.log.Debug("keeping the reply stream failed", "err", err)
	}
}

// recoverInterval is how often recoverLost looks for calls due a result check.
const recoverInterval = 500 * time.Millisecond

// recoverLost looks up the results of calls that have waited long for their
// reply (see waiters.due), and delivers those found. A consumer publishes a
// reply after the script that settled the call and kept its result, so a
// reply can be lost where the result is not: the consumer died in between, or
// a failover lost the reply stream's latest writes (Redis replicates
// asynchronously). Checks back off per call, so a long-running call costs a
// few GETs, not one a tick.
func (r *replyReader) recoverLost() {
	t := time.NewTicker(recoverInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			ids := r.waiters.due(now)
			if len(ids) == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			found, err := r.streams.Results(ctx, ids)
			cancel()
			if err != nil {
				if r.ctx.Err() == nil {
					r.log.Debug("looking up results of waiting calls failed", "calls", len(ids), "err", err)
				}
				continue
			}
			for _, rep := range found {
				if r.waiters.deliver(rep) {
					r.metrics.replyRecovered()
					r.log.Info("reply recovered from the call's result: its reply stream entry was lost", "call_id", rep.ID)
				}
			}
		case <-r.ctx.Done():
			return
		}
	}
}
