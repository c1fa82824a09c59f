package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// fakeUpstream is an app behind a sidecar, as an httptest server in this
// process; it records the headers of each call it gets.
type fakeUpstream struct {
	*httptest.Server
	ready atomic.Bool
	stop  chan struct{} // closed at the end of the test: ends handlers still waiting

	mu    sync.Mutex
	calls []http.Header
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{stop: make(chan struct{})}
	u.ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !u.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	record := func(r *http.Request) int {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.calls = append(u.calls, r.Header.Clone())
		n, _ := strconv.Atoi(r.Header.Get(consumers.HeaderAttempt))
		return n
	}
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /empty", func(w http.ResponseWriter, r *http.Request) { record(r); w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /reject", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error":{"code":1001,"message":"name is required","data":{"field":"name"}}}`)
	})
	mux.HandleFunc("POST /reject_bare", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(http.StatusUnprocessableEntity)
	})
	mux.HandleFunc("POST /flaky", func(w http.ResponseWriter, r *http.Request) {
		if record(r) < 3 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		http.Error(w, "database down", http.StatusInternalServerError)
	})
	mux.HandleFunc("POST /slow_first", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so that the server notices the client going away
		if record(r) == 1 {
			select {
			case <-r.Context().Done(): // the sidecar's upstream timeout cancels it
			case <-u.stop:
			}
			return
		}
		_, _ = io.WriteString(w, `"second time lucky"`)
	})
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	t.Cleanup(func() { close(u.stop) }) // runs before u.Close
	return u
}

func (u *fakeUpstream) headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.calls...)
}

var sidecarMethods = consumers.MethodList{
	{Name: "echo", Description: "returns its params"}, {Name: "empty"}, {Name: "reject"}, {Name: "reject_bare"},
	{Name: "flaky"}, {Name: "down"}, {Name: "slow_first"},
}

