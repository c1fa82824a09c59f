package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// streamsClient is a protocol client on the stack's Redis, for inspecting
// backlogs and dead letters the way the edge does.
func (st *stack) streamsClient(t testing.TB) *streams.Client {
	t.Helper()
	sc := streams.New(st.connect(t), streams.Options{})
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// register makes handler known to the edge with mux's methods, then stops
// its consumer: calls are accepted and wait in the stream.
func (st *stack) register(t testing.TB, cfg consumers.Config, mux *consumers.Mux) {
	t.Helper()
	srv := st.startConsumer(t, cfg, mux)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// echoConsumer runs the example echo consumer as an OS process with tracing on.
func (st *stack) echoConsumer(t testing.TB, name string, env ...string) *process {
	t.Helper()
	env = append([]string{"REDIS_URL=" + st.redis.URL, "ECHO_TRACE=1", "STREAMRPC_CONSUMER_NAME=" + name}, env...)
	return startProcess(t, binary(t, "echo"), env)
}

// runs returns the "run <id> <attempt>" lines a traced consumer printed.
func (p *process) runs() map[string][]int {
	out := map[string][]int{}
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "run" {
			a, _ := strconv.Atoi(f[2])
			out[f[1]] = append(out[f[1]], a)
		}
	}
	return out
}

// asyncPost runs post in a goroutine; the answer arrives on the channel.
func asyncPost(t testing.TB, url, path, body string, header map[string]string) <-chan *response {
	ch := make(chan *response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := httpClient.Do(req)
		if err != nil {
			ch <- &response{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		r := &response{status: res.StatusCode, header: res.Header, requestID: res.Header.Get("X-Request-Id")}
		dec := json.NewDecoder(res.Body)
		var raw json.RawMessage
		_ = dec.Decode(&raw)
		r.body = raw
		_ = json.Unmarshal(raw, r)
		ch <- r
	}()
	return ch
}

func await(t testing.TB, ch <-chan *response, timeout time.Duration) *response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(timeout):
		t.Fatalf("no answer within %s", timeout)
		return nil
	}
}

// TestCrashRedelivery kills a consumer (SIGKILL, no ack) in the middle of a
// call: a second consumer claims it after the visibility timeout, runs it as
// attempt 2, and the caller gets exactly one answer.
func TestCrashRedelivery(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	vt := "STREAMRPC_VISIBILITY_TIMEOUT=1s"
	a := st.echoConsumer(t, "a", vt)
	waitForEcho(t, st.url)
	answer := asyncPost(t, st.url, "/rpc/echo/sleep", `{"ms":1500}`, nil)
	var id string
	sc := st.streamsClient(t)
	waitUntil(t, 10*time.Second, func() error {
		for k, attempts := range a.runs() {
			if len(attempts) == 1 {
				if r, _ := sc.Result(context.Background(), k); r.ID == "" {
					id = k // running, not finished: the sleep call
					return nil
				}
			}
		}
		return errors.New("consumer a has not started the call")
	})
	a.signal(t, syscall.SIGKILL, 10*time.Second)
	b := st.echoConsumer(t, "b", vt)
	r := await(t, answer, 30*time.Second)
	if r.status != 200 || string(r.Result) != `{"slept":1500}` || r.requestID != id {
		t.Fatalf("got %d %s (id %s, want %s)", r.status, r.body, r.requestID, id)
	}
	if runs := b.runs()[id]; len(runs) != 1 || runs[0] != 2 {
		t.Fatalf("consumer b ran the call %v times/attempts, want once as attempt 2", runs)
	}
}

// flakyMux fails with a retryable error until attempt `succeedAt`.
func flakyMux(succeedAt int, fixed *atomic.Bool, runs *atomic.Int64) *consumers.Mux {
	mux := consumers.NewMux()
	mux.HandleFunc("flaky", func(_ context.Context, r *consumers.Request) (any, error) {
		runs.Add(1)
		if r.Attempt < succeedAt && (fixed == nil || !fixed.Load()) {
			return nil, consumers.Retryable(fmt.Errorf("transient failure on attempt %d", r.Attempt))
		}
		return map[string]int{"attempt": r.Attempt}, nil
	})
	return mux
}

// retryThenSuccess: a handler that fails with a retryable error twice runs a third time and
// its result is the answer; the consumer counts the retries. A case of TestTopologies.
func retryThenSuccess(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	srv := st.startConsumer(t, consumers.Config{Handler: "flaky", MaxAttempts: 5, RetryBaseDelay: 50 * time.Millisecond}, flakyMux(3, nil, &runs))
	r := post(t, st.url, "/rpc/flaky/flaky", []byte(`{}`), nil)
	if r.status != 200 || string(r.Result) != `{"attempt":3}` {
		t.Fatalf("got %d %s, want 200 after the 3rd attempt", r.status, r.body)
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("handler ran %d times, want 3", n)
	}
	if s := srv.Stats().Methods[0]; s.Retries != 2 || s.Errors != 2 || s.Calls != 3 {
		t.Fatalf("stats %+v, want 2 retries, 2 errors, 3 calls", s)
	}
}

// deadLettersAndReplay: a call that fails every attempt is dead-lettered (502), listed with
// its params and error, replayed once the handler is fixed, and deleted by id. A case of
// TestTopologies.
func deadLettersAndReplay(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{noConsume: true})
	var fixed atomic.Bool
	var runs atomic.Int64
	st.startConsumer(t, consumers.Config{Handler: "flaky", MaxAttempts: 3, RetryBaseDelay: 20 * time.Millisecond}, flakyMux(99, &fixed, &runs))

	r := post(t, st.url, "/rpc/flaky/flaky", []byte(`{"order":7}`), nil)
	if r.status != http.StatusBadGateway || r.Error == nil || r.Error.Code != streams.CodeDeadLettered || !strings.Contains(string(r.Error.Data), `"attempts":3`) {
		t.Fatalf("got %d %s, want 502 dead_lettered after 3 attempts", r.status, r.body)
	}
	id := r.requestID
	var list struct {
		Total       int                  `json:"total"`
		DeadLetters []streams.DeadLetter `json:"dead_letters"`
	}
	l := get(t, st.url+"/handlers/flaky/dead-letters")
	if err := json.Unmarshal(l.body, &list); err != nil || list.Total != 1 || len(list.DeadLetters) != 1 {
		t.Fatalf("dead letters: %d %s", l.status, l.body)
	}
	dl := list.DeadLetters[0]
	if dl.ID != id || dl.Attempts != 3 || dl.Method != "flaky" || string(dl.Params) != `{"order":7}` ||
		dl.Error == nil || !strings.Contains(dl.Error.Message, "transient failure on attempt 3") {
		t.Fatalf("dead letter %+v", dl)
	}

	fixed.Store(true)
	rp := post(t, st.url, "/handlers/flaky/dead-letters/"+dl.StreamID+"/replay", nil, nil)
	if rp.status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", rp.status, rp.body)
	}
	waitUntil(t, 10*time.Second, func() error {
		g := get(t, st.url+"/rpc/calls/"+id)
		if g.status != 200 || string(g.Result) != `{"attempt":1}` {
			return fmt.Errorf("result after replay: %d %s", g.status, g.body)
		}
		return nil
	})
	if l := get(t, st.url+"/handlers/flaky/dead-letters"); !strings.Contains(string(l.body), `"total":0`) {
		t.Fatalf("dead letters after replay: %s", l.body)
	}

	t.Run("delete", func(t *testing.T) {
		fixed.Store(false)
		post(t, st.url, "/rpc/flaky/flaky", []byte(`{}`), nil)
		l := get(t, st.url+"/handlers/flaky/dead-letters")
		_ = json.Unmarshal(l.body, &list)
		if len(list.DeadLetters) != 1 {
			t.Fatalf("want one dead letter: %s", l.body)
		}
		path := "/handlers/flaky/dead-letters/" + list.DeadLetters[0].StreamID
		if d := del(t, st.url+path); d.status != 200 {
			t.Fatalf("delete: %d %s", d.status, d.body)
		}
		if d := del(t, st.url+path); d.status != 404 || d.Error.Code != streams.CodeNotFound {
			t.Fatalf("delete again: %d %s", d.status, d.body)
		}
		if d := del(t, st.url+"/handlers/flaky/dead-letters/not-an-id"); d.status != 400 {
			t.Fatalf("delete bad id: %d %s", d.status, d.body)
		}
	})
}

