package main

import (
	"fmt"
	"io"
	"runtime"
	"syscall"
	"time"
)

// selfCPU is this process's CPU time so far (the load generator's).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// columns of the CPU table, in order; a process a peer lacks shows "—".
var columns = []struct{ key, title string }{
	{"edge", "edge"}, {"worker", "worker / consumer"}, {"nats", "nats-server"}, {"redis", "Redis"},
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// perCall is cpu divided over the calls answered.
func perCall(cpu time.Duration, calls int64) time.Duration {
	if calls == 0 {
		return 0
	}
	return cpu / time.Duration(calls)
}

func total(cpu map[string]time.Duration) time.Duration {
	var t time.Duration
	for _, v := range cpu {
		t += v
	}
	return t
}

func printTables(w io.Writer, o options, rows []row) {
	var base *row
	for i := range rows {
		if rows[i].p.name == "echo" {
			base = &rows[i]
		}
	}
	ratio := func(v, b float64) string {
		if base == nil || b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", v/b)
	}
	fmt.Fprintf(w, "\n%s, %d-byte JSON, %d in flight (closed loop), %v measured after %v warm-up, GOMAXPROCS %d, %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.size, o.c, o.d, o.warmup, runtime.GOMAXPROCS(0),
		"one redis-server")
	fmt.Fprintln(w, "| system (same Fiber edge, same load) | calls/s | ratio | p50 | p99 | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		b := 0.0
		if base != nil {
			b = base.hot.rate()
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d |\n", r.p.label, r.hot.rate(), ratio(r.hot.rate(), b),
			ms(r.hot.percentile(0.5)), ms(r.hot.percentile(0.99)), r.hot.errors)
	}
	firstErrs(w, rows, func(r row) result { return r.hot })

	fmt.Fprintf(w, "\nCPU per answered call at %d in flight, per process (/proc/PID/stat; Redis: INFO cpu):\n\n", o.c)
	fmt.Fprint(w, "| system |")
	for _, c := range columns {
		fmt.Fprintf(w, " %s |", c.title)
	}
	fmt.Fprintln(w, " all | × echo's | load generator |")
	fmt.Fprint(w, "|---|")
	for range columns {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |", r.p.name)
		for _, c := range columns {
			if v, ok := r.cpu[c.key]; ok {
				fmt.Fprintf(w, " %s |", us(perCall(v, r.hot.calls)))
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		all := perCall(total(r.cpu), r.hot.calls)
		b := 0.0
		if base != nil {
			b = float64(perCall(total(base.cpu), base.hot.calls))
		}
		fmt.Fprintf(w, " %s | %s | %s |\n", us(all), ratio(float64(all), b), us(perCall(r.hot.loadCPU, r.hot.calls)))
	}

	if o.d1 <= 0 {
		return
	}
	fmt.Fprintf(w, "\nOne call at a time (c=1, %v measured):\n\n", o.d1)
	fmt.Fprintln(w, "| system | p50 | × echo's p50 | p99 | calls/s | CPU/call, all processes | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		b := 0.0
		if base != nil {
			b = float64(base.lone.percentile(0.5))
		}
		p50 := r.lone.percentile(0.5)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.0f | %s | %d |\n", r.p.name, ms(p50), ratio(float64(p50), b),
			ms(r.lone.percentile(0.99)), r.lone.rate(), us(perCall(total(r.loneC), r.lone.calls)), r.lone.errors)
	}
	firstErrs(w, rows, func(r row) result { return r.lone })
}

func firstErrs(w io.Writer, rows []row, pick func(row) result) {
	for _, r := range rows {
		if res := pick(r); res.errors > 0 {
			fmt.Fprintf(w, "\n%s: %d errors, e.g. %s\n", r.p.name, res.errors, res.firstErr)
		}
	}
}

// span is the range of one figure over the runs.
type span struct {
	lo, hi float64
	n      int
}

func (s *span) add(v float64) {
	if s.n == 0 || v < s.lo {
		s.lo = v
	}
	if s.n == 0 || v > s.hi {
		s.hi = v
	}
	s.n++
}

func (s span) format(f string) string {
	if s.n == 0 {
		return "—"
	}
	a, b := fmt.Sprintf(f, s.lo), fmt.Sprintf(f, s.hi)
	if a == b {
		return a
	}
	return a + "–" + b
}

// printRanges prints, for each peer, the range over the runs of the figures
// that matter: throughput and its ratio to the echo's in the same run, CPU per
// call (all processes and each) and its ratio, and the c=1 p50 ratio.
func printRanges(w io.Writer, o options, runs [][]row) {
	type figures struct {
		rate, ratio, cpu, cpuRatio, p50, p50Ratio span
		col                                       map[string]*span
	}
	var order []string
	by := map[string]*figures{}
	for _, rows := range runs {
		var base *row
		for i := range rows {
			if rows[i].p.name == "echo" {
				base = &rows[i]
			}
		}
		for _, r := range rows {
			f := by[r.p.name]
			if f == nil {
				f = &figures{col: map[string]*span{}}
				by[r.p.name] = f
				order = append(order, r.p.name)
			}
			all := float64(perCall(total(r.cpu), r.hot.calls)) / float64(time.Microsecond)
			f.rate.add(r.hot.rate())
			f.cpu.add(all)
			for k, v := range r.cpu {
				if f.col[k] == nil {
					f.col[k] = &span{}
				}
				f.col[k].add(float64(perCall(v, r.hot.calls)) / float64(time.Microsecond))
			}
			p50 := float64(r.lone.percentile(0.5)) / float64(time.Microsecond)
			if o.d1 > 0 {
				f.p50.add(p50)
			}
			if base == nil {
				continue
			}
			f.ratio.add(r.hot.rate() / base.hot.rate())
			if b := float64(perCall(total(base.cpu), base.hot.calls)) / float64(time.Microsecond); b > 0 {
				f.cpuRatio.add(all / b)
			}
			if b := float64(base.lone.percentile(0.5)) / float64(time.Microsecond); o.d1 > 0 && b > 0 {
				f.p50Ratio.add(p50 / b)
			}
		}
	}
	fmt.Fprintf(w, "\nRanges over %d runs (each ratio taken within its run):\n\n", len(runs))
	fmt.Fprint(w, "| system | calls/s | ratio |")
	for _, c := range columns {
		fmt.Fprintf(w, " %s µs/call |", c.title)
	}
	fmt.Fprintln(w, " all µs/call | × echo's | c=1 p50 µs | × echo's |")
	fmt.Fprint(w, "|---|---:|---:|")
	for range columns {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|---:|---:|")
	for _, name := range order {
		f := by[name]
		fmt.Fprintf(w, "| %s | %s | %s |", name, f.rate.format("%.0f"), f.ratio.format("%.2f"))
		for _, c := range columns {
			if s := f.col[c.key]; s != nil {
				fmt.Fprintf(w, " %s |", s.format("%.0f"))
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		fmt.Fprintf(w, " %s | %s | %s | %s |\n", f.cpu.format("%.0f"), f.cpuRatio.format("%.1f"),
			f.p50.format("%.0f"), f.p50Ratio.format("%.1f"))
	}
}
