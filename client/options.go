package client

import (
	"net/http"
	"strconv"
	"time"
)

// CallOption sets one of a call's flow-control headers (docs/flow-control.md).
type CallOption func(h http.Header)

// ScheduleAt runs an async call (CallAsync) at t instead of now: its state is
// "scheduled" until then, and it can be cancelled until it starts.
func ScheduleAt(t time.Time) CallOption {
	return func(h http.Header) { h.Set("Schedule-At", t.UTC().Format(time.RFC3339Nano)) }
}

// ScheduleIn runs an async call (CallAsync) d from now.
func ScheduleIn(d time.Duration) CallOption {
	return func(h http.Header) { h.Set("Schedule-In", strconv.FormatFloat(d.Seconds(), 'f', 3, 64)) }
}

// Priority sets the call's priority: "high", "normal" or "low" (header
// Streamrpc-Priority). Consumers take high calls first without starving low
// ones; the edge answers 400 for another value.
func Priority(p string) CallOption {
	return func(h http.Header) { h.Set("Streamrpc-Priority", p) }
}

func applyOptions(h http.Header, opts []CallOption) {
	for _, o := range opts {
		o(h)
	}
}
