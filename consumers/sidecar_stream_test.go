package consumers

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// recorded is a streamer that keeps what it is given.
type recorded struct{ events []string }

func (r *recorded) Partial(v any) error {
	r.events = append(r.events, "partial "+string(v.(json.RawMessage)))
	return nil
}

func (r *recorded) Progress(v any) error {
	r.events = append(r.events, "progress "+string(v.(json.RawMessage)))
	return nil
}

func TestRelayStream(t *testing.T) {
	cases := []struct {
		name, kind, body string
		events           []string
		result           string
		code             int // of the error, 0 for a result
	}{
		{"ndjson: the last line is the result", streamNDJSON, "{\"i\":1}\n\n{\"i\":2}\n{\"done\":true}\n",
			[]string{`partial {"i":1}`, `partial {"i":2}`}, `{"done":true}`, 0},
		{"ndjson: nothing is null", streamNDJSON, "", nil, `null`, 0},
		{"sse: unnamed events, the last is the result, no blank line at the end", streamSSE, "data: 1\n\n: a comment\ndata: 2\n\ndata: 3",
			[]string{`partial 1`, `partial 2`}, `3`, 0},
		{"sse: named partials go at once, progress in between, then result", streamSSE,
			"event: partial\ndata: 1\n\nevent: progress\ndata: {\"pct\":50}\n\nevent: partial\ndata: 2\n\nevent: result\ndata: {\"n\":2}\n\ndata: ignored\n\n",
			[]string{`partial 1`, `progress {"pct":50}`, `partial 2`}, `{"n":2}`, 0},
		{"sse: data on several lines is one value", streamSSE, "event: result\ndata: {\"a\":\ndata: 1}\n\n", nil, "{\"a\":\n1}", 0},
		{"sse: an error event ends it", streamSSE, "data: 1\n\nevent: error\ndata: {\"code\":1001,\"message\":\"no\"}\n\n", nil, "", 1001},
		{"sse: an error event without a code", streamSSE, "event: error\ndata: {\"message\":\"no\"}\n\n", nil, "", CodeHandlerError},
		{"an item that is not JSON", streamNDJSON, "{\"i\":1}\nnot json\n", nil, "", CodeInternal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r recorded
			res, err := relayStream(&r, tc.kind, strings.NewReader(tc.body))
			if !reflect.DeepEqual(r.events, tc.events) {
				t.Errorf("events %q, want %q", r.events, tc.events)
			}
			if tc.code != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.code {
					t.Fatalf("err %v, want code %d", err, tc.code)
				}
				return
			}
			if err != nil || string(res.(json.RawMessage)) != tc.result {
				t.Fatalf("result %s, %v; want %s", res, err, tc.result)
			}
		})
	}
}
