package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// load is one closed-loop run: c callers, each sending its next call as soon
// as the last one is answered, every answer checked byte for byte.
type load struct {
	url     string
	body    []byte // the JSON params
	want    []byte // {"result":<body>}
	c       int
	timeout time.Duration // per call
}

// result is what the measured part of a run saw.
type result struct {
	calls    int64         // answered correctly while measuring
	errors   int64         // failed or wrong answers while measuring
	firstErr string        // one of them
	elapsed  time.Duration // length of the measured part
	lat      []time.Duration
	loadCPU  time.Duration // this process's CPU while measuring (the load generator)
}

func (r result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// percentile is the q-quantile (0..1) of the latencies, nearest rank.
func (r result) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

// payload is a JSON object of exactly size bytes: {"data":"xxx…"}.
func payload(size int) []byte {
	n := max(0, size-len(`{"data":""}`))
	return []byte(`{"data":"` + strings.Repeat("x", n) + `"}`)
}

// check sends one call and says what, if anything, is wrong with its answer.
func (l *load) check(client *fasthttp.Client) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	l.prepare(req)
	return l.do(client, req, resp)
}

func (l *load) prepare(req *fasthttp.Request) {
	req.SetRequestURI(l.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(l.body)
}

func (l *load) do(client *fasthttp.Client, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := client.DoTimeout(req, resp, l.timeout); err != nil {
		return err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	if got := bytes.TrimSpace(resp.Body()); !bytes.Equal(got, l.want) {
		return fmt.Errorf("wrong answer: %.200s", got)
	}
	return nil
}

// run warms up for warmup, then measures for d; snap is called right before
// and right after the measured part (to read every process's CPU).
func (l *load) run(ctx context.Context, warmup, d time.Duration, snap func()) result {
	client := &fasthttp.Client{MaxConnsPerHost: l.c, MaxIdleConnDuration: time.Minute}
	var (
		phase atomic.Int32 // 0 warm-up, 1 measuring, 2 stopping
		calls atomic.Int64
		errs  atomic.Int64
		mu    sync.Mutex
		first string
		lats  = make([][]time.Duration, l.c)
		wg    sync.WaitGroup
	)
	for i := range l.c {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			l.prepare(req)
			for {
				p := phase.Load()
				if p == 2 || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := l.do(client, req, resp)
				took := time.Since(t0)
				if phase.Load() != 1 || p != 1 {
					continue // not wholly inside the measured part
				}
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						first = err.Error()
						mu.Unlock()
					}
					continue
				}
				calls.Add(1)
				lats[i] = append(lats[i], took)
			}
		})
	}
	sleep(ctx, warmup)
	snap()
	cpu0 := selfCPU()
	phase.Store(1)
	t0 := time.Now()
	sleep(ctx, d)
	phase.Store(2)
	elapsed := time.Since(t0)
	cpu1 := selfCPU()
	snap()
	wg.Wait()
	client.CloseIdleConnections()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	return result{calls: calls.Load(), errors: errs.Load(), firstErr: first, elapsed: elapsed,
		lat: all, loadCPU: cpu1 - cpu0}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