func startSidecar(t *testing.T, st *stack, upstreamURL string, cfg consumers.Config) *consumers.Sidecar {
	t.Helper()
	side, err := consumers.NewSidecar(consumers.SidecarConfig{
		UpstreamURL: upstreamURL, Methods: sidecarMethods, UpstreamTimeout: 300 * time.Millisecond, ReadyTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(side.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := side.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Handler = "app"
	if cfg.RetryBaseDelay == 0 {
		cfg.RetryBaseDelay = 20 * time.Millisecond
	}
	st.startConsumer(t, cfg, side)
	return side
}

// TestSidecarMapping runs the sidecar on a real Redis behind a real edge, with
// an upstream in this process, through each way an upstream can answer.
func TestSidecarMapping(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	up := newFakeUpstream(t)
	startSidecar(t, st, up.URL, consumers.Config{MaxAttempts: 3})

	t.Run("2xx is the result, with the call's headers", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/echo", []byte(`{"msg":"hi"}`), map[string]string{"Request-Timeout": "5"})
		if r.status != 200 || string(r.Result) != `{"msg":"hi"}` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		var h http.Header
		for _, c := range up.headers() {
			if c.Get(consumers.HeaderCallID) == r.requestID {
				h = c
			}
		}
		if h == nil {
			t.Fatalf("the upstream got no call with id %s", r.requestID)
		}
		dl, err := time.Parse(time.RFC3339Nano, h.Get(consumers.HeaderDeadline))
		if h.Get(consumers.HeaderAttempt) != "1" || h.Get("Content-Type") != "application/json" || err != nil ||
			time.Until(dl) > 5*time.Second || time.Until(dl) < 0 {
			t.Fatalf("headers %v (deadline %v, %v)", h, dl, err)
		}
	})
	t.Run("empty 2xx is null", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/empty", nil, nil)
		if r.status != 200 || string(r.Result) != `null` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("4xx with an error body is a final error", func(t *testing.T) {
		before := len(up.headers())
		r := post(t, st.url, "/rpc/app/reject", []byte(`{}`), nil)
		if r.status != 422 || r.Error == nil || r.Error.Code != 1001 || r.Error.Message != "name is required" || string(r.Error.Data) != `{"field":"name"}` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if n := len(up.headers()) - before; n != 1 {
			t.Fatalf("a final error was tried %d times", n)
		}
	})
	t.Run("422 without a body is -32000", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/reject_bare", nil, nil)
		if r.status != 422 || r.Error == nil || r.Error.Code != streams.CodeHandlerError {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("5xx is retried", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/flaky", nil, nil)
		if r.status != 200 || string(r.Result) != `{"ok":true}` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("5xx on every attempt is dead-lettered", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/down", nil, nil)
		if r.status != http.StatusBadGateway || r.Error == nil || r.Error.Code != streams.CodeDeadLettered || !strings.Contains(r.Error.Message, "database down") {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("an upstream timeout is retried", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/slow_first", nil, nil)
		if r.status != 200 || string(r.Result) != `"second time lucky"` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
}

// TestSidecarConnectionRefused: an upstream that went away makes each attempt
// TestSidecarConnectionRefused: an upstream that stops answering (connection
// refused) does not burn the calls' attempts. The sidecar stops taking calls
// and shows waiting_for_app in the registry; the call waits, is not
// dead-lettered, and its caller gets a timeout when its deadline passes.
func TestSidecarConnectionRefused(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	up := newFakeUpstream(t)
	startSidecar(t, st, up.URL, consumers.Config{MaxAttempts: 2})
	up.Close() // gone after the sidecar found it ready
	r := post(t, st.url, "/rpc/app/echo", []byte(`{}`), map[string]string{"Request-Timeout": "2"})
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("got %d %s, want 504 (the call waited for the app)", r.status, r.body)
	}
	sc := st.streamsClient(t)
	waitUntil(t, 10*time.Second, func() error {
		d, err := sc.HandlerDetail(context.Background(), "app")
		if err != nil {
			return err
		}
		if d.DeadLetters != 0 {
			t.Fatalf("%d dead letters, want none: the app being down spends no attempt", d.DeadLetters)
		}
		if len(d.Consumers) != 1 || d.Consumers[0].State != streams.ConsumerWaitingForApp {
			return fmt.Errorf("consumers %+v, want one %s", d.Consumers, streams.ConsumerWaitingForApp)
		}
		return nil
	})
}

// TestSidecarWaitsForUpstream runs `streamrpc consumer` as a process: it must
// not register before its upstream is ready, then serve, report healthy, and
// drain and exit 0 on SIGTERM.
func TestSidecarWaitsForUpstream(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	up := newFakeUpstream(t)
	up.ready.Store(false)
	health := freeAddr(t)
	p := startProcess(t, binary(t, "streamrpc"), []string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=app", "STREAMRPC_UPSTREAM_URL=" + up.URL,
		"STREAMRPC_METHODS=echo:returns its params,empty", "STREAMRPC_HEALTH_ADDR=" + health,
	}, "consumer")
	healthURL := "http://" + health + "/healthz"
	// The sidecar polls the ready path; while it is not ready, it has not registered.
	waitUntil(t, 30*time.Second, func() error {
		if !strings.Contains(p.stderr.String(), "waiting for the upstream") {
			return fmt.Errorf("not waiting yet")
		}
		return nil
	})
	if r := post(t, st.url, "/rpc/app/echo", []byte(`{}`), nil); r.status != http.StatusNotFound {
		t.Fatalf("a call before the upstream is ready: got %d %s, want 404 (not registered)", r.status, r.body)
	}
	if code := healthStatus(healthURL); code != http.StatusServiceUnavailable {
		t.Fatalf("health before ready: %d, want 503", code)
	}
	up.ready.Store(true)
	waitUntil(t, 30*time.Second, func() error {
		if code := healthStatus(healthURL); code != 200 {
			return fmt.Errorf("health %d", code)
		}
		return nil
	})
	r := post(t, st.url, "/rpc/app/echo", []byte(`{"n":1}`), nil)
	if r.status != 200 || string(r.Result) != `{"n":1}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	sc := streams.New(st.redis.Client(t), streams.Options{})
	t.Cleanup(func() { _ = sc.Close() })
	if m, err := sc.Methods(t.Context(), "app"); err != nil || len(m) != 2 {
		t.Fatalf("registered methods %v %v", m, err)
	}
	out := startProcess(t, binary(t, "streamrpc"), []string{"STREAMRPC_HEALTH_ADDR=" + health}, "healthcheck")
	if code := waitExit(t, out); code != 0 {
		t.Fatalf("streamrpc healthcheck: exit %d", code)
	}
	if code := p.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	bad := startProcess(t, binary(t, "streamrpc"), []string{"STREAMRPC_HEALTH_ADDR=" + health}, "healthcheck")
	if code := waitExit(t, bad); code != 1 {
		t.Fatalf("streamrpc healthcheck with the consumer gone: exit %d, want 1", code)
	}
}

func healthStatus(url string) int {
	res, err := httpClient.Get(url)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

func waitExit(t *testing.T, p *process) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit within 30s")
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return -1
}
