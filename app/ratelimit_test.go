package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// limitedApp serves GET /* behind e's limiter, after a stand-in for
// authentication that sets the principal from X-Principal.
func limitedApp(e *Edge) *fiber.App {
	f := fiber.New(fiber.Config{ErrorHandler: e.fiberError})
	f.Use(func(c *fiber.Ctx) error {
		if p := c.Get("X-Principal"); p != "" {
			c.Locals(localPrincipalID, p)
		}
		return c.Next()
	})
	f.Use(e.limiter.middleware)
	f.Get("/*", func(c *fiber.Ctx) error {
		scope, subj := subject(c)
		return c.SendString(scope + " " + subj)
	})
	return f
}

func TestRateLimitSubject(t *testing.T) {
	e := newTestEdge(t, Config{})
	f := limitedApp(e)
	cases := []struct {
		name      string
		principal string
		wantScope string
		wantSubj  string // prefix
	}{
		{"anonymous: by address", "", "ip", "ip:0.0.0.0"},
		{"principal: by its hash", "alice@example.com", "principal", "p:"},
		{"principal with braces", "a}b{c", "principal", "p:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tc.principal != "" {
				req.Header.Set("X-Principal", tc.principal)
			}
			res, err := f.Test(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			scope, subj, _ := strings.Cut(string(b), " ")
			if scope != tc.wantScope || !strings.HasPrefix(subj, tc.wantSubj) {
				t.Fatalf("got %q, want scope %s and subject %s…", b, tc.wantScope, tc.wantSubj)
			}
			if tc.principal != "" && (strings.ContainsAny(subj, "{}") || strings.Contains(subj, tc.principal) || len(subj) != 2+32) {
				t.Fatalf("subject %q: want the principal's hash, 32 hex digits", subj)
			}
		})
	}
}

func TestRateLimitMiddleware(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		// block, if set, is a subject refused until a minute from now.
		block      string
		path       string
		principal  string
		wantStatus int
	}{
		{"off by default", Config{}, "", "/x", "", http.StatusOK},
		{"fails open when Redis is down", Config{RateLimitIP: 1}, "", "/x", "", http.StatusOK},
		{"refused locally while blocked", Config{RateLimitIP: 1}, "ip:0.0.0.0", "/x", "", http.StatusTooManyRequests},
		{"probes are exempt", Config{RateLimitIP: 1}, "ip:0.0.0.0", "/healthz", "", http.StatusOK},
		{"static files are exempt", Config{RateLimitIP: 1}, "ip:0.0.0.0", "/ui/static/app.js", "", http.StatusOK},
		{"a principal is not its address", Config{RateLimitIP: 1, RateLimitPrincipal: 1}, "ip:0.0.0.0", "/x", "alice", http.StatusOK},
		{"principals unlimited when only IPs are", Config{RateLimitIP: 1}, "", "/x", "alice", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEdge(t, tc.cfg)
			if tc.block != "" {
				e.limiter.block(tc.block, time.Now().Add(time.Minute))
			}
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.principal != "" {
				req.Header.Set("X-Principal", tc.principal)
			}
			res, err := limitedApp(e).Test(req, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusTooManyRequests {
				return
			}
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 59 || ra > 60 {
				t.Fatalf("Retry-After %q, want 60", res.Header.Get("Retry-After"))
			}
			var body errorBody
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error == nil || body.Error.Code != streams.CodeRateLimited {
				t.Fatalf("body: %v %+v", err, body.Error)
			}
		})
	}
}

func TestBurstOrDefault(t *testing.T) {
	cases := []struct {
		name  string
		burst int
		rate  float64
		want  int
	}{
		{"set", 7, 100, 7},
		{"a second's worth", 0, 100, 100},
		{"rounded up", 0, 2.5, 3},
		{"at least one", 0, 0.1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := burstOrDefault(tc.burst, tc.rate); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}
