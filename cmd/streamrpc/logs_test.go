package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestLoggerSelection: STREAMRPC_LOG_LEVEL filters, STREAMRPC_LOG_FORMAT
// overrides the subcommand's default format (json for edge and consumer,
// text for dev), and bad values are refused.
func TestLoggerSelection(t *testing.T) {
	cases := []struct {
		name, level, format, def string
		wantJSON                 bool
		wantInfo                 bool // an info line is written
		wantErr                  string
	}{
		{name: "edge default", level: "info", def: logJSON, wantJSON: true, wantInfo: true},
		{name: "dev default", level: "info", def: logText, wantInfo: true},
		{name: "text override", level: "info", format: "text", def: logJSON, wantInfo: true},
		{name: "json override", level: "info", format: "JSON", def: logText, wantJSON: true, wantInfo: true},
		{name: "warn drops info", level: "warn", def: logJSON, wantJSON: true},
		{name: "debug", level: "debug", def: logJSON, wantJSON: true, wantInfo: true},
		{name: "bad level", level: "loud", def: logJSON, wantErr: "STREAMRPC_LOG_LEVEL"},
		{name: "bad format", level: "info", format: "xml", def: logJSON, wantErr: "STREAMRPC_LOG_FORMAT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := logSettings{LogLevel: tc.level, LogFormat: tc.format}.logger(&buf, tc.def)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello", "k", "v")
			log.Warn("careful")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if want := map[bool]int{true: 2, false: 1}[tc.wantInfo]; len(lines) != want {
				t.Fatalf("%d lines, want %d: %q", len(lines), want, buf.String())
			}
			for _, line := range lines {
				isJSON := json.Valid([]byte(line))
				if isJSON != tc.wantJSON {
					t.Fatalf("line %q: JSON %v, want %v", line, isJSON, tc.wantJSON)
				}
				if !tc.wantJSON && !strings.Contains(line, "msg=") {
					t.Fatalf("line %q is not slog's text format", line)
				}
			}
		})
	}
}
