package app

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/streamrpc/streamrpc/streams"
)

// These tests run edges whose Redis cannot be reached (newTestEdge): a
// request that passes authentication and authorisation then answers 503
// (or another answer of the route), one that does not answers 401 or 403
// before anything touches Redis.

// testKeys are API keys made for one test, by scope set.
type testKeys struct {
	echoCaller, reader, admin, caller string
}

const hs256Secret = "0123456789abcdef0123456789abcdef-test-secret"

// authFixture is an edge with API keys and every kind of JWT key, and the
// signing keys to mint tokens for it.
type authFixture struct {
	e      *Edge
	keys   testKeys
	rsaKey *rsa.PrivateKey // its public half is STREAMRPC_JWT_PUBLIC_KEY_FILE
	ecKey  *ecdsa.PrivateKey
	rsa2   *rsa.PrivateKey // ecKey and rsa2 are in the JWKS file, kids "ec1" and "rsa2"
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newKey(t *testing.T, id, scopes string) (key, entry string) {
	t.Helper()
	key, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return key, id + ":" + hash + ":" + scopes
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	f := &authFixture{logs: &syncBuffer{}}
	var entries []string
	add := func(dst *string, id, scopes string) {
		key, entry := newKey(t, id, scopes)
		*dst = key
		entries = append(entries, entry)
	}
	add(&f.keys.echoCaller, "echo-caller", "call:echo.*")
	add(&f.keys.reader, "reader", "read")
	add(&f.keys.admin, "ops", "admin")
	add(&f.keys.caller, "caller", "call:*.* read")

	var err error
	if f.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if f.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if f.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(&f.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "public.pem")
	writeFile(t, pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	jwksFile := filepath.Join(dir, "jwks.json")
	writeFile(t, jwksFile, jwksOf(t, map[string]any{"ec1": &f.ecKey.PublicKey, "rsa2": &f.rsa2.PublicKey}))

	f.e = newTestEdge(t, Config{
		APIKeys:          strings.Join(entries, ";"),
		JWTHS256Secret:   hs256Secret,
		JWTPublicKeyFile: pemFile,
		JWTJWKSFile:      jwksFile,
		JWTIssuer:        "https://issuer.test",
		JWTAudience:      "streamrpc",
		Logger:           slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return f
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// jwksOf writes public keys as a JWKS, by kid.
func jwksOf(t *testing.T, keys map[string]any) []byte {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			raw, err := k.Bytes() // 0x04 || X || Y
			if err != nil {
				t.Fatal(err)
			}
			set.Keys = append(set.Keys, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
				"x": b64(raw[1:33]), "y": b64(raw[33:])})
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims are good claims for the fixture's edge, valid for an hour.
func goodClaims(scope string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": "user-1", "iss": "https://issuer.test", "aud": "streamrpc", "scope": scope,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func with(claims jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range claims {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

type authCase struct {
	name       string
	method     string
	path       string
	header     map[string]string
	wantStatus int
	wantCode   int // the error body's code; 0: not checked
}

func bearer(cred string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + cred}
}

func (f *authFixture) run(t *testing.T, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader(`{}`)
			}
			req := httptest.NewRequest(tc.method, tc.path, body)
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, eb := do(t, f.e, req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("%s %s: status %d, want %d (body %+v)", tc.method, tc.path, resp.StatusCode, tc.wantStatus, eb.Error)
			}
			if tc.wantCode != 0 && (eb.Error == nil || eb.Error.Code != tc.wantCode) {
				t.Fatalf("error body %+v, want code %d", eb.Error, tc.wantCode)
			}
			if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: Bearer (got %q)", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

const (
	passed       = http.StatusServiceUnavailable // auth passed; the unreachable Redis answered
	unauthorized = http.StatusUnauthorized
	forbiddenSt  = http.StatusForbidden
)

func TestAuthAPIKeysAndScopes(t *testing.T) {
	f := newAuthFixture(t)
	k := f.keys
	callID := "/rpc/calls/echo.01JBZ8Y0000000000000000000"
	f.run(t, []authCase{
		{name: "healthz is public", method: "GET", path: "/healthz", wantStatus: http.StatusOK},
		{name: "readyz is public", method: "GET", path: "/readyz", wantStatus: passed},
		{name: "no credentials", method: "POST", path: "/rpc/echo/echo", wantStatus: unauthorized, wantCode: streams.CodeUnauthenticated},
		{name: "unknown key", method: "POST", path: "/rpc/echo/echo", header: bearer("srpc_not-a-key"), wantStatus: unauthorized, wantCode: streams.CodeUnauthenticated},
		{name: "bearer other scheme", method: "POST", path: "/rpc/echo/echo", header: map[string]string{"Authorization": "Basic " + k.echoCaller}, wantStatus: unauthorized},
		{name: "unknown route needs credentials", method: "GET", path: "/nope", wantStatus: unauthorized},
		{name: "echo.* calls echo.echo", method: "POST", path: "/rpc/echo/echo", header: bearer(k.echoCaller), wantStatus: passed},
		{name: "echo.* calls echo.other", method: "POST", path: "/rpc/echo/other", header: bearer(k.echoCaller), wantStatus: passed},
		{name: "X-API-Key header", method: "POST", path: "/rpc/echo/echo", header: map[string]string{"X-API-Key": k.echoCaller}, wantStatus: passed},
		{name: "echo.* may not call other.x", method: "POST", path: "/rpc/other/x", header: bearer(k.echoCaller), wantStatus: forbiddenSt, wantCode: streams.CodeForbidden},
		{name: "echo.* may not call echoes.x", method: "POST", path: "/rpc/echoes/x", header: bearer(k.echoCaller), wantStatus: forbiddenSt},
		{name: "read may not call", method: "POST", path: "/rpc/echo/echo", header: bearer(k.reader), wantStatus: forbiddenSt},
		{name: "*.* calls anything", method: "POST", path: "/rpc/billing/charge", header: bearer(k.caller), wantStatus: passed},
		{name: "JSON API needs read", method: "GET", path: "/handlers", header: bearer(k.echoCaller), wantStatus: forbiddenSt, wantCode: streams.CodeForbidden},
		{name: "JSON API with read", method: "GET", path: "/handlers", header: bearer(k.reader), wantStatus: passed},
		{name: "admin includes read", method: "GET", path: "/handlers/echo", header: bearer(k.admin), wantStatus: passed},
		{name: "activity needs read", method: "GET", path: "/activity", header: bearer(k.echoCaller), wantStatus: forbiddenSt},
		{name: "events need read", method: "GET", path: "/events", header: bearer(k.echoCaller), wantStatus: forbiddenSt},
		{name: "events without credentials", method: "GET", path: "/events", wantStatus: unauthorized},
		{name: "dead letters list needs read", method: "GET", path: "/handlers/echo/dead-letters", header: bearer(k.echoCaller), wantStatus: forbiddenSt},
		{name: "dead letters list with read", method: "GET", path: "/handlers/echo/dead-letters", header: bearer(k.reader), wantStatus: passed},
		{name: "replay needs admin", method: "POST", path: "/handlers/echo/dead-letters/replay", header: bearer(k.reader), wantStatus: forbiddenSt},
		{name: "replay one needs admin", method: "POST", path: "/handlers/echo/dead-letters/1-1/replay", header: bearer(k.caller), wantStatus: forbiddenSt},
		{name: "replay with admin", method: "POST", path: "/handlers/echo/dead-letters/replay", header: bearer(k.admin), wantStatus: passed},
		{name: "delete dead letter needs admin", method: "DELETE", path: "/handlers/echo/dead-letters/1-1", header: bearer(k.reader), wantStatus: forbiddenSt},
		{name: "forget handler needs admin", method: "DELETE", path: "/handlers/echo", header: bearer(k.reader), wantStatus: forbiddenSt},
		{name: "forget handler with admin", method: "DELETE", path: "/handlers/echo", header: bearer(k.admin), wantStatus: passed},
		{name: "result with a call scope", method: "GET", path: callID, header: bearer(k.echoCaller), wantStatus: passed},
		{name: "result with read", method: "GET", path: callID, header: bearer(k.reader), wantStatus: passed},
		{name: "result without credentials", method: "GET", path: callID, wantStatus: unauthorized},
		{name: "cancel with a call scope", method: "DELETE", path: callID, header: bearer(k.echoCaller), wantStatus: passed},
		{name: "another handler's result with a call scope", method: "GET", path: "/rpc/calls/other.01JBZ8Y0000000000000000000", header: bearer(k.echoCaller), wantStatus: forbiddenSt, wantCode: streams.CodeForbidden},
		{name: "another handler's call cancelled with a call scope", method: "DELETE", path: "/rpc/calls/other.01JBZ8Y0000000000000000000", header: bearer(k.echoCaller), wantStatus: forbiddenSt},
	})
}

func TestAuthJWT(t *testing.T) {
	f := newAuthFixture(t)
	good := goodClaims("call:echo.* read")
	hs := func(c jwt.MapClaims) map[string]string {
		return bearer(sign(t, jwt.SigningMethodHS256, []byte(hs256Secret), "", c))
	}
	now := time.Now()
	f.run(t, []authCase{
		{name: "HS256", method: "POST", path: "/rpc/echo/echo", header: hs(good), wantStatus: passed},
		{name: "HS256 scope forbids other.x", method: "POST", path: "/rpc/other/x", header: hs(good), wantStatus: forbiddenSt, wantCode: streams.CodeForbidden},
		{name: "HS256 read scope", method: "GET", path: "/handlers", header: hs(good), wantStatus: passed},
		{name: "scopes array claim", method: "POST", path: "/rpc/other/x", header: hs(with(good, "scope", nil, "scopes", []string{"call:other.x"})), wantStatus: passed},
		{name: "HS256 wrong secret", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", good)), wantStatus: unauthorized},
		{name: "expired", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "exp", now.Add(-time.Hour).Unix())), wantStatus: unauthorized, wantCode: streams.CodeUnauthenticated},
		{name: "expired within leeway", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "exp", now.Add(-5*time.Second).Unix())), wantStatus: passed},
		{name: "no exp", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "exp", nil)), wantStatus: unauthorized},
		{name: "nbf in the future", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "nbf", now.Add(time.Hour).Unix())), wantStatus: unauthorized},
		{name: "wrong aud", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "aud", "another-service")), wantStatus: unauthorized},
		{name: "aud list holding ours", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "aud", []string{"x", "streamrpc"})), wantStatus: passed},
		{name: "wrong iss", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "iss", "https://evil.test")), wantStatus: unauthorized},
		{name: "no sub", method: "POST", path: "/rpc/echo/echo", header: hs(with(good, "sub", nil)), wantStatus: unauthorized},
		{name: "alg none", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good)), wantStatus: unauthorized},
		{name: "RS256 from the PEM file", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodRS256, f.rsaKey, "", good)), wantStatus: passed},
		{name: "RS256 from the JWKS by kid", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodRS256, f.rsa2, "rsa2", good)), wantStatus: passed},
		{name: "ES256 from the JWKS by kid", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodES256, f.ecKey, "ec1", good)), wantStatus: passed},
		{name: "ES256 expired", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodES256, f.ecKey, "ec1", with(good, "exp", now.Add(-time.Hour).Unix()))), wantStatus: unauthorized},
		{name: "RS256 signed by a key not configured", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodRS256, f.rsa2, "", good)), wantStatus: unauthorized},
		{name: "kid naming the wrong key", method: "POST", path: "/rpc/echo/echo", header: bearer(sign(t, jwt.SigningMethodRS256, f.rsaKey, "rsa2", good)), wantStatus: unauthorized},
	})
}

