package integration

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
)

// BenchmarkScheduledLateness schedules 500 calls due over 3 s while 16
// callers keep the same edge and Redis busy with plain calls to another
// handler, and reports how late each scheduled call started after its time
// (the forwarder's lateness, plus the read and dispatch): p50, p90, p99, max
// in ms. Run: go test ./integration -run '^$' -bench ScheduledLateness -benchtime 1x
func BenchmarkScheduledLateness(b *testing.B) {
	st := newStack(b, stackOptions{})
	var times startTimes
	st.startConsumer(b, consumers.Config{Handler: "stamped", Concurrency: 64}, times.mux())
	for range b.N {
		const n, spread = 500, 3 * time.Second
		start := time.Now().Add(time.Second)
		due := make([]time.Time, n)
		stop := make(chan struct{})
		var load sync.WaitGroup
		var loadCalls atomic.Int64
		for range 16 { // the load: plain sync calls to echo
			load.Add(1)
			go func() {
				defer load.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					post(b, st.url, "/rpc/echo/echo", []byte(`{"load":1}`), nil)
					loadCalls.Add(1)
				}
			}()
		}
		var send sync.WaitGroup
		for w := range 8 {
			send.Add(1)
			go func() {
				defer send.Done()
				for i := w; i < n; i += 8 {
					due[i] = start.Add(spread * time.Duration(i) / n)
					r := post(b, st.url, "/rpc/stamped/run", []byte(fmt.Sprintf(`{"k":"%d"}`, i)), map[string]string{
						"Prefer": "respond-async", "Schedule-At": due[i].UTC().Format(time.RFC3339Nano)})
					if r.status != http.StatusAccepted {
						b.Errorf("call %d: %d %s", i, r.status, r.body)
					}
				}
			}()
		}
		send.Wait()
		if time.Now().After(start) {
			b.Fatalf("sending took past the first due time")
		}
		var late []float64
		waitUntil(b, spread+30*time.Second, func() error {
			late = late[:0]
			for i := range n {
				at, ok := times.get(fmt.Sprint(i))
				if !ok {
					return fmt.Errorf("call %d not started", i)
				}
				late = append(late, float64(at.Sub(due[i]))/float64(time.Millisecond))
			}
			return nil
		})
		close(stop)
		load.Wait()
		slices.Sort(late)
		pct := func(p float64) float64 { return late[int(p*float64(len(late)-1))] }
		b.ReportMetric(pct(0.5), "p50-ms")
		b.ReportMetric(pct(0.9), "p90-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(late[len(late)-1], "max-ms")
		b.ReportMetric(late[0], "min-ms")
		b.ReportMetric(float64(loadCalls.Load())/(spread+time.Second).Seconds(), "load-calls/s")
	}
}

// BenchmarkRateLimitAccuracy sets a handler's rate through the API (-rate
// per second, 200 by default here), queues 5 s worth of async calls for two
// consumers (64 slots each) and reports the achieved rate between the first
// and last start, and the most starts seen in any one-second window.
// Run: go test ./integration -run '^$' -bench RateLimitAccuracy -benchtime 1x
func BenchmarkRateLimitAccuracy(b *testing.B) {
	const rate, n = 200, 1000
	st := newStack(b, stackOptions{noConsume: true})
	var times startTimes
	mux := times.mux()
	st.register(b, consumers.Config{Handler: "stamped"}, mux)
	if r := putHandlerLimits(b, st.url, "stamped", fmt.Sprintf(`{"rate":%d}`, rate)); r.status != http.StatusOK {
		b.Fatalf("PUT limits: %d %s", r.status, r.body)
	}
	// Started after the PUT: their first heartbeat, before their first
	// read, tells them of the limit.
	st.startConsumer(b, consumers.Config{Handler: "stamped", Concurrency: 64}, mux)
	st.startConsumer(b, consumers.Config{Handler: "stamped", Concurrency: 64}, mux)
	for range b.N {
		var send sync.WaitGroup
		for w := range 8 {
			send.Add(1)
			go func() {
				defer send.Done()
				for i := w; i < n; i += 8 {
					if r := post(b, st.url, "/rpc/stamped/run", []byte(fmt.Sprintf(`{"k":"%d"}`, i)), preferAsync); r.status != http.StatusAccepted {
						b.Errorf("call %d: %d %s", i, r.status, r.body)
					}
				}
			}()
		}
		send.Wait()
		var at []time.Time
		waitUntil(b, 60*time.Second, func() error {
			at = at[:0]
			for i := range n {
				t, ok := times.get(fmt.Sprint(i))
				if !ok {
					return fmt.Errorf("call %d not started", i)
				}
				at = append(at, t)
			}
			return nil
		})
		slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		most := 0
		for i, j := 0, 0; i < len(at); i++ {
			for at[i].Sub(at[j]) >= time.Second {
				j++
			}
			most = max(most, i-j+1)
		}
		b.ReportMetric(float64(n-1)/at[n-1].Sub(at[0]).Seconds(), "starts/s")
		b.ReportMetric(float64(most), "max-starts-in-1s")
		b.ReportMetric(rate, "limit/s")
	}
}
