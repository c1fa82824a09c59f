package app

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/streamrpc/streamrpc/streams"
	"go.opentelemetry.io/otel/trace"
)

// ErrConfig wraps every error Config.Validate returns.
var ErrConfig = errors.New("app: invalid config")

// Config configures the edge. The zero value works: each field's default is
// given beside it. The env tags are the settings' names (see .env.example).
type Config struct {
	// Addr is the address the edge listens on. Default ":8080"; `streamrpc dev`
	// listens on "127.0.0.1:8080" unless it is set (dev runs open).
	Addr string `env:"STREAMRPC_ADDR"`
	// CallTimeout is the longest a call waits for its reply; a call may ask
	// for less with a Request-Timeout header (seconds). Default 30s.
	CallTimeout time.Duration `env:"STREAMRPC_CALL_TIMEOUT"`
	// MaxBody is the largest request body accepted, in bytes. Default 1 MiB.
	MaxBody int `env:"STREAMRPC_MAX_BODY"`
	// ResultTTL is how long a call's result stays readable by id. Default 10m.
	ResultTTL time.Duration `env:"STREAMRPC_RESULT_TTL"`
	// Durability makes the edge confirm each call with replicas (Redis WAIT)
	// before it tells the caller the call is accepted. Default: off.
	Durability streams.Durability
	// ShutdownGrace is how long a stopping edge waits for calls in flight. Default 30s.
	ShutdownGrace time.Duration `env:"STREAMRPC_SHUTDOWN_GRACE"`
	// DrainDelay is how long a stopping edge (`streamrpc edge` on SIGTERM)
	// keeps serving everything while GET /readyz answers 503, before it stops
	// accepting connections: the time load balancers need to notice. Set it
	// to the readiness probe's period times its failure threshold. Default 0.
	DrainDelay time.Duration `env:"STREAMRPC_DRAIN_DELAY"`
	// BacklogLimit refuses calls with 503 once a handler has this many calls
	// queued or running. Default 0: no limit.
	BacklogLimit int64 `env:"STREAMRPC_BACKLOG_LIMIT"`
	// JSONRPCMaxBatch is the most calls one JSON-RPC batch may hold (POST
	// /jsonrpc and /ws); a larger batch is answered with one -32600. Default 1000.
	JSONRPCMaxBatch int `env:"STREAMRPC_JSONRPC_MAX_BATCH"`
	// WSMaxMessage is the largest WebSocket message accepted, in bytes; a
	// larger one closes the connection with 1009. Default 1 MiB.
	WSMaxMessage int64 `env:"STREAMRPC_WS_MAX_MESSAGE"`
	// WSMaxInFlight is how many calls one WebSocket connection may have in
	// flight; a call past it is answered at once with -32005. Default 1024.
	WSMaxInFlight int `env:"STREAMRPC_WS_MAX_IN_FLIGHT"`
	// WSMaxConns is how many WebSocket connections this edge holds; an
	// upgrade past it is refused with 503. Default 10000.
	WSMaxConns int `env:"STREAMRPC_WS_MAX_CONNS"`
	// WSWriteQueue bounds the bytes of answers queued for one WebSocket
	// connection; past it the connection is closed with 4008. Default 8 MiB.
	WSWriteQueue int `env:"STREAMRPC_WS_WRITE_QUEUE"`
	// WSWriteTimeout is the longest one write to a WebSocket may take before
	// the connection is dropped. Default 10s.
	WSWriteTimeout time.Duration `env:"STREAMRPC_WS_WRITE_TIMEOUT"`
	// WSPingInterval is how often the edge pings each WebSocket. Default 30s.
	WSPingInterval time.Duration `env:"STREAMRPC_WS_PING_INTERVAL"`
	// WSPongTimeout: a peer that sends nothing (no pong, no message) for
	// WSPingInterval+WSPongTimeout is dead and its connection is dropped. Default 10s.
	WSPongTimeout time.Duration `env:"STREAMRPC_WS_PONG_TIMEOUT"`
	// Auth is "" or "none". "" (the default): authentication is on exactly
	// when API keys or a JWT key are configured below, and off otherwise, so
	// that the library's zero Config stays open. "none": run open on purpose;
	// `streamrpc edge` refuses to start open without it. See docs/security.md.
	Auth string `env:"STREAMRPC_AUTH"`
	// APIKeys are the accepted API keys, hashed: entries "id:sha256hex:scopes"
	// separated by ";" or newlines, scopes space-separated (`streamrpc
	// hash-key` prints a new key and its entry). Default: none.
	APIKeys string `env:"STREAMRPC_API_KEYS"`
	// JWTHS256Secret verifies HS256 JWTs; 32 bytes or more. Default: none.
	JWTHS256Secret string `env:"STREAMRPC_JWT_HS256_SECRET"`
	// JWTPublicKeyFile is a PEM public key that verifies RS256 (RSA) or
	// ES256 (P-256) JWTs. Default: none.
	JWTPublicKeyFile string `env:"STREAMRPC_JWT_PUBLIC_KEY_FILE"`
	// JWTJWKSFile is a JWKS file whose RSA and P-256 keys verify RS256 and
	// ES256 JWTs, chosen by kid; read once at start. Default: none.
	JWTJWKSFile string `env:"STREAMRPC_JWT_JWKS_FILE"`
	// JWTIssuer is the iss every JWT must carry; required with a JWT key.
	JWTIssuer string `env:"STREAMRPC_JWT_ISSUER"`
	// JWTAudience must be among every JWT's aud; required with a JWT key.
	JWTAudience string `env:"STREAMRPC_JWT_AUDIENCE"`
	// JWTLeeway is the clock skew allowed on exp and nbf, at most 5m. Default 30s.
	JWTLeeway time.Duration `env:"STREAMRPC_JWT_LEEWAY"`

	// Rate limits, shared by every edge on the same Redis (docs/security.md,
	// "Rate limits and limits"). A request whose authentication set a principal
	// (Fiber local "streamrpc.principal_id") counts against the principal's
	// limit, any other against its client IP address's. /healthz, /readyz
	// and the dashboard's static files are not limited. A request over the
	// limit is answered 429 rate_limited with Retry-After.

	// RateLimitPrincipal is the requests per second allowed to each
	// principal, on average. Default 0: no limit.
	RateLimitPrincipal float64 `env:"STREAMRPC_RATE_LIMIT_PRINCIPAL"`
	// RateLimitPrincipalBurst is how many requests a principal may make at
	// once after a quiet spell. Default: one second's worth (at least 1).
	RateLimitPrincipalBurst int `env:"STREAMRPC_RATE_LIMIT_PRINCIPAL_BURST"`
	// RateLimitIP is the requests per second allowed to each client IP
	// address without a principal. Default 0: no limit.
	RateLimitIP float64 `env:"STREAMRPC_RATE_LIMIT_IP"`
	// RateLimitIPBurst is the burst per IP address. Default: one second's
	// worth (at least 1).
	RateLimitIPBurst int `env:"STREAMRPC_RATE_LIMIT_IP_BURST"`
	// MaxHeaderBytes bounds a request's line and headers; a larger one is
	// answered 431. Default 8 KiB.
	MaxHeaderBytes int `env:"STREAMRPC_MAX_HEADER_BYTES"`
	// ReadTimeout bounds the reading of a request, its line and headers and
	// its body, from the connection's first byte (or, on a keep-alive
	// connection, from the request's first byte): a client that sends half a
	// header and stops is dropped when it passes. It does not bound the
	// answer: long-polls (?wait=), /events and WebSockets (which keep their
	// own ping deadline) stay open. Default 15s.
	ReadTimeout time.Duration `env:"STREAMRPC_READ_TIMEOUT"`
	// IdleTimeout closes a keep-alive connection that sends no next request
	// for this long. Keep it above the idle timeout of a load balancer in
	// front (AWS ALB: 60s), so that the balancer, not the edge, closes idle
	// connections first. Default 75s.
	IdleTimeout time.Duration `env:"STREAMRPC_IDLE_TIMEOUT"`
	// MaxConnsPerIP bounds the TCP connections (HTTP keep-alive and
	// WebSocket alike) one client IP address holds to this edge; past it a
	// new connection is answered 429 rate_limited and closed. Default 0: no
	// limit.
	MaxConnsPerIP int `env:"STREAMRPC_MAX_CONNS_PER_IP"`
	// WSMaxConnsPerIP bounds the WebSocket connections one client IP address
	// holds to this edge; an upgrade past it is refused with 429
	// rate_limited. Default 0: no limit.
	WSMaxConnsPerIP int `env:"STREAMRPC_WS_MAX_CONNS_PER_IP"`

	// CORSOrigins lists the origins (scheme://host[:port], comma-separated)
	// whose browser pages may call the API routes (/rpc, /jsonrpc, /events,
	// /handlers, ...) and open /ws; "*" lets any origin call them (with a
	// bearer token or API key: answers never allow credentials). The
	// dashboard (/ui) stays same-origin whatever it says. Default empty:
	// same-origin only. See docs/security.md.
	CORSOrigins string `env:"STREAMRPC_CORS_ORIGINS"`
	// AllowLocalOrigins also takes WebSocket upgrades from
	// http://localhost:* and http://127.0.0.1:* pages; `streamrpc dev` sets
	// it. Default false.
	AllowLocalOrigins bool `env:"-"`

	// Logger receives the edge's logs. Default slog.Default().
	Logger *slog.Logger `env:"-"`
	// TracerProvider, if set, traces every call: a server span per call,
	// child of the caller's W3C traceparent, whose context travels in the
	// call's envelope to the consumer. Default nil: tracing off, at no cost.
	TracerProvider trace.TracerProvider `env:"-"`
}