// A rejected credential never reaches the logs, whatever it is.
func TestAuthNeverLogsCredentials(t *testing.T) {
	f := newAuthFixture(t)
	badKey := "srpc_this-is-a-secret-that-must-not-be-logged"
	badJWT := sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("y", 40)), "", goodClaims("read"))
	for _, cred := range []string{badKey, badJWT, f.keys.reader} {
		for _, h := range []map[string]string{bearer(cred), {"X-API-Key": cred}} {
			req := httptest.NewRequest("GET", "/handlers", nil)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			do(t, f.e, req)
		}
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "authentication failed") {
		t.Fatalf("the failures were not logged at debug level: %q", logs)
	}
	for _, secret := range []string{badKey, badJWT, f.keys.reader, hs256Secret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs hold a credential: %q", logs)
		}
	}
}

func TestAuthOffByDefault(t *testing.T) {
	e := newTestEdge(t, Config{})
	resp, _ := do(t, e, httptest.NewRequest("GET", "/handlers", nil))
	if resp.StatusCode != passed {
		t.Fatalf("a zero Config answered %d, want the open edge's 503", resp.StatusCode)
	}
	e = newTestEdge(t, Config{Auth: AuthNone})
	if resp := send(t, e, httptest.NewRequest("GET", "/ui/", nil)); resp.StatusCode == http.StatusSeeOther {
		t.Fatal("STREAMRPC_AUTH=none still sends the dashboard to sign-in")
	}
}

