package integration

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
)

// TestAuthRealCalls: with API keys configured, calls through every door
// reach the echo handler on a real Redis when the key's scopes allow them,
// and are refused (401, 403, or a per-call error on a socket that stays
// open) when they do not.
func TestAuthRealCalls(t *testing.T) {
	echoKey, echoHash, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{edge: app.Config{APIKeys: "echo-caller:" + echoHash + ":call:echo.*"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cases := []struct {
		name     string
		token    string
		method   string // handler.method
		wantCode int    // 0: the call succeeds
	}{
		{name: "no credentials", method: "echo.echo", wantCode: client.CodeUnauthenticated},
		{name: "unknown key", token: "srpc_unknown", method: "echo.echo", wantCode: client.CodeUnauthenticated},
		{name: "allowed", token: echoKey, method: "echo.echo"},
		{name: "outside the key's scopes", token: echoKey, method: "other.x", wantCode: client.CodeForbidden},
	}
	for _, tc := range cases {
		t.Run("http/"+tc.name, func(t *testing.T) {
			c := client.New(st.url, client.WithToken(tc.token))
			h, m, _ := strings.Cut(tc.method, ".")
			var out struct{ Msg string }
			err := c.Call(ctx, h, m, map[string]string{"msg": "hi"}, &out)
			checkCallErr(t, err, tc.wantCode)
			if tc.wantCode == 0 && out.Msg != "hi" {
				t.Fatalf("result %+v", out)
			}
		})
	}

	// One socket, authenticated at the upgrade: a forbidden call is answered
	// with its error and the socket goes on serving the allowed ones.
	ws, err := client.DialWS(ctx, st.url+"/ws", client.WithHeader(http.Header{"Authorization": {"Bearer " + echoKey}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	for _, tc := range cases[2:] {
		t.Run("ws/"+tc.name, func(t *testing.T) {
			var out struct{ Msg string }
			checkCallErr(t, ws.Call(ctx, tc.method, map[string]string{"msg": "hi"}, &out), tc.wantCode)
		})
	}
	if _, err := client.DialWS(ctx, st.url+"/ws"); err == nil {
		t.Fatal("a WebSocket without credentials was accepted")
	}
}

func checkCallErr(t *testing.T, err error, wantCode int) {
	t.Helper()
	if wantCode == 0 {
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		return
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != wantCode {
		t.Fatalf("err %v, want code %d", err, wantCode)
	}
}