// Validate reports settings that cannot work; errors wrap ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.CallTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_CALL_TIMEOUT %s is negative", ErrConfig, c.CallTimeout)
	case c.MaxBody < 0:
		return fmt.Errorf("%w: STREAMRPC_MAX_BODY %d is negative", ErrConfig, c.MaxBody)
	case c.ResultTTL < 0:
		return fmt.Errorf("%w: STREAMRPC_RESULT_TTL %s is negative", ErrConfig, c.ResultTTL)
	case c.ResultTTL > 0 && c.ResultTTL < time.Second:
		return fmt.Errorf("%w: STREAMRPC_RESULT_TTL %s is under 1s", ErrConfig, c.ResultTTL)
	case c.ShutdownGrace < 0:
		return fmt.Errorf("%w: STREAMRPC_SHUTDOWN_GRACE %s is negative", ErrConfig, c.ShutdownGrace)
	case c.DrainDelay < 0:
		return fmt.Errorf("%w: STREAMRPC_DRAIN_DELAY %s is negative", ErrConfig, c.DrainDelay)
	case c.BacklogLimit < 0:
		return fmt.Errorf("%w: STREAMRPC_BACKLOG_LIMIT %d is negative", ErrConfig, c.BacklogLimit)
	case c.JSONRPCMaxBatch < 0:
		return fmt.Errorf("%w: STREAMRPC_JSONRPC_MAX_BATCH %d is negative", ErrConfig, c.JSONRPCMaxBatch)
	case c.WSMaxMessage < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_MESSAGE %d is negative", ErrConfig, c.WSMaxMessage)
	case c.WSMaxInFlight < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_IN_FLIGHT %d is negative", ErrConfig, c.WSMaxInFlight)
	case c.WSMaxConns < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_CONNS %d is negative", ErrConfig, c.WSMaxConns)
	case c.WSWriteQueue < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_WRITE_QUEUE %d is negative", ErrConfig, c.WSWriteQueue)
	case c.WSWriteTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_WRITE_TIMEOUT %s is negative", ErrConfig, c.WSWriteTimeout)
	case c.WSPingInterval < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_PING_INTERVAL %s is negative", ErrConfig, c.WSPingInterval)
	case c.WSPongTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_PONG_TIMEOUT %s is negative", ErrConfig, c.WSPongTimeout)
	case c.RateLimitPrincipal < 0 || math.IsNaN(c.RateLimitPrincipal) || math.IsInf(c.RateLimitPrincipal, 0):
		return fmt.Errorf("%w: STREAMRPC_RATE_LIMIT_PRINCIPAL %v is not a rate", ErrConfig, c.RateLimitPrincipal)
	case c.RateLimitIP < 0 || math.IsNaN(c.RateLimitIP) || math.IsInf(c.RateLimitIP, 0):
		return fmt.Errorf("%w: STREAMRPC_RATE_LIMIT_IP %v is not a rate", ErrConfig, c.RateLimitIP)
	case c.RateLimitPrincipalBurst < 0:
		return fmt.Errorf("%w: STREAMRPC_RATE_LIMIT_PRINCIPAL_BURST %d is negative", ErrConfig, c.RateLimitPrincipalBurst)
	case c.RateLimitIPBurst < 0:
		return fmt.Errorf("%w: STREAMRPC_RATE_LIMIT_IP_BURST %d is negative", ErrConfig, c.RateLimitIPBurst)
	case c.MaxHeaderBytes < 0:
		return fmt.Errorf("%w: STREAMRPC_MAX_HEADER_BYTES %d is negative", ErrConfig, c.MaxHeaderBytes)
	case c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 1024:
		return fmt.Errorf("%w: STREAMRPC_MAX_HEADER_BYTES %d is under 1024", ErrConfig, c.MaxHeaderBytes)
	case c.ReadTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_READ_TIMEOUT %s is negative", ErrConfig, c.ReadTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_IDLE_TIMEOUT %s is negative", ErrConfig, c.IdleTimeout)
	case c.MaxConnsPerIP < 0:
		return fmt.Errorf("%w: STREAMRPC_MAX_CONNS_PER_IP %d is negative", ErrConfig, c.MaxConnsPerIP)
	case c.WSMaxConnsPerIP < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_CONNS_PER_IP %d is negative", ErrConfig, c.WSMaxConnsPerIP)
	}
	if _, err := parseCORSOrigins(c.CORSOrigins); err != nil {
		return err
	}
	return c.validateAuth()
}