func TestAuthJSONRPCOverHTTP(t *testing.T) {
	f := newAuthFixture(t)
	body := `[{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{}},{"jsonrpc":"2.0","id":2,"method":"other.x","params":{}}]`
	cases := []struct {
		name       string
		header     map[string]string
		wantStatus int
		wantCodes  map[string]int // JSON-RPC id -> error code
	}{
		{name: "no credentials", wantStatus: unauthorized},
		{name: "per-call scopes", header: bearer(f.keys.echoCaller), wantStatus: http.StatusOK,
			wantCodes: map[string]int{"1": streams.CodeUnavailable, "2": streams.CodeForbidden}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/jsonrpc", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := f.e.Fiber().Test(req, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantCodes == nil {
				return
			}
			var answers []rpcResponse
			if err := json.NewDecoder(resp.Body).Decode(&answers); err != nil {
				t.Fatal(err)
			}
			for _, a := range answers {
				if a.Error == nil || a.Error.Code != tc.wantCodes[string(a.ID)] {
					t.Errorf("id %s: error %+v, want code %d", a.ID, a.Error, tc.wantCodes[string(a.ID)])
				}
			}
		})
	}
}

func TestAuthWebSocket(t *testing.T) {
	f := newAuthFixture(t)
	base := serve(t, f.e)
	cases := []struct {
		name     string
		url      string
		header   http.Header
		wantOpen bool
		wantProt string // the subprotocol the edge selected
	}{
		{name: "no credentials", url: wsURL(base), wantOpen: false},
		{name: "bad key", url: wsURL(base), header: http.Header{"Authorization": {"Bearer srpc_nope"}}, wantOpen: false},
		{name: "session cookie is not enough", url: wsURL(base), header: http.Header{"Cookie": {SessionCookie + "=" + f.keys.echoCaller}}, wantOpen: false},
		{name: "session cookie is not enough on /WS/ either", url: strings.TrimSuffix(wsURL(base), "/ws") + "/WS/", header: http.Header{"Cookie": {SessionCookie + "=" + f.keys.echoCaller}}, wantOpen: false},
		{name: "Authorization header", url: wsURL(base), header: http.Header{"Authorization": {"Bearer " + f.keys.echoCaller}}, wantOpen: true},
		{name: "subprotocol", url: wsURL(base), header: http.Header{"Sec-WebSocket-Protocol": {WSProtocol + ", " + WSAuthProtocolPrefix + f.keys.echoCaller}}, wantOpen: true, wantProt: WSProtocol},
		{name: "access_token query", url: wsURL(base) + "?access_token=" + f.keys.echoCaller, wantOpen: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, res, err := fastws.DefaultDialer.Dial(tc.url, tc.header)
			if !tc.wantOpen {
				if err == nil {
					_ = conn.Close()
					t.Fatal("the upgrade was accepted")
				}
				if res == nil || res.StatusCode != unauthorized {
					t.Fatalf("dial: %v, response %+v; want 401", err, res)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			if got := res.Header.Get("Sec-WebSocket-Protocol"); got != tc.wantProt {
				t.Fatalf("selected subprotocol %q, want %q (the credential must never be echoed)", got, tc.wantProt)
			}
			// A forbidden method is answered with an error; the socket stays open
			// and answers the next call.
			for i := range 2 {
				msg := `{"jsonrpc":"2.0","id":` + string(rune('1'+i)) + `,"method":"other.x","params":{}}`
				if err := conn.WriteMessage(1, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, raw, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				var r rpcResponse
				if err := json.Unmarshal(raw, &r); err != nil || r.Error == nil || r.Error.Code != streams.CodeForbidden {
					t.Fatalf("call %d answered %s, want a %d error", i, raw, streams.CodeForbidden)
				}
			}
		})
	}
}

// ?access_token= and the subprotocol token open GET /ws only: an Upgrade
// header does not make them credentials on other routes.
func TestAuthURLTokenOnlyOnWS(t *testing.T) {
	f := newAuthFixture(t)
	k := f.keys
	upgrade := func(kv ...string) map[string]string {
		h := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	f.run(t, []authCase{
		{name: "access_token on GET /handlers", method: http.MethodGet, path: "/handlers?access_token=" + k.admin, header: upgrade(), wantStatus: unauthorized},
		{name: "access_token on POST /rpc", method: http.MethodPost, path: "/rpc/echo/echo?access_token=" + k.admin, header: upgrade(), wantStatus: unauthorized},
		{name: "access_token on GET /metrics", method: http.MethodGet, path: "/metrics?access_token=" + k.admin, header: upgrade(), wantStatus: unauthorized},
		{name: "subprotocol on GET /handlers", method: http.MethodGet, path: "/handlers", header: upgrade("Sec-WebSocket-Protocol", WSAuthProtocolPrefix+k.admin), wantStatus: unauthorized},
		{name: "access_token on POST /ws", method: http.MethodPost, path: "/ws?access_token=" + k.admin, header: upgrade(), wantStatus: unauthorized},
		{name: "access_token without Upgrade", method: http.MethodGet, path: "/handlers?access_token=" + k.admin, wantStatus: unauthorized},
		{name: "a header still works with Upgrade", method: http.MethodGet, path: "/handlers", header: upgrade("Authorization", "Bearer "+k.admin), wantStatus: passed},
	})
}

func TestAuthorizeCallsExpiredPrincipal(t *testing.T) {
	p := &Principal{ID: "u", Expires: time.Now().Add(-time.Second)}
	p.Scopes, _ = parseScopes([]string{"call:*.*"})
	reqs := []rpcRequest{{handler: "echo", method: "echo"}, {cancel: []byte("1")}}
	authorizeCalls(p, reqs, time.Now())
	if reqs[0].err == nil || reqs[0].err.Code != streams.CodeUnauthenticated {
		t.Fatalf("a call on an expired token: %+v, want unauthenticated", reqs[0].err)
	}
	if reqs[1].err != nil {
		t.Fatalf("$/cancel of the socket's own call was refused: %+v", reqs[1].err)
	}
}

func TestScopesMayCall(t *testing.T) {
	cases := []struct {
		name            string
		scopes          []string
		handler, method string
		want            bool
	}{
		{"exact", []string{"call:billing.charge"}, "billing", "charge", true},
		{"exact other method", []string{"call:billing.charge"}, "billing", "refund", false},
		{"handler glob", []string{"call:echo.*"}, "echo", "echo", true},
		{"handler glob other handler", []string{"call:echo.*"}, "other", "x", false},
		{"glob does not cross the dot", []string{"call:echo.*"}, "echo.v2", "x", false},
		{"dotted handler", []string{"call:echo.v2.*"}, "echo.v2", "x", true},
		{"all", []string{"call:*.*"}, "a.b", "c", true},
		{"star alone", []string{"call:*"}, "any", "thing", true},
		{"prefix glob", []string{"call:bill*.get*"}, "billing", "getInvoice", true},
		{"read is not call", []string{"read", "admin"}, "echo", "echo", false},
		{"none", nil, "echo", "echo", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseScopes(tc.scopes)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.MayCall(tc.handler, tc.method); got != tc.want {
				t.Fatalf("%v may call %s.%s: %v, want %v", tc.scopes, tc.handler, tc.method, got, tc.want)
			}
		})
	}
}

func TestLookupAPIKeyAllocates(t *testing.T) {
	key, entry := newKey(t, "k", "read")
	keys, err := parseAPIKeys(entry)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if lookupAPIKey(keys, key) == nil {
			t.Fatal("the key was not found")
		}
	})
	if allocs != 0 {
		t.Fatalf("an API key lookup allocates %.0f times, want none", allocs)
	}
}

