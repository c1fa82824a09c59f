package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// countingUpstream is a fragile upstream that counts the calls it runs at
// once: each takes hold, then answers.
type countingUpstream struct {
	*httptest.Server
	hold    time.Duration
	mu      sync.Mutex
	running int
	max     int
	starts  []upstreamStart
}

type upstreamStart struct {
	at      time.Time
	running int // calls running at that start, this one included
}

func newCountingUpstream(t *testing.T, hold time.Duration) *countingUpstream {
	u := &countingUpstream{hold: hold}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /work", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.running++
		u.max = max(u.max, u.running)
		u.starts = append(u.starts, upstreamStart{at: time.Now(), running: u.running})
		u.mu.Unlock()
		time.Sleep(u.hold) // the upstream's work: what is counted
		u.mu.Lock()
		u.running--
		u.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	})
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

// snapshot returns the most calls seen running at once and every start so far.
func (u *countingUpstream) snapshot() (int, []upstreamStart) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.max, append([]upstreamStart(nil), u.starts...)
}

func (u *countingUpstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.max, u.starts = 0, nil
}

// startLimitedSidecar runs a sidecar consumer process of handler "limited"
// forwarding to up, registering env's limits.
func (st *stack) startLimitedSidecar(t *testing.T, up *countingUpstream, name string, env ...string) *process {
	t.Helper()
	return startProcess(t, binary(t, "streamrpc"), append([]string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=limited", "STREAMRPC_UPSTREAM_URL=" + up.URL,
		"STREAMRPC_METHODS=work", "STREAMRPC_CONSUMER_NAME=" + name, "STREAMRPC_CONCURRENCY=8",
		"STREAMRPC_HEALTH_ADDR=" + freeAddr(t),
	}, env...), "consumer")
}

// runCalls makes n async calls to limited.work and waits for every outcome.
func runCalls(t *testing.T, st *stack, n int) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		r := post(t, st.url, "/rpc/limited/work", []byte(`{}`), preferAsync)
		if r.status != http.StatusAccepted {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		ids[i] = r.requestID
	}
	for i, id := range ids {
		if g := get(t, st.url+"/rpc/calls/"+id+"?wait=60s"); g.State != "done" {
			t.Fatalf("call %d: %s", i, g.body)
		}
	}
}

func putLimits(t *testing.T, url, body string) *response {
	t.Helper()
	return putHandlerLimits(t, url, "limited", body)
}

