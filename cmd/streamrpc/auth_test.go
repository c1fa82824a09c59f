package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
)

// clearAuthEnv keeps the developer's environment out of these tests.
func clearAuthEnv(t *testing.T) {
	for _, k := range []string{"STREAMRPC_AUTH", "STREAMRPC_API_KEYS", "STREAMRPC_JWT_HS256_SECRET", "STREAMRPC_JWT_PUBLIC_KEY_FILE",
		"STREAMRPC_JWT_JWKS_FILE", "STREAMRPC_JWT_ISSUER", "STREAMRPC_JWT_AUDIENCE", "STREAMRPC_JWT_LEEWAY"} {
		t.Setenv(k, "")
	}
	// Nothing listens on port 1: the edge starts anyway (it answers 503
	// until Redis is back), which is all these tests need.
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("STREAMRPC_ADDR", "127.0.0.1:0")
	// Long enough for a request to finish against the unreachable Redis:
	// the edge listens on a free port, and under .ci/run's parallel test
	// processes a client of another test can still reach a port that was
	// just freed. (One CI run saw exit 1 here with 1 s; not reproduced.)
	t.Setenv("STREAMRPC_SHUTDOWN_GRACE", "5s")
}

func TestEdgeRefusesToStartOpen(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "nothing configured", wantErr: "no authentication configured"},
		{name: "an unknown STREAMRPC_AUTH", env: map[string]string{"STREAMRPC_AUTH": "off"}, wantErr: "STREAMRPC_AUTH"},
		{name: "none and keys", env: map[string]string{"STREAMRPC_AUTH": "none", "STREAMRPC_API_KEYS": "ci:" + strings.Repeat("ab", 32) + ":read"}, wantErr: "choose one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearAuthEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			if code := run(t.Context(), []string{"edge"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("code %d, stderr %q; want 1 and %q", code, errOut.String(), tc.wantErr)
			}
		})
	}
}

func TestStartsAndSaysWhetherAuthIsOn(t *testing.T) {
	_, hash, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		command  string
		env      map[string]string
		wantLine string // a log line before "edge listening"
	}{
		{name: "edge open on purpose warns", command: "edge", env: map[string]string{"STREAMRPC_AUTH": "none"}, wantLine: `AUTHENTICATION IS OFF`},
		{name: "edge with API keys", command: "edge", env: map[string]string{"STREAMRPC_API_KEYS": "ci:" + hash + ":read"}, wantLine: "authentication on"},
		{name: "dev open warns", command: "dev", env: map[string]string{"REDIS_URL": ""}, wantLine: `AUTHENTICATION IS OFF`},
		// dev listens on loopback unless STREAMRPC_ADDR says otherwise.
		{name: "dev listens on loopback", command: "dev", env: map[string]string{"REDIS_URL": "", "STREAMRPC_ADDR": ""}, wantLine: `addr=127.0.0.1:8080`},
		{name: "dev with API keys", command: "dev", env: map[string]string{"REDIS_URL": "", "STREAMRPC_API_KEYS": "ci:" + hash + ":read"}, wantLine: "authentication on"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearAuthEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			seen := runUntilListening(t, tc.command)
			found := false
			for _, l := range seen {
				// text (dev) or JSON (edge) logs; a warning must be a WARN line
				found = found || strings.Contains(l, tc.wantLine) && (!strings.Contains(tc.wantLine, "IS OFF") || strings.Contains(l, "WARN"))
			}
			if !found {
				t.Fatalf("no %q before listening: %q", tc.wantLine, seen)
			}
		})
	}
}

// runUntilListening runs a command until it logs "edge listening", then
// stops it (as SIGTERM would) and checks it exits 0. It returns the log
// lines up to there.
func runUntilListening(t *testing.T, command string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{command}, io.Discard, pw)
		_ = pw.Close()
	}()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test stopped reading; keep draining
			}
		}
	}()
	var seen []string
	timeout := time.After(20 * time.Second)
	for listening := false; !listening; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s stopped before listening (code %d): %q", command, <-code, seen)
			}
			seen = append(seen, l)
			listening = strings.Contains(l, "edge listening")
		case <-timeout:
			t.Fatalf("%s did not start listening: %q", command, seen)
		}
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			// What it logged while stopping says why (the writer is
			// closed once run returns, which ends lines).
			var after []string
			for l := range lines {
				after = append(after, l)
			}
			t.Fatalf("%s exited with %d after its context ended, want 0; it logged while stopping: %q", command, c, after)
		}
	case <-time.After(30 * time.Second):
		// Fail with what still runs, not with the package's 10-minute timeout.
		var dump strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Fatalf("%s did not return within 30 s after its context ended; goroutines:\n%s", command, dump.String())
	}
	return seen
}

func TestHashKey(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{name: "key and entry", args: []string{"-id", "ci", "-scopes", "call:echo.*  read"}, wantCode: 0},
		{name: "no id", args: []string{"-scopes", "read"}, wantCode: 2},
		{name: "no scopes", args: []string{"-id", "ci"}, wantCode: 2},
		{name: "bad id", args: []string{"-id", "c i", "-scopes", "read"}, wantCode: 2},
		{name: "bad scope", args: []string{"-id", "ci", "-scopes", "call:echo"}, wantCode: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(t.Context(), append([]string{"hash-key"}, tc.args...), &out, &errOut); code != tc.wantCode {
				t.Fatalf("code %d, want %d; stderr %q", code, tc.wantCode, errOut.String())
			}
			if tc.wantCode != 0 {
				return
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			key, entry := lines[1], lines[len(lines)-1]
			if !strings.HasPrefix(key, "srpc_") {
				t.Fatalf("key %q", key)
			}
			if want := "ci:" + app.HashAPIKey(key) + ":call:echo.* read"; entry != want {
				t.Fatalf("entry %q, want %q", entry, want)
			}
			if strings.Contains(entry, key) {
				t.Fatal("the entry holds the key itself")
			}
		})
	}
}