func del(t testing.TB, url string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// TestPoisonEntry puts an undecodable entry in the stream: it is never run,
// and lands in the dead letters with the reason.
func TestPoisonEntry(t *testing.T) {
	st := newStack(t, stackOptions{})
	sc := st.streamsClient(t)
	if err := sc.AppendRaw(context.Background(), "echo", "garbage", "\xff\x00"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() error {
		list, err := sc.DeadLetters(context.Background(), "echo", "", 10)
		if err != nil || len(list) != 1 {
			return fmt.Errorf("dead letters %v %v", list, err)
		}
		if list[0].Error == nil || !strings.Contains(list[0].Error.Message, "undecodable") || list[0].Fields["garbage"] != "\xff\x00" {
			return fmt.Errorf("dead letter %+v", list[0])
		}
		return nil
	})
	if n, _ := sc.Backlog(context.Background(), "echo"); n != 0 {
		t.Fatalf("backlog %d after the poison entry was moved", n)
	}
}

func countingMux(runs *atomic.Int64, sleep time.Duration) *consumers.Mux {
	mux := consumers.NewMux()
	mux.HandleFunc("run", func(ctx context.Context, r *consumers.Request) (any, error) {
		n := runs.Add(1)
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return map[string]any{"run": n, "params": r.Params}, nil
	})
	return mux
}

// TestDeadlinePassedWhileQueued: a call whose deadline passes before any
// consumer takes it is not run; it is answered with a timeout and counted.
func TestDeadlinePassedWhileQueued(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))
	r := post(t, st.url, "/rpc/counted/run", []byte(`{}`), map[string]string{"Request-Timeout": "1"}) // long enough for the enqueue on a loaded machine
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("got %d %s, want 504", r.status, r.body)
	}
	srv := st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))
	sc := st.streamsClient(t)
	waitUntil(t, 10*time.Second, func() error {
		if n, err := sc.Backlog(context.Background(), "counted"); err != nil || n != 0 {
			return fmt.Errorf("backlog %d %v", n, err)
		}
		return nil
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("the expired call ran %d times", n)
	}
	if s := srv.Stats().Methods; len(s) != 1 || s[0].Expired != 1 {
		t.Fatalf("stats %+v, want 1 expired", s)
	}
	g := get(t, st.url+"/rpc/calls/"+r.requestID)
	if g.status != 200 || g.State != "failed" || g.Error == nil || g.Error.Code != streams.CodeTimeout || !strings.Contains(g.Error.Message, "not run") {
		t.Fatalf("result of the expired call: %d %s", g.status, g.body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 300*time.Millisecond))
	key := map[string]string{"Idempotency-Key": "order-42"}
	first := asyncPost(t, st.url, "/rpc/counted/run", `{"amount":5}`, key)
	second := asyncPost(t, st.url, "/rpc/counted/run", `{"amount":5}`, key)
	a, b := await(t, first, 20*time.Second), await(t, second, 20*time.Second)
	if a.status != 200 || b.status != 200 || string(a.body) != string(b.body) || a.requestID != b.requestID {
		t.Fatalf("answers differ: %d %s %s / %d %s %s", a.status, a.body, a.requestID, b.status, b.body, b.requestID)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	again := post(t, st.url, "/rpc/counted/run", []byte(`{"amount":5}`), key)
	if again.status != 200 || string(again.body) != string(a.body) || runs.Load() != 1 {
		t.Fatalf("repeat after completion: %d %s (runs %d)", again.status, again.body, runs.Load())
	}
	other := post(t, st.url, "/rpc/counted/run", []byte(`{"amount":6}`), key)
	if other.status != 422 || other.Error == nil || other.Error.Code != streams.CodeIdempotencyMismatch || !strings.Contains(other.Error.Message, "other params") {
		t.Fatalf("same key, other params: %d %s", other.status, other.body)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

// A repeat of an Idempotency-Key after the call finished reports its real
// state; params that differ only in whitespace are the same params.
func TestIdempotencyRepeatAfterFinish(t *testing.T) {
	st := newStack(t, stackOptions{})
	key := map[string]string{"Idempotency-Key": "order-43", "Prefer": "respond-async"}
	first := post(t, st.url, "/rpc/echo/echo", []byte(`{"a":1}`), key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+first.requestID); g.State != "done" {
			return fmt.Errorf("state %q", g.State)
		}
		return nil
	})
	cases := []struct {
		name       string
		body       string
		wantStatus int
		wantState  string
	}{
		{"same params", `{"a":1}`, http.StatusAccepted, "done"},
		{"same params, other whitespace", "{ \"a\" :\n 1 }", http.StatusAccepted, "done"},
		{"other params", `{"a":2}`, http.StatusUnprocessableEntity, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, st.url, "/rpc/echo/echo", []byte(tc.body), key)
			if r.status != tc.wantStatus || r.State != tc.wantState {
				t.Fatalf("got %d %s, want %d with state %q", r.status, r.body, tc.wantStatus, tc.wantState)
			}
			if tc.wantStatus == http.StatusAccepted && r.requestID != first.requestID {
				t.Fatalf("repeat has id %s, want the first call's %s", r.requestID, first.requestID)
			}
		})
	}
}

