package app

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

func ev(kind streams.EventKind, attempt int, seq int64, data string) streams.Event {
	return streams.Event{Kind: kind, Attempt: attempt, Seq: seq, Data: json.RawMessage(data)}
}

// TestEventSink: partials are all kept, unwritten progress is coalesced, a
// later attempt is announced with a restart, and a gap marks the stream lost
// (until a restart starts over).
func TestEventSink(t *testing.T) {
	p, g := streams.EventPartial, streams.EventProgress
	cases := []struct {
		name  string
		push  [][]streams.Event
		items string // kind:data, restart:attempt
		lost  bool
	}{
		{"partials kept, progress coalesced", [][]streams.Event{
			{ev(g, 1, 1, "1"), ev(g, 1, 2, "2")}, {ev(p, 1, 3, "a"), ev(g, 1, 4, "3"), ev(g, 1, 5, "4"), ev(p, 1, 6, "b")},
		}, "g:2 p:a g:4 p:b", false},
		{"restart", [][]streams.Event{{ev(p, 1, 1, "a")}, {ev(p, 2, 1, "a2")}}, "p:a r:2 p:a2", false},
		{"gap", [][]streams.Event{{ev(p, 1, 1, "a"), ev(p, 1, 3, "c")}}, "p:a p:c", true},
		{"a restart clears a gap", [][]streams.Event{{ev(p, 1, 1, "a"), ev(p, 1, 3, "c")}, {ev(p, 2, 1, "x")}}, "p:a p:c r:2 p:x", false},
		{"a zombie's late events are dropped", [][]streams.Event{{ev(p, 2, 1, "x")}, {ev(p, 1, 9, "old")}}, "p:x", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newEventSink()
			for _, evs := range tc.push {
				s.push(evs)
			}
			items, lost := s.take()
			var got []string
			for _, it := range items {
				if it.restart {
					got = append(got, "r:"+strconv.Itoa(it.ev.Attempt))
					continue
				}
				got = append(got, string(it.ev.Kind)+":"+string(it.ev.Data))
			}
			if strings.Join(got, " ") != tc.items || lost != tc.lost {
				t.Fatalf("items %q lost %v, want %q lost %v", strings.Join(got, " "), lost, tc.items, tc.lost)
			}
		})
	}
}

func TestAppendSSE(t *testing.T) {
	b := appendSSE(nil, streamItem{ev: ev(streams.EventPartial, 1, 2, "{\"a\":\n1}")})
	if got, want := string(b), "id: 1-2\nevent: partial\ndata: {\"a\":\ndata: 1}\n\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	b = appendSSE(nil, streamItem{ev: streams.Event{Attempt: 3}, restart: true})
	if got, want := string(b), "event: restart\ndata: {\"attempt\":3}\n\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	b = appendSSEOutcome(nil, "h.1", streams.ResultReply("h.1", json.RawMessage(`1`)), nil, true)
	if !strings.HasPrefix(string(b), "event: error\ndata: {\"code\":-32002") {
		t.Fatalf("a lost stream's outcome: %q", b)
	}
}
