package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// The liveness tests run consumers as OS processes with every setting at its
// default (heartbeat 1s, declared dead after 3s, visibility timeout 30s, call
// timeout 30s) and kill or stop them mid-call.

// maxRecovery is the promise: a killed consumer's call is started by
// another live consumer within this long of the kill.
const maxRecovery = 5 * time.Second

// sleepUpstream is an app behind sidecars: POST /sleep {"ms":N} sleeps N ms
// (or until the sidecar goes away) and answers {"slept":N}; it records each
// call id's attempts.
type sleepUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	runs map[string][]int // call id -> attempts, in order
}

func newSleepUpstream(t *testing.T) *sleepUpstream {
	t.Helper()
	u := &sleepUpstream{runs: map[string][]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /sleep", func(w http.ResponseWriter, r *http.Request) {
		var p struct{ MS int }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		a, _ := strconv.Atoi(r.Header.Get("Streamrpc-Attempt"))
		u.mu.Lock()
		u.runs[r.Header.Get("Streamrpc-Call-Id")] = append(u.runs[r.Header.Get("Streamrpc-Call-Id")], a)
		u.mu.Unlock()
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
			_, _ = fmt.Fprintf(w, `{"slept":%d}`, p.MS)
		case <-r.Context().Done():
		}
	})
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

func (u *sleepUpstream) attempts() map[string][]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string][]int{}
	for k, v := range u.runs {
		out[k] = slices.Clone(v)
	}
	return out
}

// sidecarConsumer runs `streamrpc consumer` for handler "app" in front of up.
func (st *stack) sidecarConsumer(t *testing.T, name, upstream string) *process {
	t.Helper()
	return startProcess(t, binary(t, "streamrpc"), []string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=app", "STREAMRPC_UPSTREAM_URL=" + upstream,
		"STREAMRPC_METHODS=sleep", "STREAMRPC_HEALTH_ADDR=" + freeAddr(t), "STREAMRPC_CONSUMER_NAME=" + name,
	}, "consumer")
}

// waitOnline waits until the registry shows consumer name of handler online.
func waitOnline(t *testing.T, sc *streams.Client, handler, name string) {
	t.Helper()
	waitUntil(t, 30*time.Second, func() error {
		d, err := sc.HandlerDetail(context.Background(), handler)
		if err != nil {
			return err
		}
		for _, c := range d.Consumers {
			if c.Name == name && c.Online {
				return nil
			}
		}
		return fmt.Errorf("consumer %s not online: %+v", name, d.Consumers)
	})
}

// rerunStart returns when the call's story says it was claimed from dead
// and started again by by: the claimed event's detail and the start time of
// the run on by.
func rerunStart(ctx context.Context, sc *streams.Client, id, by string) (string, time.Time, error) {
	events, err := sc.Story(ctx, id)
	if err != nil {
		return "", time.Time{}, err
	}
	var detail string
	for _, e := range events {
		switch {
		case e.Event == "claimed" && e.Consumer == by:
			detail = e.Detail
		case e.Event == "started" && e.Consumer == by && detail != "":
			return detail, e.Time, nil
		}
	}
	return "", time.Time{}, fmt.Errorf("no claim and rerun by %s in the story of %s: %+v", by, id, events)
}

