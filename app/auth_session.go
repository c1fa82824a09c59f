package app

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The dashboard session. Sign-in checks the pasted credential and stores it,
// as is, in the streamrpc_session cookie: HttpOnly (page scripts cannot read
// it), SameSite=Strict (other sites' requests do not carry it), Secure when
// the request came over TLS (directly or per X-Forwarded-Proto), Path=/ (the
// pages' scripts call the JSON API and /events with it). It expires with the
// credential (a JWT's exp; 12h for an API key), and the credential is checked
// again on every request, so a session never outlives it. Keeping the
// credential, not a server-side session, leaves the edge stateless: any
// replica serves any request.

// ErrSignIn wraps the reasons a sign-in is refused.
var ErrSignIn = errors.New("sign-in refused")

// uiSignIn checks credential and starts a session.
func (e *Edge) uiSignIn(c *fiber.Ctx, credential string) error {
	// A sign-in form posted from another site would sign the visitor in as
	// the attacker (login CSRF): browsers say where a request came from.
	if site := c.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errors.Join(ErrSignIn, errors.New("the form was posted from another site"))
	}
	p, err := e.auth.check(credential)
	if err != nil {
		e.log.Debug("dashboard sign-in failed", "ip", c.IP(), "err", err)
		return errors.Join(ErrSignIn, err)
	}
	if !p.Scopes.Read {
		return errors.Join(ErrSignIn, errors.New("this credential lacks the read scope the dashboard needs"))
	}
	expires := time.Now().Add(sessionMaxAge)
	if !p.Expires.IsZero() {
		// Principal.Expires includes the leeway for clock skew; the cookie
		// ends at the token's own exp.
		if exp := p.Expires.Add(-e.cfg.JWTLeeway); exp.Before(expires) {
			expires = exp
		}
	}
	c.Cookie(&fiber.Cookie{
		Name: SessionCookie, Value: credential, Path: "/", Expires: expires,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
	e.log.Info("dashboard sign-in", "principal", p.ID, "ip", c.IP())
	return nil
}

// uiSignOut ends the session: the cookie is cleared.
func (e *Edge) uiSignOut(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: SessionCookie, Value: "", Path: "/", Expires: time.Unix(1, 0), MaxAge: -1,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
}

// uiCSRFToken is the token the pages' scripts send as X-CSRF-Token; "" for a
// request not authenticated by the cookie.
func (e *Edge) uiCSRFToken(c *fiber.Ctx) string {
	if v := c.Cookies(SessionCookie); v != "" {
		return csrfToken(v)
	}
	return ""
}