// send sends req to the edge's Fiber app; the body is left to the caller.
func send(t *testing.T, e *Edge, req *http.Request) *http.Response {
	t.Helper()
	resp, err := e.Fiber().Test(req, 10_000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// Middleware registered after the edge's routes (a rate limiter, say) finds
// the principal id under PrincipalIDLocal.
func TestAuthPrincipalIDLocal(t *testing.T) {
	f := newAuthFixture(t)
	f.e.Fiber().Get("/test/whoami", func(c *fiber.Ctx) error {
		id, _ := c.Locals(PrincipalIDLocal).(string)
		return c.SendString(id)
	})
	jwtCaller := sign(t, jwt.SigningMethodHS256, []byte(hs256Secret), "", goodClaims("read"))
	cases := []struct{ name, cred, want string }{
		{"API key id", f.keys.reader, "reader"},
		{"JWT sub", jwtCaller, "user-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/test/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+tc.cred)
			resp := send(t, f.e, req)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != tc.want {
				t.Fatalf("%d %q, want 200 %q", resp.StatusCode, b, tc.want)
			}
		})
	}
}

// Key files that cannot be read stop New with an ErrConfig naming the setting.
func TestAuthKeyFilesRefused(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("hello"))
	emptyJWKS := filepath.Join(dir, "empty.json")
	writeFile(t, emptyJWKS, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p384PEM := filepath.Join(dir, "p384.pem")
	writeFile(t, p384PEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	cases := []struct {
		name    string
		cfg     Config
		mention string
	}{
		{"missing PEM file", Config{JWTPublicKeyFile: filepath.Join(dir, "nope.pem")}, "STREAMRPC_JWT_PUBLIC_KEY_FILE"},
		{"not a PEM key", Config{JWTPublicKeyFile: notPEM}, "not an RSA or EC public key"},
		{"a P-384 key", Config{JWTPublicKeyFile: p384PEM}, "P-256"},
		{"missing JWKS file", Config{JWTJWKSFile: filepath.Join(dir, "nope.json")}, "STREAMRPC_JWT_JWKS_FILE"},
		{"a JWKS without signing keys", Config{JWTJWKSFile: emptyJWKS}, "no RS256 or ES256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.JWTIssuer, tc.cfg.JWTAudience = "i", "a"
			e, err := New(nil, tc.cfg)
			if e != nil || !errors.Is(err, ErrConfig) || !errors.Is(err, ErrJWTKeys) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("New: %v; want an ErrConfig and ErrJWTKeys mentioning %q", err, tc.mention)
			}
		})
	}
}

// BenchmarkAuthenticateAPIKey is the whole middleware on a request with an
// API key, through Fiber, against a route that only answers 204; "open" is
// the same edge without auth, for the difference.
func BenchmarkAuthenticateAPIKey(b *testing.B) {
	key, entry := newKeyB(b, "bench", "read")
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"open", Config{}},
		{"api key", Config{APIKeys: entry}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.Logger = slog.New(slog.DiscardHandler)
			e, err := New(nil, bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = e.Close() })
			e.Fiber().Get("/bench/ok", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusNoContent) })
			h := e.Fiber().Handler()
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI("/bench/ok")
				ctx.Request.Header.Set("Authorization", "Bearer "+key)
				h(&ctx)
				if ctx.Response.StatusCode() != fiber.StatusNoContent {
					b.Fatalf("status %d", ctx.Response.StatusCode())
				}
			}
		})
	}
}

func newKeyB(b *testing.B, id, scopes string) (key, entry string) {
	key, hash, err := NewAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	return key, id + ":" + hash + ":" + scopes
}
