package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// readyBody is GET /readyz's body, decoded.
type readyBody struct {
	Status string                `json:"status"`
	Failed []string              `json:"failed"`
	Checks map[string]checkState `json:"checks"`
	Error  *struct {
		Code int `json:"code"`
	} `json:"error"`
}

func getReady(t *testing.T, e *Edge) (int, readyBody) {
	t.Helper()
	resp, err := e.Fiber().Test(httptest.NewRequest(http.MethodGet, "/readyz", nil), 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var b readyBody
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("/readyz body %q: %v", raw, err)
	}
	return resp.StatusCode, b
}

// TestReadinessNamesFailedChecks runs against a Redis nothing listens on:
// every answer is 503, and the body names each check that failed.
func TestReadinessNamesFailedChecks(t *testing.T) {
	cases := []struct {
		name   string
		start  bool
		drain  bool
		failed []string
	}{
		{name: "not started", failed: []string{checkReplyReader, checkRedis}},
		{name: "started", start: true, failed: []string{checkRedis}},
		{name: "draining", start: true, drain: true, failed: []string{checkDraining, checkRedis}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEdge(t, Config{})
			if tc.start {
				if err := e.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.drain {
				e.Drain()
			}
			status, b := getReady(t, e)
			if status != http.StatusServiceUnavailable || b.Status != "unavailable" || b.Error == nil || b.Error.Code != -32002 {
				t.Fatalf("status %d body %+v; want 503 unavailable with code -32002", status, b)
			}
			slices.Sort(b.Failed)
			want := slices.Sorted(slices.Values(tc.failed))
			if !slices.Equal(b.Failed, want) {
				t.Fatalf("failed checks %v, want %v", b.Failed, want)
			}
			for _, name := range []string{checkRedis, checkReplyReader, checkDraining} {
				c, ok := b.Checks[name]
				if !ok {
					t.Fatalf("check %s missing from %+v", name, b.Checks)
				}
				if c.OK == slices.Contains(want, name) || (!c.OK && c.Error == "") {
					t.Errorf("check %s = %+v", name, c)
				}
			}
		})
	}
}
