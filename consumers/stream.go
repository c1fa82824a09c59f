package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// Streamed results: a handler sends progress values and partial results
// before it returns its final result (docs/streaming.md). Nothing here runs
// for a handler that does not stream: the stream is made on the first
// Progress or Partial.

// ErrStreamLimit is returned by Partial and Progress past the server's
// bounds (StreamMaxPartials, StreamMaxPartialBytes). Once a partial was
// refused the call's outcome is that error, whatever the handler returns: a
// caller never gets a final result with partials missing before it.
var ErrStreamLimit = errors.New("consumers: streamed result over its limit")

// ErrStreamBroken is returned by Partial and Progress once sending an
// earlier one failed (Redis unavailable). The attempt then ends with a
// retryable error, and the next attempt starts the stream over.
var ErrStreamBroken = errors.New("consumers: the call's stream of results failed")

const (
	defaultStreamMaxPartials     = 10000
	defaultStreamMaxPartialBytes = 64 << 10
	// streamMaxUnsent is how many partials may wait to be sent before
	// Partial blocks (back-pressure from Redis), and streamMaxBatch how many
	// events go in one emission.
	streamMaxUnsent = 1024
	streamMaxBatch  = 256
)

// Progress sends v, encoded as JSON, as the call's progress: a caller that
// streams sees it before the final result (a WebSocket $/progress, an SSE
// "progress" event). Progress is coalesced: a value not sent yet when the
// next one is made is replaced by it, so a handler may report as often as it
// likes. It never blocks; it fails only for a value that cannot be encoded or
// is over StreamMaxPartialBytes, or once the stream failed.
func (r *Request) Progress(v any) error { return r.emit(streams.EventProgress, v) }

// Partial sends v, encoded as JSON, as the call's next partial result.
// Partials reach a streaming caller in order and none is dropped; Partial
// blocks while many are waiting to be sent, and returns the context's error
// once the call is cancelled or its deadline passes (stop the handler then).
// Past StreamMaxPartials or StreamMaxPartialBytes it returns an error wrapping
// ErrStreamLimit, which also becomes the call's outcome.
//
// Partials are not part of the result kept by id: a caller that does not
// stream (a plain POST, a JSON-RPC call with progress off) gets the final
// result only.
func (r *Request) Partial(v any) error { return r.emit(streams.EventPartial, v) }

func (r *Request) emit(kind streams.EventKind, v any) error {
	st := r.resultStream()
	if st == nil {
		return nil // a Request made by hand (a test): nowhere to stream to
	}
	data, err := encodeEvent(v)
	if err != nil {
		return err
	}
	return st.add(kind, data)
}

func encodeEvent(v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, errors.New("consumers: streamed value is not valid JSON")
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("consumers: streamed value cannot be encoded as JSON: %w", err)
	}
	return b, nil
}

// resultStream returns the request's stream, made on first use; nil when the
// request came from no Server.
func (r *Request) resultStream() *resultStream {
	if r.srv == nil {
		return nil
	}
	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	if r.stream == nil {
		r.stream = r.srv.newResultStream(r)
	}
	return r.stream
}

// finishStream sends what the handler left unsent and ends the stream, before
// the call is settled: its events then precede its reply. It returns the
// error that overrides the handler's outcome (ErrStreamLimit, ErrStreamBroken),
// or nil; and how many partials and progress values were sent before.
func (r *Request) finishStream() (partials, progress int, err error) {
	r.streamMu.Lock()
	st := r.stream
	r.stream = nil
	r.streamMu.Unlock()
	if st == nil {
		return 0, 0, nil
	}
	return st.close()
}

// resultStream is one attempt's stream of events: the handler queues them,
// one goroutine (started with the stream, ended by close) sends them, a
// batch at a time: the queue fills while a batch is in flight, so a fast
// handler pays one round trip per batch, not per event.
type resultStream struct {
	srv     *Server
	ctx     context.Context // the handler's: a blocked Partial gives up with it
	attempt int
	em      streams.Emission // the call's part; Events set per batch

	mu       sync.Mutex
	queue    []streams.Event
	unsent   int   // partials in queue
	seq      int64 // last seq given
	partials int   // partials accepted
	sent     [2]int
	err      error         // first failure: every later add returns it
	closed   bool          // close was called
	room     chan struct{} // closed (and replaced) whenever a batch was sent
	wake     chan struct{} // one token: something was queued, or close
	done     chan struct{} // closed when the sender has returned
}

