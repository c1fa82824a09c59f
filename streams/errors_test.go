package streams

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

func TestCodesUnique(t *testing.T) {
	codes := map[int]string{}
	names := map[string]int{}
	for _, c := range Codes {
		if prev, dup := codes[c.Code]; dup {
			t.Errorf("code %d is in the table twice (%s and %s)", c.Code, prev, c.Name)
		}
		codes[c.Code] = c.Name
		if prev, dup := names[c.Name]; dup {
			t.Errorf("name %q is in the table twice (codes %d and %d)", c.Name, prev, c.Code)
		}
		names[c.Name] = c.Code
		if c.Name == "" || c.Meaning == "" {
			t.Errorf("code %d has an empty name or meaning", c.Code)
		}
		if c.Status < 400 || c.Status > 599 {
			t.Errorf("code %d answers status %d, want a 4xx or 5xx", c.Code, c.Status)
		}
	}
	// Every Code* constant is in the table.
	for _, code := range []int{
		CodeParseError, CodeInvalidRequest, CodeMethodNotFound, CodeInvalidParams, CodeInternal,
		CodeHandlerError, CodeTimeout, CodeUnavailable, CodeBodyTooLarge, CodeUnsupportedMedia,
		CodeOverloaded, CodeCancelled, CodeDeadLettered, CodeNotFound, CodeIdempotencyMismatch,
		CodeUnauthenticated, CodeForbidden,
		CodeRateLimited,
	} {
		if _, ok := codes[code]; !ok {
			t.Errorf("code %d is not in Codes", code)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name string
		code int
		want int
	}{
		{name: "parse error", code: CodeParseError, want: http.StatusBadRequest},
		{name: "invalid request", code: CodeInvalidRequest, want: http.StatusBadRequest},
		{name: "method not found", code: CodeMethodNotFound, want: http.StatusNotFound},
		{name: "invalid params", code: CodeInvalidParams, want: http.StatusUnprocessableEntity},
		{name: "internal", code: CodeInternal, want: http.StatusInternalServerError},
		{name: "handler error", code: CodeHandlerError, want: http.StatusUnprocessableEntity},
		{name: "timeout", code: CodeTimeout, want: http.StatusGatewayTimeout},
		{name: "unavailable", code: CodeUnavailable, want: http.StatusServiceUnavailable},
		{name: "body too large", code: CodeBodyTooLarge, want: http.StatusRequestEntityTooLarge},
		{name: "unsupported media", code: CodeUnsupportedMedia, want: http.StatusUnsupportedMediaType},
		{name: "overloaded", code: CodeOverloaded, want: http.StatusServiceUnavailable},
		{name: "cancelled", code: CodeCancelled, want: 499},
		{name: "dead lettered", code: CodeDeadLettered, want: http.StatusBadGateway},
		{name: "not found", code: CodeNotFound, want: http.StatusNotFound},
		{name: "idempotency mismatch", code: CodeIdempotencyMismatch, want: http.StatusUnprocessableEntity},
		{name: "unauthenticated", code: CodeUnauthenticated, want: http.StatusUnauthorized},
		{name: "forbidden", code: CodeForbidden, want: http.StatusForbidden},
		{name: "rate limited", code: CodeRateLimited, want: http.StatusTooManyRequests},
		{name: "handler's own code", code: 4001, want: http.StatusUnprocessableEntity},
		{name: "zero", code: 0, want: http.StatusUnprocessableEntity},
		{name: "unused server range code", code: -32099, want: http.StatusUnprocessableEntity},
		{name: "http-looking code", code: 500, want: http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HTTPStatus(tt.code); got != tt.want {
				t.Fatalf("HTTPStatus(%d) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
	// The function and the table agree on every row.
	for _, c := range Codes {
		if got := HTTPStatus(c.Code); got != c.Status {
			t.Errorf("HTTPStatus(%d) = %d, the table says %d", c.Code, got, c.Status)
		}
	}
}

// TestUnavailableKeepsTheCause: an error marked unavailable still says what
// it was, so that a call's own deadline passing during a Redis command is a
// timeout to the edge (504), not an outage (503).
func TestUnavailableKeepsTheCause(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want []error
	}{
		{"deadline", context.DeadlineExceeded, []error{ErrUnavailable, context.DeadlineExceeded}},
		{"closed", errClosed, []error{ErrUnavailable, errClosed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := unavailable(tc.err)
			for _, w := range tc.want {
				if !errors.Is(got, w) {
					t.Errorf("unavailable(%v) = %v: not %v", tc.err, got, w)
				}
			}
		})
	}
}
