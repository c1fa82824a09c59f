package consumers

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package's tests if goroutines started by them are still
// running once they are done. go.uber.org/goleak is not a requirement in go.mod,
// so this is a small check of the same kind: it compares the goroutines running
// after the tests with those running before, waiting up to a deadline for
// stragglers to finish.
func TestMain(m *testing.M) {
	before := goroutineIDs()
	code := m.Run()
	if code == 0 {
		if leaked := waitForLeaks(before, 5*time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leakIgnored are functions of goroutines that are not leaks: those the
// runtime or a library start once per process, lazily, during the tests.
var leakIgnored = []string{
	"os/signal.signal_recv",
	"runtime.ensureSigM",
}

func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, g := range goroutineStacks() {
		ids[goroutineID(g)] = true
	}
	return ids
}

func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(strings.TrimSpace(string(buf[:n])), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineID is the "goroutine N" of a stack's first line.
func goroutineID(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}

func waitForLeaks(before map[string]bool, wait time.Duration) []string {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var leaked []string
		stacks := goroutineStacks()
		for _, g := range stacks[1:] { // stacks[0] is this goroutine
			if before[goroutineID(g)] || ignoredGoroutine(g) {
				continue
			}
			leaked = append(leaked, g)
		}
		if len(leaked) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return leaked
		}
	}
}

// ignoredGoroutine reports whether a function the goroutine is in (any frame
// of its stack, as goleak.IgnoreAnyFunction) is one of leakIgnored.
func ignoredGoroutine(stack string) bool {
	for _, line := range strings.Split(stack, "\n")[1:] {
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "created by ") {
			continue
		}
		for _, s := range leakIgnored {
			if strings.HasPrefix(line, s+"(") {
				return true
			}
		}
	}
	return false
}
