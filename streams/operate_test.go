package streams

import (
	"testing"
	"time"
)

func TestPlaceOperatorEvents(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(1_700_000_000+int64(s), 0) }
	cases := []struct {
		name string
		in   []StoryEvent
		want []string
	}{
		{"none", []StoryEvent{{Event: "queued", Time: at(0)}, {Event: "finished", Time: at(2)}}, []string{"queued", "finished"}},
		{"a note on a running call, written before its attempt's events",
			[]StoryEvent{{Event: EventCancelRequested, Time: at(3)}, {Event: "queued", Time: at(0)}, {Event: "started", Time: at(1)}, {Event: "finished", Time: at(4)}},
			[]string{"queued", "started", EventCancelRequested, "finished"}},
		{"the others keep their order whatever their clocks",
			[]StoryEvent{{Event: "queued", Time: at(5)}, {Event: "started", Time: at(1)}, {Event: EventRunNow, Time: at(9)}},
			[]string{"queued", "started", EventRunNow}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := placeOperatorEvents(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("%+v", got)
			}
			for i := range got {
				if got[i].Event != c.want[i] {
					t.Fatalf("event %d is %s, want %v", i, got[i].Event, c.want)
				}
			}
		})
	}
}
