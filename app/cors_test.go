package app

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/streams"
)

func TestCORSOriginsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, list string
		ok         bool
	}{
		{"empty", "", true},
		{"star", "*", true},
		{"list", "https://app.example.com, http://localhost:5173", true},
		{"trailing slash", "https://app.example.com/", true},
		{"path", "https://app.example.com/app", false},
		{"no scheme", "app.example.com", false},
		{"ftp", "ftp://app.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{CORSOrigins: tc.list}.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	const listed, foreign = "https://app.example.com", "https://evil.example.net"
	_, entry := newKey(t, "ci", "call:* read")
	edges := map[string]*Edge{
		"listed":      newTestEdge(t, Config{CORSOrigins: "http://other.test, " + listed}),
		"star":        newTestEdge(t, Config{CORSOrigins: "*"}),
		"none":        newTestEdge(t, Config{}),
		"listed+auth": newTestEdge(t, Config{CORSOrigins: listed, APIKeys: entry}),
	}
	do := func(t *testing.T, e *Edge, method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := e.Fiber().Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	preflight := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "content-type, idempotency-key"}
	}

	t.Run("preflight", func(t *testing.T) {
		for _, tc := range []struct {
			name, edge, path, origin string
			status                   int
			allowOrigin              string
		}{
			{"listed origin on /rpc", "listed", "/rpc/echo/echo", listed, 204, listed},
			{"listed origin on /jsonrpc", "listed", "/jsonrpc", listed, 204, listed},
			{"listed origin on /events", "listed", "/events", listed, 204, listed},
			{"listed origin on /handlers", "listed", "/handlers/echo/dead-letters/replay", listed, 204, listed},
			{"listed origin, auth on (no credential needed)", "listed+auth", "/rpc/echo/echo", listed, 204, listed},
			{"star", "star", "/rpc/echo/echo", foreign, 204, "*"},
			{"foreign origin", "listed", "/rpc/echo/echo", foreign, 403, ""},
			{"foreign origin, auth on", "listed+auth", "/rpc/echo/echo", foreign, 403, ""},
			{"empty list", "none", "/rpc/echo/echo", listed, 403, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := do(t, edges[tc.edge], http.MethodOptions, tc.path, preflight(tc.origin))
				if res.StatusCode != tc.status {
					b, _ := io.ReadAll(res.Body)
					t.Fatalf("status %d (%s), want %d", res.StatusCode, b, tc.status)
				}
				if got := res.Header.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
					t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allowOrigin)
				}
				if res.Header.Get("Access-Control-Allow-Credentials") != "" {
					t.Error("Access-Control-Allow-Credentials sent")
				}
				if tc.status == 204 {
					h := res.Header.Get("Access-Control-Allow-Headers")
					for _, want := range []string{"Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "Prefer",
						"Request-Timeout", "traceparent", "tracestate", "X-Request-Id"} {
						if !strings.Contains(h, want) {
							t.Errorf("Access-Control-Allow-Headers %q lacks %s", h, want)
						}
					}
					if m := res.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "DELETE") {
						t.Errorf("Access-Control-Allow-Methods %q", m)
					}
					return
				}
				var body struct{ Error *streams.Error }
				b, _ := io.ReadAll(res.Body)
				if json.Unmarshal(b, &body) != nil || body.Error == nil || body.Error.Code != streams.CodeForbidden {
					t.Fatalf("body %s, want a forbidden error", b)
				}
			})
		}
	})

	t.Run("actual responses", func(t *testing.T) {
		for _, tc := range []struct {
			name, edge, method, path, origin string
			allowOrigin                      string
		}{
			{"listed origin, 503 of a call", "listed", "GET", "/rpc/calls/" + streams.NewCallID("echo"), listed, listed},
			{"listed origin, 404", "listed", "GET", "/nope", listed, listed},
			{"listed origin, 401 with auth on", "listed+auth", "POST", "/rpc/echo/echo", listed, listed},
			{"star", "star", "GET", "/healthz", foreign, "*"},
			{"foreign origin", "listed", "GET", "/healthz", foreign, ""},
			{"no origin", "listed", "GET", "/healthz", "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hdr := map[string]string{}
				if tc.origin != "" {
					hdr["Origin"] = tc.origin
				}
				res := do(t, edges[tc.edge], tc.method, tc.path, hdr)
				if got := res.Header.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
					t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allowOrigin)
				}
				if !strings.Contains(res.Header.Get("Vary"), "Origin") {
					t.Errorf("Vary %q lacks Origin", res.Header.Get("Vary"))
				}
				expose := res.Header.Get("Access-Control-Expose-Headers")
				if tc.allowOrigin == "" {
					if expose != "" {
						t.Errorf("Access-Control-Expose-Headers %q sent to an origin not allowed", expose)
					}
					return
				}
				for _, want := range []string{"X-Request-Id", "Location", "Retry-After"} {
					if !strings.Contains(expose, want) {
						t.Errorf("Access-Control-Expose-Headers %q lacks %s", expose, want)
					}
				}
				if res.Header.Get("Access-Control-Allow-Credentials") != "" {
					t.Error("Access-Control-Allow-Credentials sent")
				}
			})
		}
	})

	t.Run("the dashboard never gets CORS headers", func(t *testing.T) {
		for _, tc := range []struct{ name, edge, method, path string }{
			{"overview, star", "star", "GET", "/ui"},
			{"overview, listed", "listed", "GET", "/ui/"},
			{"a page, upper case", "star", "GET", "/UI/handlers/echo"},
			{"sign-in preflight, auth on", "listed+auth", "OPTIONS", "/ui/sign-in"},
			{"sign-in post, auth on", "listed+auth", "POST", "/ui/sign-in"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := do(t, edges[tc.edge], tc.method, tc.path, preflight(listed))
				for k := range res.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("%s %s answered %s: %q", tc.method, tc.path, k, res.Header.Get(k))
					}
				}
			})
		}
	})
}

