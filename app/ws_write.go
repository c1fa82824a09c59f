package app

import (
	"sync"
	"time"

	fastws "github.com/fasthttp/websocket"
)

// A WebSocket's write side: one writer goroutine per socket draining a
// bounded queue, and the close handshake.

// send queues msg for the writer. Past the queue's bound the connection is
// closed with 4008 and what is queued is dropped.
func (c *wsConn) send(msg []byte) {
	if c.ctx.Err() != nil {
		return // the peer is gone
	}
	if !c.out.push(msg) {
		if c.requestClose(CloseSlowReader, "write queue full: the client does not read fast enough", false) {
			c.e.ws.slowClosed.Add(1)
			c.e.log.Info("websocket closed: the client does not read its answers", "limit_bytes", c.e.cfg.WSWriteQueue)
		}
	}
}

// requestClose asks the writer to close the connection with code (0: without
// a close frame), after writing what is queued if flush. Only the first
// request counts; it reports whether this one did.
func (c *wsConn) requestClose(code int, text string, flush bool) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode, c.closeText, c.closeFlush = code, text, flush
		if !flush {
			c.out.discard()
		}
		close(c.closeReq)
	})
	return first
}

// writeLoop is the connection's one writer: answers, pings, the close frame.
func (c *wsConn) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.e.cfg.WSPingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.out.wake:
			if !c.flush() {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(fastws.PingMessage, nil, time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
				c.broken(err)
				return
			}
		case <-c.closeReq:
			if c.closeFlush && !c.flush() {
				return
			}
			if c.closeCode != 0 {
				msg := fastws.FormatCloseMessage(c.closeCode, c.closeText)
				if err := c.ws.WriteControl(fastws.CloseMessage, msg, time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
					c.broken(err)
					return
				}
				// Wait for the peer's close reply, not longer than a write may take.
				c.stopReadingBy(time.Now().Add(c.e.cfg.WSWriteTimeout))
			}
			return
		}
	}
}

// flush writes the queued messages, one at a time; it stops early when the
// connection is to close without them. It reports false if a write failed.
func (c *wsConn) flush() bool {
	for {
		select {
		case <-c.closeReq:
			if !c.closeFlush {
				return true
			}
		default:
		}
		msg := c.out.pop()
		if msg == nil {
			return true
		}
		if err := c.ws.SetWriteDeadline(time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
			c.broken(err)
			return false
		}
		if err := c.ws.WriteMessage(fastws.TextMessage, msg); err != nil {
			c.broken(err)
			return false
		}
	}
}

// broken handles a failed write: the connection is unusable, so it is closed
// under the reader, which then tears the rest down.
func (c *wsConn) broken(err error) {
	c.e.log.Debug("websocket write failed", "err", err)
	c.out.discard()
	c.closeNet()
}

// wsQueue is a connection's write queue, bounded in bytes.
type wsQueue struct {
	mu     sync.Mutex
	msgs   [][]byte
	bytes  int
	limit  int
	closed bool
	wake   chan struct{} // one token: there is something to write
	// roomCh, when not nil, is closed once the queue is down to half its
	// limit (room): progress forwarders wait on it rather than overflow it.
	roomCh chan struct{}
}

// room returns a channel that is closed when the queue is at most half
// full (at once if it is now) or discarded.
func (q *wsQueue) room() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.bytes <= q.limit/2 {
		return closedChan
	}
	if q.roomCh == nil {
		q.roomCh = make(chan struct{})
	}
	return q.roomCh
}

// roomMade closes roomCh if the queue has room again; with mu held.
func (q *wsQueue) roomMade() {
	if q.roomCh != nil && (q.closed || q.bytes <= q.limit/2) {
		close(q.roomCh)
		q.roomCh = nil
	}
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// push queues msg. It reports false, and drops msg, when the queue would go
// over its limit; a message alone in the queue is always taken.
func (q *wsQueue) push(msg []byte) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return true // closing: dropped, and not an overflow
	}
	if len(q.msgs) > 0 && q.bytes+len(msg) > q.limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, msg)
	q.bytes += len(msg)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *wsQueue) pop() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) == 0 {
		return nil
	}
	msg := q.msgs[0]
	q.msgs[0] = nil
	q.msgs = q.msgs[1:]
	q.bytes -= len(msg)
	if len(q.msgs) == 0 {
		q.msgs = nil // let the backing array go
	}
	q.roomMade()
	return msg
}

// discard drops what is queued and everything pushed from now on.
func (q *wsQueue) discard() {
	q.mu.Lock()
	q.msgs, q.bytes, q.closed = nil, 0, true
	q.roomMade()
	q.mu.Unlock()
}
