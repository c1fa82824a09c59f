package streams

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestEventsRoundTrip(t *testing.T) {
	evs := []Event{
		{Kind: EventPartial, Attempt: 1, Seq: 1, Data: json.RawMessage(`{"a":"x:y,1"}`)},
		{Kind: EventProgress, Attempt: 1, Seq: 2, Data: json.RawMessage(`3`)},
		{Kind: EventPartial, Attempt: 12, Seq: 300, Data: json.RawMessage("[\n1]")},
	}
	got, err := decodeEvents(string(appendEvents(nil, evs)))
	if err != nil || !reflect.DeepEqual(got, evs) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"x1,1,1:1", "p1,1:1", "p1,1,5:1", "p1,a,1:1", "p1,1,1"} {
		if _, err := decodeEvents(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestEventOrder(t *testing.T) {
	type want struct{ restart, lost, stale bool }
	cases := []struct {
		name   string
		events [][2]int // attempt, seq
		last   want
	}{
		{"in order", [][2]int{{1, 1}, {1, 2}}, want{}},
		{"gap", [][2]int{{1, 1}, {1, 3}}, want{lost: true}},
		{"repeat", [][2]int{{1, 1}, {1, 2}, {1, 2}}, want{stale: true}},
		{"restart", [][2]int{{1, 1}, {1, 2}, {2, 1}}, want{restart: true}},
		{"restart with its first lost", [][2]int{{1, 1}, {2, 2}}, want{restart: true, lost: true}},
		{"a later attempt first is no restart", [][2]int{{2, 1}}, want{}},
		{"a zombie's late event", [][2]int{{2, 1}, {1, 5}}, want{stale: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o EventOrder
			var got want
			for _, e := range tc.events {
				got.restart, got.lost, got.stale = o.Next(Event{Attempt: e[0], Seq: int64(e[1])})
			}
			if got != tc.last {
				t.Fatalf("got %+v, want %+v", got, tc.last)
			}
		})
	}
}