// TestKilledConsumerCallRerunWithinSeconds is the scenario with every
// setting at its default: a consumer (the Go SDK, or a sidecar in front of
// an app) is SIGKILLed while it runs a sync HTTP call, a WebSocket call and
// an async call; the other live consumer starts each within 5 s of the kill,
// and every caller gets the rerun's result (200) inside the 30 s call timeout.
func TestKilledConsumerCallRerunWithinSeconds(t *testing.T) {
	cases := []struct {
		name    string
		handler string
		start   func(t *testing.T, st *stack, name string) *process
		running func(p *process) map[string][]int // call id -> attempts the consumer started
		// the attempts running(b) shows for each call: b's own for the SDK,
		// the shared app's (a's then b's) for the sidecar
		wantRuns []int
	}{
		{
			name: "go sdk", handler: "echo",
			start:    func(t *testing.T, st *stack, name string) *process { return st.echoConsumer(t, name) },
			running:  func(p *process) map[string][]int { return p.runs() },
			wantRuns: []int{2},
		},
		{
			name: "sidecar", handler: "app", wantRuns: []int{1, 2},
			// set per run below: each case has its own upstream
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStack(t, stackOptions{noConsume: true})
			sc := st.streamsClient(t)
			start, running := tc.start, tc.running
			if tc.name == "sidecar" {
				up := newSleepUpstream(t)
				start = func(t *testing.T, st *stack, name string) *process { return st.sidecarConsumer(t, name, up.URL) }
				running = func(*process) map[string][]int { return up.attempts() }
			}
			a := start(t, st, "a")
			waitOnline(t, sc, tc.handler, "a")
			path := "/rpc/" + tc.handler + "/sleep"
			const ms = 2000
			syncAnswer := asyncPost(t, st.url, path, fmt.Sprintf(`{"ms":%d}`, ms), nil)
			ws := dialClient(t, st.wsURL())
			wsAnswer := make(chan error, 1)
			go func() {
				var out struct{ Slept int }
				err := ws.Call(context.Background(), tc.handler+".sleep", map[string]int{"ms": ms}, &out)
				if err == nil && out.Slept != ms {
					err = fmt.Errorf("ws result %+v", out)
				}
				wsAnswer <- err
			}()
			acc := post(t, st.url, path, []byte(fmt.Sprintf(`{"ms":%d}`, ms)), preferAsync)
			if acc.status != http.StatusAccepted {
				t.Fatalf("async call: %d %s", acc.status, acc.body)
			}
			longPoll := make(chan *response, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodGet, st.url+"/rpc/calls/"+acc.requestID+"?wait=30s", nil)
				res, err := httpClient.Do(req)
				if err != nil {
					longPoll <- &response{status: -1, body: []byte(err.Error())}
					return
				}
				defer res.Body.Close()
				r := &response{status: res.StatusCode}
				r.body, _ = io.ReadAll(res.Body)
				_ = json.Unmarshal(r.body, r)
				longPoll <- r
			}()
			var ids []string
			waitUntil(t, 10*time.Second, func() error {
				ids = ids[:0]
				for id := range running(a) {
					ids = append(ids, id)
				}
				if len(ids) != 3 {
					return fmt.Errorf("consumer a started %d of the 3 calls", len(ids))
				}
				return nil
			})
			b := start(t, st, "b")
			waitOnline(t, sc, tc.handler, "b")
			killed := time.Now()
			a.signal(t, syscall.SIGKILL, 10*time.Second)

			if r := await(t, syncAnswer, 30*time.Second); r.status != 200 || string(r.Result) != fmt.Sprintf(`{"slept":%d}`, ms) {
				t.Errorf("sync caller: %d %s", r.status, r.body)
			}
			select {
			case err := <-wsAnswer:
				if err != nil {
					t.Errorf("WebSocket caller: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("WebSocket caller: no answer within 30s")
			}
			if r := await(t, longPoll, 35*time.Second); r.status != 200 || r.State != "done" || string(r.Result) != fmt.Sprintf(`{"slept":%d}`, ms) {
				t.Errorf("async caller (long-poll): %d %s", r.status, r.body)
			}
			if took := time.Since(killed); took > 30*time.Second {
				t.Errorf("the callers were answered %s after the kill, past the default call timeout", took)
			}
			for _, id := range ids {
				var detail string
				var started time.Time
				waitUntil(t, 5*time.Second, func() (err error) {
					detail, started, err = rerunStart(context.Background(), sc, id, "b")
					return err
				})
				if !strings.Contains(detail, "consumer a stopped heartbeating") || !strings.Contains(detail, "claimed by b") {
					t.Errorf("call %s: claim detail %q", id, detail)
				}
				took := started.Sub(killed)
				t.Logf("call %s: started again on b %s after the kill", id, took.Round(time.Millisecond))
				if took > maxRecovery {
					t.Errorf("call %s: started again %s after the kill, want <= %s", id, took, maxRecovery)
				}
				if got := running(b)[id]; !slices.Equal(got, tc.wantRuns) {
					t.Errorf("call %s: attempts run %v, want %v", id, got, tc.wantRuns)
				}
			}
		})
	}
}