func putHandlerLimits(t testing.TB, url, handler, body string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+"/handlers/"+handler+"/limits", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func readLimits(t testing.TB, r *response) streams.LimitSettings {
	t.Helper()
	var ls streams.LimitSettings
	if r.status != http.StatusOK || json.Unmarshal(r.body, &ls) != nil {
		t.Fatalf("limits: %d %s", r.status, r.body)
	}
	return ls
}

// TestHandlerLimitsAcrossProcesses: four sidecar consumer processes (8 slots
// each) of one handler registered with max_concurrency 3, in front of an
// upstream that counts: never more than 3 calls run at once, and 3 do (the
// limit is used, not just respected). Then a rate of 20/s set through the
// API (max_concurrency 0 there: none, over the registered 3): no second
// holds more than 20 starts plus the burst. Then max_concurrency 1 through the
// API: in effect within 2 s, kept over a consumer registering again, and
// cleared by DELETE.
func TestHandlerLimitsAcrossProcesses(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	up := newCountingUpstream(t, 100*time.Millisecond)
	for i := range 4 {
		st.startLimitedSidecar(t, up, fmt.Sprintf("c%d", i), "STREAMRPC_HANDLER_MAX_CONCURRENCY=3")
	}
	sc := st.streamsClient(t)
	waitUntil(t, 30*time.Second, func() error {
		hs, err := sc.HandlerDetail(context.Background(), "limited")
		if err != nil || len(hs.Consumers) != 4 {
			return fmt.Errorf("consumers online: %v", err)
		}
		return nil
	})
	if ls := readLimits(t, get(t, st.url+"/handlers/limited/limits")); ls.Effective.MaxConcurrency != 3 || ls.API.MaxConcurrency != nil {
		t.Fatalf("registered limits: %+v", ls)
	}

	began := time.Now()
	runCalls(t, st, 60)
	took := time.Since(began)
	most, _ := up.snapshot()
	if most != 3 {
		t.Fatalf("at most %d calls ran at once, want exactly the limit, 3", most)
	}
	t.Logf("max_concurrency 3, 100 ms calls: 60 calls in %s = %.1f calls/s (the limit allows 30/s)", took.Round(time.Millisecond), 60/took.Seconds())

	t.Run("rate through the API", func(t *testing.T) {
		up.reset()
		ls := readLimits(t, putLimits(t, st.url, `{"max_concurrency":0,"rate":20}`))
		if ls.Effective.Rate != 20 || ls.Effective.MaxConcurrency != 0 || ls.Registered.MaxConcurrency != 3 {
			t.Fatalf("after PUT: %+v", ls)
		}
		applied := time.Now().Add(2 * time.Second)
		runCalls(t, st, 100)
		_, starts := up.snapshot()
		var at []time.Time
		for _, s := range starts {
			if s.at.After(applied) {
				at = append(at, s.at)
			}
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		const burst = 2 // a tenth of a second's calls
		for i := 0; i+20+burst < len(at); i++ {
			if at[i+20+burst].Sub(at[i]) < time.Second {
				t.Fatalf("%d starts within %s at a rate of 20/s", 20+burst+1, at[i+20+burst].Sub(at[i]))
			}
		}
		if len(at) > 1 {
			t.Logf("rate 20/s: %d starts in %s = %.2f/s", len(at), at[len(at)-1].Sub(at[0]).Round(time.Millisecond), float64(len(at)-1)/at[len(at)-1].Sub(at[0]).Seconds())
		}
	})

	t.Run("max_concurrency through the API wins, survives registration, cleared by DELETE", func(t *testing.T) {
		up.reset()
		readLimits(t, putLimits(t, st.url, `{"max_concurrency":1,"rate":null}`))
		applied := time.Now().Add(2 * time.Second)
		st.startLimitedSidecar(t, up, "c4", "STREAMRPC_HANDLER_MAX_CONCURRENCY=3") // registers 3 again
		waitUntil(t, 30*time.Second, func() error {
			hs, err := sc.HandlerDetail(context.Background(), "limited")
			if err != nil || len(hs.Consumers) != 5 {
				return fmt.Errorf("consumers online: %v", err)
			}
			return nil
		})
		if ls := readLimits(t, get(t, st.url+"/handlers/limited/limits")); ls.Effective.MaxConcurrency != 1 || ls.Effective.Rate != 0 {
			t.Fatalf("after registering again: %+v", ls)
		}
		runCalls(t, st, 20)
		_, starts := up.snapshot()
		for _, s := range starts {
			if s.at.After(applied) && s.running > 1 {
				t.Fatalf("%d calls running at once 2 s after max_concurrency 1", s.running)
			}
		}
		r := del(t, st.url+"/handlers/limited/limits")
		if ls := readLimits(t, r); ls.Effective.MaxConcurrency != 3 || ls.API.MaxConcurrency != nil || ls.API.Rate != nil {
			t.Fatalf("after DELETE: %+v", ls)
		}
	})
}

// TestHandlerLimitsAPIErrors: bad bodies and unknown handlers are JSON
// errors with the right status.
func TestHandlerLimitsAPIErrors(t *testing.T) {
	st := newStack(t, stackOptions{})
	tests := []struct {
		name, path, body string
		status           int
	}{
		{"not JSON", "/handlers/echo/limits", `nope`, 400},
		{"not an object", "/handlers/echo/limits", `[1]`, 400},
		{"empty object", "/handlers/echo/limits", `{}`, 400},
		{"unknown field", "/handlers/echo/limits", `{"burst":3}`, 400},
		{"negative concurrency", "/handlers/echo/limits", `{"max_concurrency":-1}`, 400},
		{"fractional concurrency", "/handlers/echo/limits", `{"max_concurrency":1.5}`, 400},
		{"rate not a number", "/handlers/echo/limits", `{"rate":"fast"}`, 400},
		{"rate too high", "/handlers/echo/limits", `{"rate":1e9}`, 400},
		{"unknown handler", "/handlers/nobody/limits", `{"rate":1}`, 404},
		{"bad handler name", "/handlers/b@d/limits", `{"rate":1}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, st.url+tt.path, bytes.NewReader([]byte(tt.body)))
			req.Header.Set("Content-Type", "application/json")
			r := do(t, req)
			if r.status != tt.status || r.Error == nil || r.Error.Message == "" {
				t.Fatalf("got %d %s, want %d with a JSON error", r.status, r.body, tt.status)
			}
		})
	}
	if ls := readLimits(t, get(t, st.url+"/handlers/echo/limits")); ls.Effective.Any() {
		t.Fatalf("refused PUTs changed the limits: %+v", ls)
	}
}