func TestWSOrigin(t *testing.T) {
	const listed = "https://app.example.com"
	open := serve(t, newTestEdge(t, Config{Auth: AuthNone, CORSOrigins: listed}))
	dev := serve(t, newTestEdge(t, Config{Auth: AuthNone, AllowLocalOrigins: true}))
	star := serve(t, newTestEdge(t, Config{Auth: AuthNone, CORSOrigins: "*"}))
	host := strings.TrimPrefix(open, "http://")
	for _, tc := range []struct {
		name, base, origin string
		ok                 bool
	}{
		{"no Origin (not a browser)", open, "", true},
		{"same origin", open, open, true},
		{"same origin, https (TLS ended by a proxy)", open, "https://" + host, true},
		{"listed", open, listed, true},
		{"listed, other case", open, "HTTPS://APP.example.com", true},
		{"foreign", open, "https://evil.example.net", false},
		{"listed host, other scheme", open, "http://app.example.com", false},
		{"localhost, not dev", open, "http://localhost:3000", false},
		{"null origin", open, "null", false},
		{"dev: localhost", dev, "http://localhost:3000", true},
		{"dev: 127.0.0.1", dev, "http://127.0.0.1:5173", true},
		{"dev: https localhost", dev, "https://localhost:3000", false},
		{"dev: foreign", dev, "https://evil.example.net", false},
		{"dev: localhost lookalike", dev, "http://localhost.evil.example.net", false},
		{"star", star, "https://evil.example.net", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			conn, res, err := fastws.DefaultDialer.Dial(wsURL(tc.base), hdr)
			if conn != nil {
				t.Cleanup(func() { _ = conn.Close() })
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
				t.Fatalf("err %v, response %v; want a 403", err, res)
			}
			var body struct{ Error *streams.Error }
			b, _ := io.ReadAll(res.Body)
			if json.Unmarshal(b, &body) != nil || body.Error == nil || body.Error.Code != streams.CodeForbidden {
				t.Fatalf("body %s, want a forbidden error", b)
			}
		})
	}
}
