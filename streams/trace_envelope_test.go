package streams

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceFieldsRoundTrip: the trace context travels in tp/ts when set, and
// takes no bytes of the entry when tracing is off.
func TestTraceFieldsRoundTrip(t *testing.T) {
	cases := []struct {
		name          string
		parent, state string
		wantFields    int
	}{
		{name: "tracing off", wantFields: 9},
		{name: "traceparent", parent: testTraceParent, wantFields: 10},
		{name: "with tracestate", parent: testTraceParent, state: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", wantFields: 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := validCall()
			in.TraceParent, in.TraceState = tc.parent, tc.state
			args := in.appendFields(nil)
			if len(args) != 2*tc.wantFields {
				t.Fatalf("%d fields, want %d", len(args)/2, tc.wantFields)
			}
			out, err := decodeCall(in.Handler, asStreamValues(t, args))
			if err != nil {
				t.Fatal(err)
			}
			if out.TraceParent != tc.parent || out.TraceState != tc.state {
				t.Fatalf("trace context %q %q, want %q %q", out.TraceParent, out.TraceState, tc.parent, tc.state)
			}
		})
	}
}

// TestTraceFieldsStrict: a malformed trace context makes the entry poison,
// as any other malformed field does.
func TestTraceFieldsStrict(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]any
	}{
		{"upper case hex", map[string]any{fieldTrace: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}},
		{"zero trace id", map[string]any{fieldTrace: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}},
		{"zero span id", map[string]any{fieldTrace: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}},
		{"other version", map[string]any{fieldTrace: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{"too short", map[string]any{fieldTrace: "00-4bf92f35-00f067aa0ba902b7-01"}},
		{"empty", map[string]any{fieldTrace: ""}},
		{"not a string", map[string]any{fieldTrace: int64(1)}},
		{"state without parent", map[string]any{fieldTraceSt: "a=b"}},
		{"empty state", map[string]any{fieldTrace: testTraceParent, fieldTraceSt: ""}},
		{"state with a newline", map[string]any{fieldTrace: testTraceParent, fieldTraceSt: "a=b\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			values := asStreamValues(t, validCall().appendFields(nil))
			for k, v := range tc.set {
				values[k] = v
			}
			if _, err := decodeCall("billing", values); !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("decodeCall = %v, want ErrBadEnvelope", err)
			}
		})
	}
}

// TestReplyTiming: a reply carries its queue wait and processing time, to
// the microsecond; one without them is encoded as before.
func TestReplyTiming(t *testing.T) {
	cases := []struct {
		name  string
		reply Reply
		want  string
	}{
		{"untimed", ResultReply("x", json.RawMessage(`1`)), `11`},
		{"timed", Reply{ID: "x", OK: true, Body: json.RawMessage(`1`), QueueWait: 1500 * time.Microsecond, Processing: 2 * time.Second}, `t1500,2000000;11`},
		{"only processing", Reply{ID: "x", Body: json.RawMessage(`{"code":1}`), Processing: time.Millisecond}, `t0,1000;0{"code":1}`},
		{"negative clamped", Reply{ID: "x", OK: true, Body: json.RawMessage(`1`), QueueWait: -time.Second, Processing: time.Microsecond}, `t0,1;11`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := string(tc.reply.encode())
			if enc != tc.want {
				t.Fatalf("encode = %q, want %q", enc, tc.want)
			}
			got, err := decodeReply("x", enc)
			if err != nil {
				t.Fatal(err)
			}
			if got.OK != tc.reply.OK || string(got.Body) != string(tc.reply.Body) ||
				got.QueueWait != max(tc.reply.QueueWait, 0) || got.Processing != tc.reply.Processing {
				t.Fatalf("decoded %+v from %q", got, enc)
			}
		})
	}
}