// TestStoppedConsumerLateSettleDropped stops a consumer (SIGSTOP) mid-call
// for longer than the declared-dead time: a live consumer claims and answers
// the call; when the stopped one resumes (SIGCONT) and finishes its run, its
// settle is dropped. The caller gets exactly one answer, and the call is
// counted once.
func TestStoppedConsumerLateSettleDropped(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	sc := st.streamsClient(t)
	a := st.echoConsumer(t, "a")
	waitOnline(t, sc, "echo", "a")
	b := st.echoConsumer(t, "b")
	waitOnline(t, sc, "echo", "b")
	// Whichever takes it first is the one stopped.
	answer := asyncPost(t, st.url, "/rpc/echo/sleep", `{"ms":2500}`, nil)
	var id string
	var stopped, live *process
	var stoppedName, liveName string
	waitUntil(t, 10*time.Second, func() error {
		for name, p := range map[string]*process{"a": a, "b": b} {
			for k := range p.runs() {
				id, stopped, stoppedName = k, p, name
			}
		}
		if id == "" {
			return errors.New("no consumer started the call")
		}
		return nil
	})
	live, liveName = b, "b"
	if stopped == b {
		live, liveName = a, "a"
	}
	if err := stopped.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	r := await(t, answer, 30*time.Second)
	if r.status != 200 || string(r.Result) != `{"slept":2500}` || r.requestID != id {
		t.Fatalf("caller: %d %s (id %s, want %s)", r.status, r.body, r.requestID, id)
	}
	if got := live.runs()[id]; !slices.Equal(got, []int{2}) {
		t.Fatalf("the live consumer ran attempts %v, want [2]", got)
	}
	var started time.Time
	waitUntil(t, 5*time.Second, func() (err error) {
		_, started, err = rerunStart(context.Background(), sc, id, liveName)
		return err
	})
	t.Logf("stopped consumer %s: call started again on %s %s after the SIGSTOP", stoppedName, liveName, started.Sub(stoppedAt).Round(time.Millisecond))
	if took := started.Sub(stoppedAt); took > maxRecovery {
		t.Errorf("started again %s after the SIGSTOP, want <= %s", took, maxRecovery)
	}
	if err := stopped.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Its run ends (the sleep is long over) and its settle is dropped.
	waitUntil(t, 15*time.Second, func() error {
		if !strings.Contains(stopped.stderr.String(), "this run's outcome is dropped") {
			return errors.New("the resumed consumer has not dropped its late settle yet")
		}
		return nil
	})
	// Exactly one answer: one finished event, one call counted, the result is the live run's.
	waitUntil(t, 5*time.Second, func() error {
		events, err := sc.Story(context.Background(), id)
		if err != nil {
			return err
		}
		var finished []string
		for _, e := range events {
			if e.Event == "finished" {
				finished = append(finished, e.Consumer)
			}
		}
		if !slices.Equal(finished, []string{liveName}) {
			return fmt.Errorf("finished events by %v, want only %s", finished, liveName)
		}
		d, err := sc.HandlerDetail(context.Background(), "echo")
		if err != nil {
			return err
		}
		if d.Totals.Calls != 1 {
			return fmt.Errorf("%d calls counted, want 1", d.Totals.Calls)
		}
		return nil
	})
	// The resumed consumer heartbeats again and serves.
	waitOnline(t, sc, "echo", stoppedName)
}