func TestBacklogLimit(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.register(t, consumers.Config{Handler: "counted", MaxBacklog: 3}, countingMux(&runs, 0))
	short := map[string]string{"Request-Timeout": "0.1"}
	for i := range 3 {
		if r := post(t, st.url, "/rpc/counted/run", []byte(`{}`), short); r.status != 504 {
			t.Fatalf("call %d: got %d %s, want 504 (queued, no consumer)", i, r.status, r.body)
		}
	}
	r := post(t, st.url, "/rpc/counted/run", []byte(`{}`), short)
	if r.status != 503 || r.Error == nil || r.Error.Code != streams.CodeOverloaded || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the backlog: got %d %s (Retry-After %q), want 503 overloaded", r.status, r.body, r.header.Get("Retry-After"))
	}
	if n, _ := st.streamsClient(t).Backlog(context.Background(), "counted"); n != 3 {
		t.Fatalf("backlog %d, want 3: the refused call must not be enqueued", n)
	}
}

// TestConsumerSIGTERMDrain: SIGTERM mid-call; the consumer finishes the call,
// acks it, and exits 0.
func TestConsumerSIGTERMDrain(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	c := st.echoConsumer(t, "drainer")
	waitForEcho(t, st.url)
	answer := asyncPost(t, st.url, "/rpc/echo/sleep", `{"ms":1000}`, nil)
	waitUntil(t, 10*time.Second, func() error {
		if len(c.runs()) < 2 { // waitForEcho's call, then the sleep
			return errors.New("sleep not started")
		}
		return nil
	})
	if code := c.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if r := await(t, answer, 10*time.Second); r.status != 200 || string(r.Result) != `{"slept":1000}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if n, _ := st.streamsClient(t).Pending(context.Background(), "echo"); n != 0 {
		t.Fatalf("%d calls left pending after a clean drain", n)
	}
}

// TestEdgeSIGTERMDrain: SIGTERM on an edge process waiting on a call; it stops
// accepting, answers the call, and exits 0.
func TestEdgeSIGTERMDrain(t *testing.T) {
	rs := startRedis(t)
	addr := freeAddr(t)
	edge := startProcess(t, binary(t, "streamrpc"), []string{"REDIS_URL=" + rs.URL, "STREAMRPC_ADDR=" + addr, "STREAMRPC_AUTH=none"}, "edge")
	c := startProcess(t, binary(t, "echo"), []string{"REDIS_URL=" + rs.URL, "ECHO_TRACE=1"})
	url := "http://" + addr
	waitForEcho(t, url)
	answer := asyncPost(t, url, "/rpc/echo/sleep", `{"ms":1000}`, nil)
	waitUntil(t, 10*time.Second, func() error {
		if len(c.runs()) < 2 {
			return errors.New("sleep not started")
		}
		return nil
	})
	if code := edge.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("edge exit code %d", code)
	}
	if r := await(t, answer, 10*time.Second); r.status != 200 || string(r.Result) != `{"slept":1000}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

// TestRedisRestartWithQueuedCalls: 200 calls wait in the stream while Redis
// (AOF on) restarts; all 200 are answered once it is back.
func TestRedisRestartWithQueuedCalls(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true, redisArgs: []string{"--appendonly", "yes"}})
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(new(atomic.Int64), 0))
	const n = 200
	answers := make([]<-chan *response, n)
	for i := range n {
		answers[i] = asyncPost(t, st.url, "/rpc/counted/run", fmt.Sprintf(`{"i":%d}`, i), map[string]string{"Request-Timeout": "60"})
	}
	sc := st.streamsClient(t)
	waitUntil(t, 20*time.Second, func() error {
		if b, err := sc.Backlog(context.Background(), "counted"); err != nil || b != n {
			return fmt.Errorf("backlog %d %v", b, err)
		}
		return nil
	})
	st.redis.Stop(t)
	st.redis.Start(t)
	var runs atomic.Int64
	st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))
	for i, ch := range answers {
		r := await(t, ch, 60*time.Second)
		var res struct{ Params json.RawMessage }
		_ = json.Unmarshal(r.Result, &res)
		if r.status != 200 || string(res.Params) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
	}
	if runs.Load() != n {
		t.Fatalf("handler ran %d times, want %d", runs.Load(), n)
	}
}

