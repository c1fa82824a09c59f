package integration

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStreamPartials streams one call's partials over SSE, edge and
// consumer in this process on a real Redis: partials/s for one stream, and
// what a partial adds (wall time and this process's CPU, Redis's excluded)
// over the same call sending none.
//
//	go test ./integration -run '^$' -bench BenchmarkStreamPartials -benchtime 20x
func BenchmarkStreamPartials(b *testing.B) {
	st := newStack(b, stackOptions{})
	run := func(b *testing.B, n int) (wall, cpu time.Duration, cmds float64) {
		body := fmt.Sprintf(`{"n":%d,"partial":true}`, n)
		start, cpu0, cmds0 := time.Now(), processCPU(), st.cmds.n.Load()
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodPost, st.url+"/rpc/echo/count", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/event-stream")
			res, err := httpClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			events := readSSE(b, res.Body)
			res.Body.Close()
			if len(events) != n+1 {
				b.Fatalf("%d events", len(events))
			}
		}
		return time.Since(start) / time.Duration(b.N), (processCPU() - cpu0) / time.Duration(b.N), float64(st.cmds.n.Load()-cmds0) / float64(b.N)
	}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if r := post(b, st.url, "/rpc/echo/count", []byte(`{"n":0}`), nil); r.status != 200 {
				b.Fatal(r.status)
			}
		}
	})
	var base, baseCPU time.Duration
	var baseCmds float64
	b.Run("partials=0", func(b *testing.B) { base, baseCPU, baseCmds = run(b, 0) })
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("partials=%d", n), func(b *testing.B) {
			wall, cpu, cmds := run(b, n)
			b.ReportMetric(float64(n)/wall.Seconds(), "partials/s")
			b.ReportMetric(float64(wall-base)/float64(n), "ns/partial")
			b.ReportMetric(float64(cpu-baseCPU)/float64(n), "cpu-ns/partial")
			b.ReportMetric((cmds-baseCmds)/float64(n), "redis-cmds/partial")
		})
	}
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
