package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Authentication and authorisation on every door. When auth is on (see
// Config.AuthEnabled) one middleware, ahead of every route, finds the
// request's credential, checks it and stores its Principal in Fiber's locals;
// each route then asks for the scope it needs (e.need, e.needCall). The
// route → scope table is in docs/security.md ("Routes").
//
// A credential is an API key or a JWT: one with two dots is taken as a JWT.
// It is read from, in order:
//
//	Authorization: Bearer <credential>   every route
//	X-API-Key: <credential>              every route
//	Sec-WebSocket-Protocol: bearer.<credential>  GET /ws only (browsers cannot set headers on a WebSocket)
//	?access_token=<credential>           GET /ws only (it lands in access logs: prefer the protocol)
//	the streamrpc_session cookie          every route but /ws; set by the dashboard's sign-in
//
// The cookie is ignored on /ws so that another site's page cannot open a
// socket with the visitor's session (cross-site WebSocket hijacking), and an
// unsafe request authenticated by the cookie must carry X-CSRF-Token.

// PrincipalIDLocal is the Fiber locals key under which an authenticated
// request's principal id (API key id or JWT sub) is stored, as a string.
const PrincipalIDLocal = "streamrpc.principal_id"

// principalLocal holds the *Principal.
const principalLocal = "streamrpc.principal"

const (
	// SessionCookie holds the dashboard session: the credential itself.
	SessionCookie = "streamrpc_session"
	// CSRFHeader carries the session's anti-CSRF token on unsafe requests
	// authenticated by the cookie.
	CSRFHeader = "X-CSRF-Token"
	// WSAuthProtocolPrefix prefixes a credential offered as a WebSocket
	// subprotocol; the edge answers with WSProtocol, never echoing it.
	WSAuthProtocolPrefix = "bearer."
	// WSProtocol is the subprotocol the edge selects when a client offers it
	// (a browser that offers the credential must offer one the edge accepts).
	WSProtocol = "jsonrpc"
	// sessionMaxAge bounds a session whose credential never expires (an API key).
	sessionMaxAge = 12 * time.Hour
)

// Sentinel errors of authentication; their text may reach the caller, and
// never holds a credential.
var (
	ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer <API key or token>, or X-API-Key")
	ErrUnknownAPIKey = errors.New("unknown API key")
	ErrInvalidToken  = errors.New("invalid token")
	ErrCSRF          = errors.New("missing or wrong X-CSRF-Token for a request authenticated by the session cookie")
)

// authenticator checks credentials. It holds no per-request state.
type authenticator struct {
	keys []apiKey
	jwt  *jwtVerifier
}

// newAuthenticator returns nil when auth is off.
func newAuthenticator(cfg Config) (*authenticator, error) {
	if !cfg.AuthEnabled() {
		return nil, nil
	}
	keys, err := parseAPIKeys(cfg.APIKeys)
	if err != nil {
		return nil, err
	}
	v, err := newJWTVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &authenticator{keys: keys, jwt: v}, nil
}

// check returns the principal of a credential.
func (a *authenticator) check(cred string) (*Principal, error) {
	if strings.Count(cred, ".") == 2 && a.jwt != nil {
		p, err := a.jwt.verify(cred)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		return p, nil
	}
	if p := lookupAPIKey(a.keys, cred); p != nil {
		return p, nil
	}
	return nil, ErrUnknownAPIKey
}

// credential finds the request's credential; fromCookie tells whether it
// came from the session cookie. upgrade: the request asks for a WebSocket.
func credential(c *fiber.Ctx, upgrade bool) (cred string, fromCookie bool) {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		if scheme, v, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(v), false
		}
	}
	if v := c.Get("X-API-Key"); v != "" {
		return v, false
	}
	if upgrade {
		if !wsRoute(c) {
			// Neither the token in the URL nor the subprotocol counts
			// outside GET /ws, and the cookie never opens a socket.
			return "", false
		}
		for p := range strings.SplitSeq(c.Get(fiber.HeaderSecWebSocketProtocol), ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), WSAuthProtocolPrefix); ok {
				return v, false
			}
		}
		return c.Query("access_token"), false
	}
	if v := c.Cookies(SessionCookie); v != "" {
		return v, true
	}
	return "", false
}

// wsRoute reports GET /ws as Fiber routes it (case-insensitive, with or
// without a trailing slash): the only route where a credential may come in
// the URL (?access_token=) or as a subprotocol.
func wsRoute(c *fiber.Ctx) bool {
	return c.Method() == fiber.MethodGet && strings.EqualFold(strings.TrimSuffix(c.Path(), "/"), "/ws")
}

// publicPath: served to anyone. Liveness, readiness, the dashboard's assets
// and its sign-in and sign-out.
func publicPath(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/ui/sign-in", "/ui/sign-out":
		return true
	}
	return strings.HasPrefix(path, "/ui/static/")
}

