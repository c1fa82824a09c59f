package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamrpc/streamrpc/streams"
)

func signInRequest(cred, next string, header map[string]string) *http.Request {
	form := url.Values{"credential": {cred}, "next": {next}}
	req := httptest.NewRequest("POST", "/ui/sign-in", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	return nil
}

func TestUISignIn(t *testing.T) {
	f := newAuthFixture(t)
	exp := time.Now().Add(20 * time.Minute).Truncate(time.Second)
	jwtReader := sign(t, jwt.SigningMethodHS256, []byte(hs256Secret), "", with(goodClaims("read"), "exp", exp.Unix()))
	cases := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantLoc    string
		wantCookie bool
		wantSecure bool
		wantExpiry time.Time // zero: about 12h
		wantText   string
	}{
		{name: "page without a session goes to sign-in", req: httptest.NewRequest("GET", "/ui/handlers/echo?x=1", nil),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/sign-in?next=" + url.QueryEscape("/ui/handlers/echo?x=1")},
		{name: "the sign-in page", req: httptest.NewRequest("GET", "/ui/sign-in?next=/ui/calls/x", nil),
			wantStatus: http.StatusOK, wantText: `name="next" value="/ui/calls/x"`},
		{name: "assets are public", req: httptest.NewRequest("GET", "/ui/static/app.css", nil), wantStatus: http.StatusOK},
		{name: "unknown key", req: signInRequest("srpc_nope", "/ui/", nil), wantStatus: http.StatusUnauthorized, wantText: "unknown API key"},
		{name: "empty", req: signInRequest("", "/ui/", nil), wantStatus: http.StatusUnauthorized, wantText: "paste an API key"},
		{name: "key without read", req: signInRequest(f.keys.echoCaller, "/ui/", nil), wantStatus: http.StatusUnauthorized, wantText: "read scope"},
		{name: "posted from another site", req: signInRequest(f.keys.reader, "/ui/", map[string]string{"Sec-Fetch-Site": "cross-site"}),
			wantStatus: http.StatusUnauthorized, wantText: "another site"},
		{name: "API key", req: signInRequest(f.keys.reader, "/ui/handlers/echo", map[string]string{"Sec-Fetch-Site": "same-origin"}),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/handlers/echo", wantCookie: true},
		{name: "behind TLS the cookie is Secure", req: signInRequest(f.keys.reader, "/ui/", map[string]string{"X-Forwarded-Proto": "https"}),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/", wantCookie: true, wantSecure: true},
		{name: "JWT: the cookie ends with the token", req: signInRequest(jwtReader, "/ui/", nil),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/", wantCookie: true, wantExpiry: exp},
		{name: "no open redirect", req: signInRequest(f.keys.reader, "https://evil.test/", nil),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/", wantCookie: true},
		{name: "no open redirect through //", req: signInRequest(f.keys.reader, "//evil.test/ui/", nil),
			wantStatus: http.StatusSeeOther, wantLoc: "/ui/", wantCookie: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := send(t, f.e, tc.req)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %.300s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantLoc != "" && resp.Header.Get("Location") != tc.wantLoc {
				t.Fatalf("Location %q, want %q", resp.Header.Get("Location"), tc.wantLoc)
			}
			if tc.wantText != "" && !strings.Contains(string(body), tc.wantText) {
				t.Fatalf("the page does not say %q: %.600s", tc.wantText, body)
			}
			c := sessionCookie(resp)
			if !tc.wantCookie {
				if c != nil {
					t.Fatalf("a session cookie was set: %+v", c)
				}
				return
			}
			if c == nil {
				t.Fatal("no session cookie")
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tc.wantSecure {
				t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Secure=%v", c, tc.wantSecure)
			}
			want := tc.wantExpiry
			if want.IsZero() {
				want = time.Now().Add(sessionMaxAge)
			}
			if d := c.Expires.Sub(want); d < -5*time.Second || d > 5*time.Second {
				t.Fatalf("cookie expires %s, want about %s", c.Expires, want)
			}
		})
	}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// TestUISessionAndCSRF: signed in, the pages and the JSON API work with the
// cookie; unsafe requests with the cookie need the page's CSRF token.
func TestUISessionAndCSRF(t *testing.T) {
	f := newAuthFixture(t)
	resp := send(t, f.e, signInRequest(f.keys.admin, "/ui/", nil))
	cookie := sessionCookie(resp)
	if cookie == nil {
		t.Fatalf("sign-in answered %d without a cookie", resp.StatusCode)
	}

	// A page (503: its Redis is unreachable, but it is rendered, not redirected).
	req := httptest.NewRequest("GET", "/ui/", nil)
	req.AddCookie(cookie)
	resp = send(t, f.e, req)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		t.Fatal("signed in, the page still redirects to sign-in")
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Fatalf("X-Frame-Options %q, want DENY", got)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q lacks frame-ancestors 'none'", csp)
	}
	if !strings.Contains(string(body), `action="/ui/sign-out"`) {
		t.Fatal("the page has no sign-out")
	}
	m := csrfMeta.FindSubmatch(body)
	if m == nil {
		t.Fatalf("the page carries no CSRF token: %.500s", body)
	}
	token := string(m[1])

	replay := "/handlers/echo/dead-letters/1-1/replay"
	cases := []struct {
		name       string
		method     string
		path       string
		cookie     bool
		header     map[string]string
		wantStatus int
		wantCode   int
	}{
		{name: "JSON API with the cookie", method: "GET", path: "/handlers", cookie: true, wantStatus: passed},
		{name: "replay with the cookie, no CSRF header", method: "POST", path: replay, cookie: true, wantStatus: forbiddenSt, wantCode: streams.CodeForbidden},
		{name: "replay with the cookie, wrong CSRF header", method: "POST", path: replay, cookie: true, header: map[string]string{CSRFHeader: "x" + token}, wantStatus: forbiddenSt},
		{name: "replay with the cookie and CSRF header", method: "POST", path: replay, cookie: true, header: map[string]string{CSRFHeader: token}, wantStatus: passed},
		{name: "delete with the cookie, no CSRF header", method: "DELETE", path: "/handlers/echo/dead-letters/1-1", cookie: true, wantStatus: forbiddenSt},
		{name: "delete with the cookie and CSRF header", method: "DELETE", path: "/handlers/echo/dead-letters/1-1", cookie: true, header: map[string]string{CSRFHeader: token}, wantStatus: passed},
		{name: "bearer needs no CSRF header", method: "POST", path: replay, header: bearer(f.keys.admin), wantStatus: passed},
		{name: "another session's CSRF token", method: "POST", path: replay, cookie: true, header: map[string]string{CSRFHeader: csrfToken(f.keys.reader)}, wantStatus: forbiddenSt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.cookie {
				req.AddCookie(cookie)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, eb := do(t, f.e, req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%+v)", resp.StatusCode, tc.wantStatus, eb.Error)
			}
			if tc.wantCode != 0 && (eb.Error == nil || eb.Error.Code != tc.wantCode) {
				t.Fatalf("error %+v, want code %d", eb.Error, tc.wantCode)
			}
		})
	}

	// Sign-out clears the cookie.
	req = httptest.NewRequest("POST", "/ui/sign-out", nil)
	req.AddCookie(cookie)
	resp = send(t, f.e, req)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || c == nil || c.Value != "" || c.MaxAge >= 0 && c.Expires.After(time.Now()) {
		t.Fatalf("sign-out: %d, cookie %+v; want a 303 that clears the cookie", resp.StatusCode, c)
	}
}

// The dashboard's live feed, an EventSource, authenticates with the cookie.
func TestUISessionEvents(t *testing.T) {
	f := newAuthFixture(t)
	base := serve(t, f.e)
	cases := []struct {
		name       string
		cookie     string
		wantStatus int
	}{
		{name: "no session", wantStatus: unauthorized},
		{name: "a session without read", cookie: f.keys.echoCaller, wantStatus: forbiddenSt},
		{name: "a reader's session", cookie: f.keys.reader, wantStatus: http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: SessionCookie, Value: tc.cookie})
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusOK && resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("Content-Type %q, want the event stream", resp.Header.Get("Content-Type"))
			}
		})
	}
}
