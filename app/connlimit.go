package app

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// perIPListener bounds the TCP connections each client IP address holds
// (STREAMRPC_MAX_CONNS_PER_IP): HTTP keep-alive and WebSocket connections
// alike, since a WebSocket stays the same TCP connection. A connection past
// the limit is answered 429 rate_limited and closed, without reaching Fiber.
//
// It is ours rather than fasthttp's MaxConnsPerIP, which counts IPv4 only and
// whose connection wrapper is not safe to close twice (the server's shutdown
// and its worker both close idle connections).
type perIPListener struct {
	net.Listener
	max int

	mu sync.Mutex
	n  map[string]int
}

func newPerIPListener(ln net.Listener, max int) *perIPListener {
	return &perIPListener{Listener: ln, max: max, n: make(map[string]int)}
}

func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.n[ip] >= l.max {
			l.mu.Unlock()
			// Answered apart, so that a client that sends slowly cannot
			// hold up accepting others; refuseConn is bounded in time.
			go refuseConn(c, l.max)
			continue
		}
		l.n[ip]++
		l.mu.Unlock()
		return &perIPConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *perIPListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// perIPConn gives its place back once, however often it is closed.
type perIPConn struct {
	net.Conn
	l    *perIPListener
	ip   string
	once sync.Once
}

func (c *perIPConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// refuseConn reads the start of the request (so that closing does not reset
// the connection before the client reads the answer), answers 429 and closes.
func refuseConn(c net.Conn, limit int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 1024)
	for len(buf) < cap(buf) && !bytes.Contains(buf, []byte("\r\n\r\n")) {
		n, err := c.Read(tmp[:min(len(tmp), cap(buf)-len(buf))])
		buf = append(buf, tmp[:n]...)
		if err != nil {
			break
		}
	}
	body := `{"error":{"code":` + strconv.Itoa(streams.CodeRateLimited) + `,"message":"too many connections from this address","data":{"scope":"ip","limit":` + strconv.Itoa(limit) + `}}}`
	_, _ = c.Write([]byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body))
}