// AuthNone is the STREAMRPC_AUTH value that runs the edge open on purpose.
const AuthNone = "none"

// AuthEnabled reports whether the edge authenticates requests: API keys or a
// JWT key are configured (and STREAMRPC_AUTH is not "none").
func (c Config) AuthEnabled() bool {
	return c.Auth != AuthNone && (strings.TrimSpace(c.APIKeys) != "" || c.jwtConfigured())
}

func (c Config) jwtConfigured() bool {
	return c.JWTHS256Secret != "" || c.JWTPublicKeyFile != "" || c.JWTJWKSFile != ""
}

func (c Config) validateAuth() error {
	configured := strings.TrimSpace(c.APIKeys) != "" || c.jwtConfigured()
	switch {
	case c.Auth != "" && c.Auth != AuthNone:
		return fmt.Errorf("%w: STREAMRPC_AUTH %q: want empty (on when keys are configured) or %q", ErrConfig, c.Auth, AuthNone)
	case c.Auth == AuthNone && configured:
		return fmt.Errorf("%w: STREAMRPC_AUTH=none but API keys or JWT keys are configured: choose one", ErrConfig)
	case c.JWTLeeway < 0 || c.JWTLeeway > 5*time.Minute:
		return fmt.Errorf("%w: STREAMRPC_JWT_LEEWAY %s: want 0 to 5m", ErrConfig, c.JWTLeeway)
	case c.JWTHS256Secret != "" && len(c.JWTHS256Secret) < 32:
		return fmt.Errorf("%w: STREAMRPC_JWT_HS256_SECRET is %d bytes; HS256 needs 32 or more", ErrConfig, len(c.JWTHS256Secret))
	case c.jwtConfigured() && (c.JWTIssuer == "" || c.JWTAudience == ""):
		return fmt.Errorf("%w: a JWT key is configured: set STREAMRPC_JWT_ISSUER and STREAMRPC_JWT_AUDIENCE too (tokens minted for other services must not pass)", ErrConfig)
	}
	if _, err := parseAPIKeys(c.APIKeys); err != nil {
		return err
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.MaxBody == 0 {
		c.MaxBody = 1 << 20
	}
	if c.ResultTTL == 0 {
		c.ResultTTL = 10 * time.Minute
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.JSONRPCMaxBatch == 0 {
		c.JSONRPCMaxBatch = 1000
	}
	if c.WSMaxMessage == 0 {
		c.WSMaxMessage = 1 << 20
	}
	if c.WSMaxInFlight == 0 {
		c.WSMaxInFlight = 1024
	}
	if c.WSMaxConns == 0 {
		c.WSMaxConns = 10000
	}
	if c.WSWriteQueue == 0 {
		c.WSWriteQueue = 8 << 20
	}
	if c.WSWriteTimeout == 0 {
		c.WSWriteTimeout = 10 * time.Second
	}
	if c.WSPingInterval == 0 {
		c.WSPingInterval = 30 * time.Second
	}
	if c.WSPongTimeout == 0 {
		c.WSPongTimeout = 10 * time.Second
	}
	if c.JWTLeeway == 0 {
		c.JWTLeeway = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 15 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 75 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