// TestKillSoakRecovery kills consumer processes at random while calls run
// (every setting at its default) and reports how long each killed call took
// to start again elsewhere. 20 s by default; STREAMRPC_KILL_SOAK=2m runs longer.
func TestKillSoakRecovery(t *testing.T) {
	dur := 20 * time.Second
	if v, err := time.ParseDuration(os.Getenv("STREAMRPC_KILL_SOAK")); err == nil && v > 0 {
		dur = v
	}
	const consumerProcs, callers = 3, 12
	st := newStack(t, stackOptions{noConsume: true})
	sc := st.streamsClient(t)
	var mu sync.Mutex
	kills := map[string]time.Time{} // consumer -> when it was killed
	live := make([]*process, consumerProcs)
	names := make([]string, consumerProcs)
	for i := range live {
		names[i] = fmt.Sprintf("k%d", i)
		live[i] = st.echoConsumer(t, names[i])
		waitOnline(t, sc, "echo", names[i])
	}
	stop := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		for gen := consumerProcs; ; gen++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1500+rand.IntN(1500)) * time.Millisecond):
			}
			i := rand.IntN(consumerProcs)
			mu.Lock()
			kills[names[i]] = time.Now()
			mu.Unlock()
			_ = live[i].cmd.Process.Kill()
			<-live[i].exited
			names[i] = fmt.Sprintf("k%d", gen)
			live[i] = st.echoConsumer(t, names[i])
		}
	}()
	var answered atomic.Int64
	var ids sync.Map
	failures := make(chan string, 1000)
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(end) {
				ms := 300 + rand.IntN(900)
				res, err := httpClient.Post(st.url+"/rpc/echo/sleep", "application/json", strings.NewReader(fmt.Sprintf(`{"ms":%d}`, ms)))
				if err != nil {
					failures <- err.Error()
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				ids.Store(res.Header.Get("X-Request-Id"), true)
				var out struct{ Result json.RawMessage }
				_ = json.Unmarshal(b, &out)
				if res.StatusCode != 200 || string(out.Result) != fmt.Sprintf(`{"slept":%d}`, ms) {
					failures <- fmt.Sprintf("%d %s", res.StatusCode, b)
					continue
				}
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-chaosDone
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	// The live consumers stop (SIGTERM): their recorders write the last stories.
	for _, p := range live {
		p.signal(t, syscall.SIGTERM, 30*time.Second)
	}
	// Each call taken over from a killed consumer: time from the kill to its rerun.
	var recoveries []time.Duration
	mu.Lock()
	defer mu.Unlock()
	ids.Range(func(k, _ any) bool {
		events, err := sc.Story(context.Background(), k.(string))
		if err != nil {
			return true
		}
		var from string
		for _, e := range events {
			if e.Event == "claimed" {
				from, _, _ = strings.Cut(strings.TrimPrefix(e.Detail, "consumer "), " ")
			}
			if e.Event == "started" && from != "" {
				if killed, ok := kills[from]; ok {
					recoveries = append(recoveries, e.Time.Sub(killed))
				}
				from = ""
			}
		}
		return true
	})
	slices.Sort(recoveries)
	pct := func(q float64) time.Duration {
		if len(recoveries) == 0 {
			return 0
		}
		return recoveries[min(len(recoveries)-1, int(q*float64(len(recoveries))))].Round(time.Millisecond)
	}
	t.Logf("kill soak: %s, %d calls answered, %d kills, %d calls taken over from killed consumers; time from kill to rerun start p50 %s, p90 %s, p99 %s, max %s",
		dur, answered.Load(), len(kills), len(recoveries), pct(0.5), pct(0.9), pct(0.99), pct(1))
	if len(kills) > 0 && len(recoveries) == 0 {
		t.Fatal("no call was taken over from a killed consumer: the soak measured nothing")
	}
	if p := pct(0.9); p > maxRecovery {
		t.Errorf("p90 time to rerun %s, want <= %s", p, maxRecovery)
	}
}

// restartableApp is an app on a fixed address that can go down (connection
// refused) and come back; it counts the runs of each call id.
type restartableApp struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
	runs map[string]int
}

func newRestartableApp(t *testing.T) *restartableApp {
	t.Helper()
	a := &restartableApp{addr: freeAddr(t), runs: map[string]int{}}
	a.up(t)
	t.Cleanup(a.down)
	return a
}

func (a *restartableApp) up(t *testing.T) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.runs[r.Header.Get("Streamrpc-Call-Id")]++
		a.mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// down closes the listener and every connection: calls are refused.
func (a *restartableApp) down() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		_ = a.srv.Close()
		a.srv = nil
	}
}

func (a *restartableApp) runsOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runs[id]
}

