package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// TestCallLogLine: at debug, a call's line carries its id as call_id, its
// names and outcome, and never its params or result; at info there is none.
func TestCallLogLine(t *testing.T) {
	const secret = "hunter2-secret"
	req := callRequest{handler: "billing", method: "charge", params: json.RawMessage(`{"card":"` + secret + `"}`)}
	cases := []struct {
		name        string
		level       slog.Level
		reply       streams.Reply
		rerr        *streams.Error
		wantOutcome string // "" : no line
	}{
		{name: "ok", level: slog.LevelDebug, reply: streams.ResultReply("ID1", json.RawMessage(`{"token":"`+secret+`"}`)), wantOutcome: "ok"},
		{name: "handler error", level: slog.LevelDebug, reply: streams.ErrorReply("ID1", streams.NewError(4001, "card declined")), wantOutcome: "handler_error"},
		{name: "timeout", level: slog.LevelDebug, rerr: streams.NewError(streams.CodeTimeout, "no reply"), wantOutcome: "timeout"},
		{name: "info level", level: slog.LevelInfo, reply: streams.ResultReply("ID1", json.RawMessage(`1`))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := newTestEdge(t, Config{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level}))})
			e.logCall("ID1", &req, tc.reply, tc.rerr, 3*time.Millisecond)
			if tc.wantOutcome == "" {
				if buf.Len() != 0 {
					t.Fatalf("logged at %s: %s", tc.level, buf.String())
				}
				return
			}
			if strings.Contains(buf.String(), secret) {
				t.Fatalf("the line logs params or result: %s", buf.String())
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			for k, want := range map[string]any{"call_id": "ID1", "handler": "billing", "method": "charge", "outcome": tc.wantOutcome} {
				if line[k] != want {
					t.Errorf("%s = %v, want %v (line %s)", k, line[k], want, buf.String())
				}
			}
		})
	}
}