// TestSoak sends calls from 64 concurrent callers while consumer processes
// are killed (SIGKILL) and restarted at random. Every call must be answered
// (or dead-lettered), none lost, and the handler runs beyond one per call
// (at-least-once duplicates) are bounded by the crashes. STREAMRPC_SOAK_CALLS
// scales it (default 2000; docs/guarantees.md gives a 10,000-call run).
func TestSoak(t *testing.T) {
	calls := 2000
	if v, err := strconv.Atoi(os.Getenv("STREAMRPC_SOAK_CALLS")); err == nil && v > 0 {
		calls = v
	}
	const callers, consumerProcs, concurrency = 64, 3, 16
	st := newStack(t, stackOptions{noConsume: true, edge: app.Config{CallTimeout: 120 * time.Second}})
	env := []string{"STREAMRPC_VISIBILITY_TIMEOUT=1s", "STREAMRPC_CONCURRENCY=" + strconv.Itoa(concurrency), "STREAMRPC_READ_BLOCK=200ms"}
	var mu sync.Mutex
	var procs []*process // every consumer ever started, for counting runs
	live := make([]*process, consumerProcs)
	for i := range live {
		live[i] = st.echoConsumer(t, fmt.Sprintf("soak-%d", i), env...)
		procs = append(procs, live[i])
	}
	waitForEcho(t, st.url)

	var crashes atomic.Int64
	stopChaos := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() { // the chaos monkey: kill and restart a random consumer
		defer close(chaosDone)
		for gen := consumerProcs; ; gen++ {
			select {
			case <-stopChaos:
				return
			case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
			}
			i := rand.IntN(consumerProcs)
			_ = live[i].cmd.Process.Kill()
			<-live[i].exited
			crashes.Add(1)
			p := st.echoConsumer(t, fmt.Sprintf("soak-%d", gen), env...)
			mu.Lock()
			live[i] = p
			procs = append(procs, p)
			mu.Unlock()
		}
	}()

	var answered, deadLettered, next atomic.Int64
	failures := make(chan string, calls)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(calls) {
					return
				}
				ms := rand.IntN(20)
				res, err := httpClient.Post(st.url+"/rpc/echo/sleep", "application/json", strings.NewReader(fmt.Sprintf(`{"ms":%d,"i":%d}`, ms, i)))
				if err != nil {
					failures <- err.Error()
					continue
				}
				var out struct {
					Result json.RawMessage
					Error  *streams.Error
				}
				_ = json.NewDecoder(res.Body).Decode(&out)
				res.Body.Close()
				switch {
				case res.StatusCode == 200 && string(out.Result) == fmt.Sprintf(`{"slept":%d}`, ms):
					answered.Add(1)
				case res.StatusCode == http.StatusBadGateway && out.Error != nil && out.Error.Code == streams.CodeDeadLettered:
					deadLettered.Add(1)
				default:
					failures <- fmt.Sprintf("call %d: %d %s %v", i, res.StatusCode, out.Result, out.Error)
				}
			}
		}()
	}
	wg.Wait()
	close(stopChaos)
	<-chaosDone
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	mu.Lock()
	runsPerID := map[string]int{}
	for _, p := range procs {
		for id, attempts := range p.runs() {
			runsPerID[id] += len(attempts)
		}
	}
	mu.Unlock()
	total := 0
	for _, n := range runsPerID {
		total += n
	}
	dups := total - len(runsPerID)
	t.Logf("soak: %d calls, %d answered, %d dead-lettered, %d consumer crashes, %d handler runs, %d duplicate runs (at-least-once)",
		calls, answered.Load(), deadLettered.Load(), crashes.Load(), total, dups)
	if got := answered.Load() + deadLettered.Load(); got != int64(calls) {
		t.Fatalf("%d of %d calls answered or dead-lettered", got, calls)
	}
	if bound := int(crashes.Load()) * concurrency; dups > bound {
		t.Fatalf("%d duplicate runs, more than crashes × concurrency = %d", dups, bound)
	}
}