// authenticate is the middleware ahead of every route when auth is on.
func (e *Edge) authenticate(c *fiber.Ctx) error {
	path := c.Path()
	if publicPath(path) {
		return c.Next()
	}
	// Any upgrade, not just the path "/ws": routing ignores case and a
	// trailing slash, and the cookie must never open a socket.
	cred, fromCookie := credential(c, websocket.IsWebSocketUpgrade(c))
	if cred == "" {
		return e.limitByIP(c, func() error { return e.unauthenticated(c, ErrNoCredentials, false) })
	}
	p, err := e.auth.check(cred)
	if err != nil {
		// The reason, never the credential: it would be a secret in the logs.
		e.log.Debug("authentication failed", "path", path, "ip", c.IP(), "err", err)
		return e.limitByIP(c, func() error { return e.unauthenticated(c, err, true) })
	}
	if fromCookie && !safeMethod(c.Method()) && !csrfValid(c.Get(CSRFHeader), cred) {
		return writeError(c, newError(streams.CodeForbidden, ErrCSRF.Error()))
	}
	c.Locals(PrincipalIDLocal, p.idLocal)
	c.Locals(principalLocal, p)
	return c.Next()
}

// limitByIP counts a request that failed authentication against its IP
// address's rate limit (it never reaches the limiter's middleware), so that
// guessing keys is as limited as any other anonymous traffic.
func (e *Edge) limitByIP(c *fiber.Ctx, answer func() error) error {
	if !e.limiter.enabled() {
		return answer()
	}
	return e.limiter.check(c, answer)
}

// unauthenticated answers 401 with WWW-Authenticate (RFC 6750), or sends a
// person browsing the dashboard to its sign-in page.
func (e *Edge) unauthenticated(c *fiber.Ctx, err error, badToken bool) error {
	if p := c.Path(); (p == "/ui" || strings.HasPrefix(p, "/ui/")) && safeMethod(c.Method()) {
		return c.Redirect("/ui/sign-in?next="+url.QueryEscape(c.OriginalURL()), fiber.StatusSeeOther)
	}
	challenge := `Bearer realm="streamrpc"`
	if badToken {
		challenge += `, error="invalid_token"`
	}
	c.Set(fiber.HeaderWWWAuthenticate, challenge)
	return writeError(c, newError(streams.CodeUnauthenticated, "unauthenticated: "+err.Error()))
}

func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

// PrincipalOf returns the request's principal; nil when auth is off.
func PrincipalOf(c *fiber.Ctx) *Principal {
	p, _ := c.Locals(principalLocal).(*Principal)
	return p
}

func forbidden(msg string) *streams.Error { return newError(streams.CodeForbidden, "forbidden: "+msg) }

// next passes the request on; need returns it when auth is off.
func next(c *fiber.Ctx) error { return c.Next() }

// need returns the middleware of a route that needs ScopeRead or ScopeAdmin.
func (e *Edge) need(scope string) fiber.Handler {
	if e.auth == nil {
		return next
	}
	return func(c *fiber.Ctx) error {
		p := PrincipalOf(c)
		ok := p != nil && (scope == ScopeRead && p.Scopes.Read || scope == ScopeAdmin && p.Scopes.Admin)
		if !ok {
			return writeError(c, forbidden("this route needs the "+scope+" scope"))
		}
		return c.Next()
	}
}

// needCall guards POST /rpc/{handler}/{method}: call:<handler>.<method>.
func (e *Edge) needCall(c *fiber.Ctx) error {
	if e.auth == nil {
		return c.Next()
	}
	if p := PrincipalOf(c); p == nil || !p.Scopes.MayCall(c.Params("handler"), c.Params("method")) {
		return writeError(c, forbidden("no call: scope allows "+truncate(c.Params("handler"), 64)+"."+truncate(c.Params("method"), 64)))
	}
	return c.Next()
}

// needCallOrRead guards GET and DELETE /rpc/calls/{id}: read, or a call:
// scope for the handler the id names (a call id is "<handler>.<ULID>"). The
// id's 80 random bits, which the edge gave the caller, are the capability to
// read and cancel that call, as for the caller who made it; the scope keeps a
// caller of one handler away from another's calls even with an id.
func (e *Edge) needCallOrRead(c *fiber.Ctx) error {
	if e.auth == nil {
		return c.Next()
	}
	handler, _ := streams.ValidateCallID(c.Params("id")) // a bad id is answered 400 after auth
	if p := PrincipalOf(c); p == nil || !(p.Scopes.Read || p.Scopes.mayCallHandler(handler)) {
		return writeError(c, forbidden("this route needs the read scope or a call: scope for the call's handler"))
	}
	return c.Next()
}

// authorizeCalls marks the JSON-RPC requests p may not make: they are
// answered with the error, the others run. nil p: auth is off.
func authorizeCalls(p *Principal, reqs []rpcRequest, now time.Time) {
	if p == nil {
		return
	}
	expired := p.expired(now)
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.err != nil || r.cancel != nil:
			// $/cancel reaches only this socket's own calls.
		case expired:
			r.err = newError(streams.CodeUnauthenticated, "unauthenticated: the token expired; reconnect with a new one")
		case r.discover:
			r.viewer = p // sees the methods its scopes allow
		case !p.Scopes.MayCall(r.handler, r.method):
			r.err = forbidden("no call: scope allows " + r.handler + "." + r.method)
		}
	}
}

// csrfToken is the session's anti-CSRF token: an HMAC keyed by the session's
// credential. Only who holds the credential can compute it, every edge
// replica computes the same one without shared state, and it tells nothing
// about the credential.
func csrfToken(cred string) string {
	m := hmac.New(sha256.New, []byte(cred))
	m.Write([]byte("streamrpc csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func csrfValid(got, cred string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(cred))) == 1
}
