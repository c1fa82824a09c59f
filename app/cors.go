package app

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Cross-origin requests (docs/security.md, "Browsers on other origins").
//
// STREAMRPC_CORS_ORIGINS lists the origins whose pages may call the API
// routes; "*" lets any page call them. The answers never carry
// Access-Control-Allow-Credentials: a browser on another origin calls with a
// bearer token or an API key it holds (not an ambient credential), never with
// the dashboard's cookie, so "*" opens nothing the token does not. The
// dashboard (/ui...) gets no CORS headers whatever the list says, and the
// WebSocket upgrade checks its Origin against the same list (wsOriginAllowed).

// corsAllowHeaders are the request headers a cross-origin call may send: the
// credentials' and every request header the API documents (docs/http-api.md).
const corsAllowHeaders = "Authorization, X-API-Key, Content-Type, Idempotency-Key, Prefer, Request-Timeout, traceparent, tracestate, X-Request-Id"

// corsExposeHeaders are the response headers a cross-origin page may read.
const corsExposeHeaders = "X-Request-Id, Location, Retry-After"

// corsAllowMethods are the methods of the API routes.
const corsAllowMethods = "GET, POST, DELETE"

// corsMaxAge is how long a browser may cache a preflight's answer, in seconds.
const corsMaxAge = "600"

// corsPolicy is STREAMRPC_CORS_ORIGINS, parsed.
type corsPolicy struct {
	any     bool            // "*" is listed
	origins map[string]bool // scheme://host[:port], lower case
}

// parseCORSOrigins reads a comma-separated list of origins ("*" or
// scheme://host[:port], without a path).
func parseCORSOrigins(list string) (corsPolicy, error) {
	p := corsPolicy{origins: map[string]bool{}}
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case o == "*":
			p.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return p, fmt.Errorf("%w: STREAMRPC_CORS_ORIGINS: %q is not an origin (want scheme://host[:port], or *)", ErrConfig, o)
		}
		p.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return p, nil
}

// listed reports whether origin is in the list (or the list has "*").
func (p corsPolicy) listed(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// sameOrigin reports whether origin names the host the request was sent to.
// Only the host and port are compared, as a browser's Origin and Host do;
// the scheme is not, since a proxy in front may end TLS.
func sameOrigin(c *fiber.Ctx, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, string(c.Request().Host()))
}

// localOrigin reports whether origin is http://localhost or
// http://127.0.0.1, on any port.
func localOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || h == "127.0.0.1"
}

// dashboardPath reports whether path is the dashboard's (cookie routes).
func dashboardPath(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// cors is the middleware ahead of every route (and of authentication, so a
// preflight, which carries no credential, is answered). It answers
// preflights on the API routes and marks their answers for the origins
// listed; it refuses a WebSocket upgrade from a foreign origin.
func (e *Edge) cors(c *fiber.Ctx) error {
	// Routing ignores case: so does this.
	if dashboardPath(strings.ToLower(c.Path())) {
		return c.Next()
	}
	origin := c.Get(fiber.HeaderOrigin)
	if websocket.IsWebSocketUpgrade(c) {
		if !e.wsOriginAllowed(c, origin) {
			return writeError(c, newError(streams.CodeForbidden,
				"forbidden: WebSocket from an origin that is not allowed (STREAMRPC_CORS_ORIGINS)", "origin", origin))
		}
		return c.Next()
	}
	// The answer depends on Origin: caches must keep one per origin.
	c.Vary(fiber.HeaderOrigin)
	if origin == "" {
		return c.Next()
	}
	allowed := e.corsPolicy.listed(origin)
	if c.Method() == fiber.MethodOptions && c.Get(fiber.HeaderAccessControlRequestMethod) != "" {
		if !allowed {
			return writeError(c, newError(streams.CodeForbidden,
				"forbidden: cross-origin request from an origin that is not allowed (STREAMRPC_CORS_ORIGINS)", "origin", origin))
		}
		e.corsAllowOrigin(c, origin)
		c.Set(fiber.HeaderAccessControlAllowMethods, corsAllowMethods)
		c.Set(fiber.HeaderAccessControlAllowHeaders, corsAllowHeaders)
		c.Set(fiber.HeaderAccessControlMaxAge, corsMaxAge)
		return c.SendStatus(fiber.StatusNoContent)
	}
	if allowed {
		e.corsAllowOrigin(c, origin)
		c.Set(fiber.HeaderAccessControlExposeHeaders, corsExposeHeaders)
	}
	return c.Next()
}

func (e *Edge) corsAllowOrigin(c *fiber.Ctx, origin string) {
	if e.corsPolicy.any {
		c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
		return
	}
	c.Set(fiber.HeaderAccessControlAllowOrigin, origin)
}

// wsOriginAllowed: a WebSocket upgrade is taken without an Origin (not a
// browser), from the edge's own origin, from a listed one, and in `streamrpc
// dev` from http://localhost:* and http://127.0.0.1:*. Browsers do not apply
// CORS to WebSockets: without this check any page a developer visits could
// drive the handlers of an open edge.
func (e *Edge) wsOriginAllowed(c *fiber.Ctx, origin string) bool {
	switch {
	case origin == "", sameOrigin(c, origin), e.corsPolicy.listed(origin):
		return true
	case e.cfg.AllowLocalOrigins:
		return localOrigin(origin)
	}
	return false
}