// TestLostReplyIsRecovered breaks the reply path on purpose: a consumer settles a call (its
// result is kept) but its reply goes to a reply stream no edge reads, as when a consumer dies
// between its settle script and its reply XADD, or a failover loses the reply stream's last
// writes. The waiting caller still gets the result: the edge looks up the results of calls that
// waited long, and counts it in streamrpc_replies_recovered_total.
func TestLostReplyIsRecovered(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	ctx := context.Background()
	sc := streams.New(st.connect(t), streams.Options{})
	t.Cleanup(func() { _ = sc.Close() })
	if err := sc.Register(ctx, streams.HandlerInfo{Name: "lossy", Methods: []streams.MethodInfo{{Name: "m"}}}, streams.HandlerSettings{}); err != nil {
		t.Fatal(err)
	}
	if err := sc.EnsureGroup(ctx, "lossy"); err != nil {
		t.Fatal(err)
	}
	answer := make(chan *response, 1)
	go func() {
		res, err := httpClient.Post(st.url+"/rpc/lossy/m", "application/json", strings.NewReader(`{"x":1}`))
		if err != nil {
			answer <- &response{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		var r response
		r.status = res.StatusCode
		_ = json.NewDecoder(res.Body).Decode(&r)
		answer <- &r
	}()
	var ds []streams.Delivery
	waitUntil(t, 10*time.Second, func() error {
		var err error
		ds, err = sc.ReadCalls(ctx, "lossy", "c1", 1, -1)
		if err == nil && len(ds) == 0 {
			err = errors.New("no call yet")
		}
		return err
	})
	d := ds[0]
	d.Call.ReplyTo = "an-edge-that-is-gone" // the reply is lost: that stream does not exist
	if ok, err := sc.Finish(ctx, &d, streams.ResultReply(d.Call.ID, json.RawMessage(`{"y":2}`)), streams.Run{Consumer: "c1"}); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	select {
	case r := <-answer:
		if r.status != http.StatusOK || string(r.Result) != `{"y":2}` {
			t.Fatalf("the caller got %d %s, want the kept result", r.status, r.Result)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the caller got no answer: the lost reply was not recovered")
	}
	if n := metricValue(scrape(t, st.url), "streamrpc_replies_recovered_total", nil); n != 1 {
		t.Fatalf("streamrpc_replies_recovered_total = %v, want 1", n)
	}
}