// TestSidecarWaitsWhileAppDown takes a sidecar's app down for 20 s
// (STREAMRPC_TEST_APP_DOWN) under a trickle of a call a second, with every
// setting at its default: the sidecar stops taking calls (/readyz 503, the
// registry shows it waiting_for_app) instead of spending their attempts; the
// calls wait in the stream, and once the app is back every one is answered
// 200, none dead-lettered, none run twice.
func TestSidecarWaitsWhileAppDown(t *testing.T) {
	downFor := 20 * time.Second
	if v, err := time.ParseDuration(os.Getenv("STREAMRPC_TEST_APP_DOWN")); err == nil && v > 0 {
		downFor = v
	}
	st := newStack(t, stackOptions{noConsume: true})
	sc := st.streamsClient(t)
	app := newRestartableApp(t)
	health := freeAddr(t)
	startProcess(t, binary(t, "streamrpc"), []string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=app", "STREAMRPC_UPSTREAM_URL=http://" + app.addr,
		"STREAMRPC_METHODS=echo", "STREAMRPC_HEALTH_ADDR=" + health, "STREAMRPC_CONSUMER_NAME=side",
	}, "consumer")
	readyz := "http://" + health + "/readyz"
	state := func() string {
		d, err := sc.HandlerDetail(context.Background(), "app")
		if err != nil || len(d.Consumers) != 1 {
			return ""
		}
		return d.Consumers[0].State
	}
	waitUntil(t, 30*time.Second, func() error {
		if code := healthStatus(readyz); code != 200 || state() != streams.ConsumerRunning {
			return fmt.Errorf("/readyz %d, state %q", code, state())
		}
		return nil
	})
	if r := post(t, st.url, "/rpc/app/echo", []byte(`{"before":true}`), nil); r.status != 200 {
		t.Fatalf("before the outage: %d %s", r.status, r.body)
	}

	app.down()
	type sent struct {
		params string
		answer <-chan *response
	}
	var calls []sent
	tick := time.NewTicker(time.Second)
	downUntil := time.Now().Add(downFor)
	sawWaiting := false
	for i := 0; time.Now().Before(downUntil); i++ {
		p := fmt.Sprintf(`{"i":%d}`, i)
		calls = append(calls, sent{p, asyncPost(t, st.url, "/rpc/app/echo", p, nil)})
		if healthStatus(readyz) == http.StatusServiceUnavailable && state() == streams.ConsumerWaitingForApp {
			sawWaiting = true
		}
		<-tick.C
	}
	tick.Stop()
	if !sawWaiting {
		t.Error("while the app was down, the sidecar never showed /readyz 503 and waiting_for_app")
	}
	app.up(t)

	for _, c := range calls {
		r := await(t, c.answer, 35*time.Second)
		if r.status != 200 || string(r.Result) != c.params {
			t.Errorf("call %s: %d %s", c.params, r.status, r.body)
			continue
		}
		if n := app.runsOf(r.requestID); n != 1 {
			t.Errorf("call %s (%s): the app ran it %d times, want 1", c.params, r.requestID, n)
		}
	}
	d, err := sc.HandlerDetail(context.Background(), "app")
	if err != nil || d.DeadLetters != 0 || d.Totals.Retries != 0 {
		t.Fatalf("%d dead letters, %d retries (%v), want none: the outage spent no attempt", d.DeadLetters, d.Totals.Retries, err)
	}
	waitUntil(t, 10*time.Second, func() error {
		if code := healthStatus(readyz); code != 200 || state() != streams.ConsumerRunning {
			return fmt.Errorf("after the outage: /readyz %d, state %q", code, state())
		}
		return nil
	})
	t.Logf("app down %s: %d calls made meanwhile, all answered 200 once it was back, each run once", downFor, len(calls))
}

// TestIdleConsumerCommands measures what liveness costs Redis: an idle
// consumer with the default settings sends a heartbeat and a dead-consumer
// sweep (one script run each) every second, plus its blocking read, retry
// forwarder and lease backstop. Nothing of it is per call (TestCommandsPerCall
// counts those).
func TestIdleConsumerCommands(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	own := stackOn(st.redis) // a counter of the consumer's commands alone
	own.startConsumer(t, consumers.Config{}, echo.Mux())
	// Measuring windows, not waits for a condition: the first takes in the
	// start (connections, script loads), the second is the steady state.
	<-time.After(2 * time.Second)
	before := own.cmds.n.Load()
	const window = 10 * time.Second
	<-time.After(window)
	n := own.cmds.n.Load() - before
	per := float64(n) / window.Seconds()
	t.Logf("an idle consumer sends %.1f Redis commands per second (heartbeat, dead-consumer sweep, blocking read, retry forwarder)", per)
	// The steady rate is 4 per second. A window's edges cut each periodic
	// loop at an arbitrary phase, so each loop may add one tick to the count.
	const steady, loops = 4, 5
	if limit := int64(steady*window.Seconds()) + loops; n > limit {
		t.Fatalf("an idle consumer sent %d commands in %s (%.1f/s), want at most %d (%d/s plus one tick per loop at the window's edges)",
			n, window, per, limit, steady)
	}
}
