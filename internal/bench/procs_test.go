package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want time.Duration
		bad  bool
	}{
		{name: "plain", line: "123 (streamrpc) S 1 123 123 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 1 1 1", want: 3250 * time.Millisecond},
		{name: "spaces and parens in the name", line: "9 (a b) c)) R 1 9 9 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", want: 100 * time.Millisecond},
		{name: "no name", line: "9 a R 1", bad: true},
		{name: "too short", line: "9 (a) R 1 2 3", bad: true},
		{name: "not a number", line: "9 (a) R 1 9 9 0 -1 0 0 0 0 0 x 3 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(tc.line)
			if tc.bad {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestProcStatCPUGrows(t *testing.T) {
	before, err := procStatCPU(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 1 << 20 {
			x += i
		}
		after, err := procStatCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("utime+stime did not grow in 10s of spinning (%v)", before)
		}
	}
	_ = x
}

func TestParseInfoCPU(t *testing.T) {
	for _, tc := range []struct {
		name, info string
		want       time.Duration
		bad        bool
	}{
		{name: "redis 7", info: "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\nused_cpu_sys_main_thread:1.0\r\n", want: 3750 * time.Millisecond},
		{name: "missing user", info: "# CPU\r\nused_cpu_sys:1.5\r\n", bad: true},
		{name: "bad number", info: "used_cpu_sys:x\r\nused_cpu_user:1\r\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInfoCPU(tc.info)
			if tc.bad {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Proc
		bad      bool
	}{
		{name: "ok", in: "edge=42", want: Proc{Name: "edge", PID: 42}},
		{name: "no name", in: "=42", bad: true},
		{name: "no pid", in: "edge", bad: true},
		{name: "zero", in: "edge=0", bad: true},
		{name: "not a number", in: "edge=x", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProc(tc.in)
			if (err != nil) != tc.bad || got != tc.want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestParseVoluntary(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
	}{
		{name: "status", status: "Name:\tx\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t9\n", want: 1234},
		{name: "missing", status: "Name:\tx\n", want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseVoluntary(tc.status); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}