func (s *Server) newResultStream(r *Request) *resultStream {
	ttl := r.resultTTL
	if ttl <= 0 {
		ttl = s.cfg.ResultTTL
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	st := &resultStream{
		srv: s, ctx: r.ctx, attempt: r.Attempt,
		em:   streams.Emission{CallID: r.ID, ReplyTo: r.replyTo, TTL: ttl, MaxEvents: int64(s.cfg.StreamMaxPartials) + streamMaxUnsent},
		room: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if st.ctx == nil {
		st.ctx = context.Background()
	}
	go st.send()
	return st
}

func (st *resultStream) add(kind streams.EventKind, data json.RawMessage) error {
	if len(data) > st.srv.cfg.StreamMaxPartialBytes {
		return st.limit(fmt.Errorf("%w: a %s of %d bytes is over StreamMaxPartialBytes (STREAMRPC_STREAM_MAX_PARTIAL_BYTES=%d)",
			ErrStreamLimit, kind, len(data), st.srv.cfg.StreamMaxPartialBytes), kind)
	}
	if err := st.ctx.Err(); err != nil && kind == streams.EventPartial {
		return err
	}
	st.mu.Lock()
	for {
		if st.err != nil || st.closed {
			err := st.err
			st.mu.Unlock()
			if err == nil {
				err = errors.New("consumers: Partial or Progress called after the handler returned")
			}
			return err
		}
		if kind == streams.EventProgress || st.unsent < streamMaxUnsent {
			break
		}
		room := st.room
		st.mu.Unlock()
		select {
		case <-room:
		case <-st.ctx.Done():
			return st.ctx.Err()
		}
		st.mu.Lock()
	}
	if kind == streams.EventPartial {
		if st.partials >= st.srv.cfg.StreamMaxPartials {
			st.mu.Unlock()
			return st.limit(fmt.Errorf("%w: partial %d is over StreamMaxPartials (STREAMRPC_STREAM_MAX_PARTIALS=%d)",
				ErrStreamLimit, st.partials+1, st.srv.cfg.StreamMaxPartials), kind)
		}
		st.partials++
		st.unsent++
		st.queue = append(st.queue, streams.Event{Kind: kind, Data: data})
	} else if n := len(st.queue); n > 0 && st.queue[n-1].Kind == streams.EventProgress {
		st.queue[n-1].Data = data // not sent yet: the latest wins
	} else {
		st.queue = append(st.queue, streams.Event{Kind: kind, Data: data})
	}
	st.mu.Unlock()
	st.poke()
	return nil
}

// limit records a limit error as the stream's outcome (for a partial: a
// progress value over the size is only refused) and returns it.
func (st *resultStream) limit(err error, kind streams.EventKind) error {
	if kind == streams.EventPartial {
		st.mu.Lock()
		if st.err == nil {
			st.err = err
		}
		st.mu.Unlock()
	}
	return err
}

func (st *resultStream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// send is the stream's sender: it takes what is queued, up to a batch, gives
// each event its seq, and emits it; until close and the queue is empty.
func (st *resultStream) send() {
	defer close(st.done)
	for {
		st.mu.Lock()
		for len(st.queue) == 0 && !st.closed {
			st.mu.Unlock()
			<-st.wake
			st.mu.Lock()
		}
		if len(st.queue) == 0 || st.err != nil && !errors.Is(st.err, ErrStreamLimit) {
			st.mu.Unlock()
			return
		}
		n := min(len(st.queue), streamMaxBatch)
		batch := make([]streams.Event, n)
		copy(batch, st.queue[:n])
		st.queue = st.queue[n:]
		for i := range batch {
			st.seq++
			batch[i].Attempt, batch[i].Seq = st.attempt, st.seq
			if batch[i].Kind == streams.EventPartial {
				st.unsent--
			}
		}
		st.mu.Unlock()

		em := st.em
		em.Events = batch
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := st.srv.streams.Emit(ctx, &em)
		cancel()

		st.mu.Lock()
		if err != nil && st.err == nil {
			st.err = fmt.Errorf("%w: %w", ErrStreamBroken, err)
		}
		if err == nil {
			for _, e := range batch {
				if e.Kind == streams.EventPartial {
					st.sent[0]++
				} else {
					st.sent[1]++
				}
			}
		}
		close(st.room)
		st.room = make(chan struct{})
		st.mu.Unlock()
	}
}

// close waits until every queued event is sent (or the stream failed) and
// stops the sender.
func (st *resultStream) close() (partials, progress int, err error) {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.poke()
	<-st.done
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sent[0], st.sent[1], st.err
}
