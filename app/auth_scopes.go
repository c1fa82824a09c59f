package app

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Scopes a principal can hold:
//
//	call:<handler>.<method>  call methods; each side is a glob (path.Match):
//	                         call:echo.*, call:*.*, call:billing.charge
//	read                     the dashboard, the JSON API, results of calls
//	admin                    replay and delete dead letters, forget handlers
//	                         (admin includes read: nobody replays blind)
//
// Unknown scopes are ignored, not refused: JWTs from a shared identity
// provider carry scopes meant for other services.
const (
	ScopeRead  = "read"
	ScopeAdmin = "admin"
	scopeCall  = "call:"
)

// ErrScope: a scope in the configuration is malformed.
var ErrScope = errors.New("bad scope")

// Scopes is what a principal may do.
type Scopes struct {
	Read, Admin bool
	calls       []callPattern
}

// callPattern is one call:<handler>.<method> scope, split at the last dot as
// JSON-RPC method names are.
type callPattern struct{ handler, method string }

// parseScopes parses a list of scopes. Strict: it is for configuration (API
// keys); a call: scope with a bad pattern is an error.
func parseScopes(list []string) (Scopes, error) {
	var s Scopes
	for _, sc := range list {
		if err := s.add(sc); err != nil {
			return Scopes{}, err
		}
	}
	return s, nil
}

// scopesFromToken parses the scopes of a token, skipping what it does not
// understand (a bad pattern grants nothing).
func scopesFromToken(list []string) Scopes {
	var s Scopes
	for _, sc := range list {
		_ = s.add(sc)
	}
	return s
}

func (s *Scopes) add(sc string) error {
	switch {
	case sc == ScopeRead:
		s.Read = true
	case sc == ScopeAdmin:
		s.Admin, s.Read = true, true
	case strings.HasPrefix(sc, scopeCall):
		p, err := parseCallPattern(strings.TrimPrefix(sc, scopeCall))
		if err != nil {
			return err
		}
		s.calls = append(s.calls, p)
	}
	return nil
}

func parseCallPattern(pat string) (callPattern, error) {
	if pat == "*" {
		return callPattern{"*", "*"}, nil
	}
	i := strings.LastIndexByte(pat, '.')
	if i <= 0 || i == len(pat)-1 {
		return callPattern{}, fmt.Errorf("%w: call:%s: want call:<handler>.<method>, globs allowed (call:echo.*, call:*.*)", ErrScope, pat)
	}
	p := callPattern{pat[:i], pat[i+1:]}
	for _, part := range []string{p.handler, p.method} {
		if _, err := path.Match(part, ""); err != nil {
			return callPattern{}, fmt.Errorf("%w: call:%s: %w", ErrScope, pat, err)
		}
	}
	return p, nil
}

// MayCall reports whether the scopes allow calling handler.method.
func (s *Scopes) MayCall(handler, method string) bool {
	for _, p := range s.calls {
		if globMatch(p.handler, handler) && globMatch(p.method, method) {
			return true
		}
	}
	return false
}

// mayCallHandler: a call: scope allows some method of handler ("" when the
// handler is not known: then any call: scope does).
func (s *Scopes) mayCallHandler(handler string) bool {
	for _, p := range s.calls {
		if handler == "" || globMatch(p.handler, handler) {
			return true
		}
	}
	return false
}

func globMatch(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	ok, _ := path.Match(pattern, name) // patterns were checked when parsed
	return ok
}

// Principal is who a request comes from.
type Principal struct {
	// ID is the API key's id or the JWT's sub. It is also in Fiber's locals
	// under PrincipalIDLocal.
	ID string
	// Method is how it authenticated: "api_key" or "jwt".
	Method string
	Scopes Scopes
	// Expires is when the credential stops being valid (a JWT's exp plus
	// the leeway); zero for API keys.
	Expires time.Time
	// idLocal is ID as an interface value, made once: storing a string in
	// Fiber's locals would otherwise allocate on every request.
	idLocal any
}

func newPrincipal(id, method string, scopes Scopes) *Principal {
	return &Principal{ID: id, Method: method, Scopes: scopes, idLocal: id}
}

// expired reports whether the credential ran out (long-lived WebSockets
// check it per call).
func (p *Principal) expired(now time.Time) bool {
	return !p.Expires.IsZero() && !now.Before(p.Expires)
}
