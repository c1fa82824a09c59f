package consumers

import (
	"fmt"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

func delivery(streamID, callID string) streams.Delivery {
	return streams.Delivery{StreamID: streamID, Call: &streams.Call{ID: callID}}
}

// TestCancelHeardBeforeTheCallIsHeld breaks the gap between XREADGROUP
// handing a call over (its caller sees it running and cancels it) and the
// reader recording it: the cancel, heard in that gap, must still reach the
// call's handler.
func TestCancelHeardBeforeTheCallIsHeld(t *testing.T) {
	cases := []struct {
		name          string
		heard         []string // cancels heard before the reader records the calls
		held          []streams.Delivery
		wantCancelled []string
		wantFree      []string
	}{
		{name: "heard in the gap", heard: []string{"c1"}, held: []streams.Delivery{delivery("1-0", "c1")}, wantCancelled: []string{"c1"}},
		{name: "only the call named", heard: []string{"c1"},
			held:          []streams.Delivery{delivery("1-0", "c1"), delivery("2-0", "c2")},
			wantCancelled: []string{"c1"}, wantFree: []string{"c2"}},
		{name: "a call held elsewhere", heard: []string{"elsewhere"}, held: []streams.Delivery{delivery("1-0", "c1")}, wantFree: []string{"c1"}},
		{name: "undecodable entry", heard: []string{"c1"}, held: []streams.Delivery{{StreamID: "1-0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{}
			for _, id := range tc.heard {
				s.cancelByCaller(id)
			}
			s.hold(tc.held)
			for _, id := range tc.wantCancelled {
				if _, ok := s.cancelled.Load(id); !ok {
					t.Errorf("call %s: its cancel, heard before it was held, was lost", id)
				}
			}
			for _, id := range tc.wantFree {
				if _, ok := s.cancelled.Load(id); ok {
					t.Errorf("call %s cancelled, but nobody cancelled it", id)
				}
			}
			for _, d := range tc.held {
				if v, ok := s.running.Load(d.StreamID); !ok || v != callID(&d) {
					t.Errorf("entry %s not held: %v %v", d.StreamID, v, ok)
				}
			}
		})
	}
}

// TestCancelHeardWhileHeld: a call already held is cancelled at once, and
// its cancel is not kept as an early one.
func TestCancelHeardWhileHeld(t *testing.T) {
	s := &Server{}
	s.hold([]streams.Delivery{delivery("1-0", "c1")})
	s.cancelByCaller("c1")
	if _, ok := s.cancelled.Load("c1"); !ok {
		t.Fatal("a held call's cancel was not recorded")
	}
	if len(s.early.at) != 0 {
		t.Fatalf("a held call's cancel kept as early: %v", s.early.at)
	}
}

func TestEarlyCancelsAreBounded(t *testing.T) {
	t.Run("expired", func(t *testing.T) {
		var e earlyCancels
		t0 := time.Unix(1000, 0)
		e.addLocked("old", t0)
		if e.takeLocked("old", t0.Add(earlyCancelFor)) {
			t.Fatal("a cancel older than earlyCancelFor was taken")
		}
		e.addLocked("a", t0)
		e.addLocked("b", t0.Add(earlyCancelFor)) // "a" has expired: dropped
		if _, ok := e.at["a"]; ok || len(e.order) != 1 {
			t.Fatalf("expired cancel kept: %v %v", e.at, e.order)
		}
	})
	t.Run("at most earlyCancelMax", func(t *testing.T) {
		var e earlyCancels
		now := time.Unix(1000, 0)
		for i := range earlyCancelMax + 100 {
			e.addLocked(fmt.Sprint(i), now)
		}
		if len(e.at) > earlyCancelMax || len(e.order) > earlyCancelMax {
			t.Fatalf("%d cancels kept (%d in order), want at most %d", len(e.at), len(e.order), earlyCancelMax)
		}
		if !e.takeLocked(fmt.Sprint(earlyCancelMax+99), now) {
			t.Fatal("the newest cancel was dropped")
		}
		if e.takeLocked("0", now) {
			t.Fatal("the oldest cancel was kept past the bound")
		}
	})
	t.Run("taken once", func(t *testing.T) {
		var e earlyCancels
		now := time.Unix(1000, 0)
		e.addLocked("x", now)
		if !e.takeLocked("x", now) || e.takeLocked("x", now) {
			t.Fatal("want the cancel taken exactly once")
		}
	})
}
