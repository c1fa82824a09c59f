package app

import (
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		mention string // "" for a valid config
	}{
		{name: "zero value", cfg: Config{}},
		{name: "all set", cfg: setConfig},
		{name: "result ttl exactly 1s", cfg: Config{ResultTTL: time.Second}},
		{name: "negative call timeout", cfg: Config{CallTimeout: -time.Second}, mention: "STREAMRPC_CALL_TIMEOUT"},
		{name: "negative max body", cfg: Config{MaxBody: -1}, mention: "STREAMRPC_MAX_BODY"},
		{name: "negative result ttl", cfg: Config{ResultTTL: -time.Second}, mention: "STREAMRPC_RESULT_TTL"},
		{name: "result ttl under 1s", cfg: Config{ResultTTL: 999 * time.Millisecond}, mention: "under 1s"},
		{name: "negative shutdown grace", cfg: Config{ShutdownGrace: -1}, mention: "STREAMRPC_SHUTDOWN_GRACE"},
		{name: "negative backlog limit", cfg: Config{BacklogLimit: -1}, mention: "STREAMRPC_BACKLOG_LIMIT"},
		{name: "negative JSON-RPC batch", cfg: Config{JSONRPCMaxBatch: -1}, mention: "STREAMRPC_JSONRPC_MAX_BATCH"},
		{name: "negative ws max message", cfg: Config{WSMaxMessage: -1}, mention: "STREAMRPC_WS_MAX_MESSAGE"},
		{name: "negative ws in flight", cfg: Config{WSMaxInFlight: -1}, mention: "STREAMRPC_WS_MAX_IN_FLIGHT"},
		{name: "negative ws conns", cfg: Config{WSMaxConns: -1}, mention: "STREAMRPC_WS_MAX_CONNS"},
		{name: "negative ws write queue", cfg: Config{WSWriteQueue: -1}, mention: "STREAMRPC_WS_WRITE_QUEUE"},
		{name: "negative ws write timeout", cfg: Config{WSWriteTimeout: -time.Second}, mention: "STREAMRPC_WS_WRITE_TIMEOUT"},
		{name: "negative ws ping interval", cfg: Config{WSPingInterval: -time.Second}, mention: "STREAMRPC_WS_PING_INTERVAL"},
		{name: "negative ws pong timeout", cfg: Config{WSPongTimeout: -time.Second}, mention: "STREAMRPC_WS_PONG_TIMEOUT"},
		{name: "auth none", cfg: Config{Auth: "none"}},
		{name: "api keys", cfg: Config{APIKeys: "ci:" + strings.Repeat("ab", 32) + ":call:echo.* read;\nops:" + strings.Repeat("cd", 32) + ":admin"}},
		{name: "auth neither none nor empty", cfg: Config{Auth: "off"}, mention: "STREAMRPC_AUTH"},
		{name: "auth none with keys", cfg: Config{Auth: "none", APIKeys: "ci:" + strings.Repeat("ab", 32) + ":read"}, mention: "choose one"},
		{name: "api key without scopes field", cfg: Config{APIKeys: "ci:" + strings.Repeat("ab", 32)}, mention: "id:sha256hex:scopes"},
		{name: "api key hash too short", cfg: Config{APIKeys: "ci:abcd:read"}, mention: "64 hex digits"},
		{name: "api key bad id", cfg: Config{APIKeys: "c i:" + strings.Repeat("ab", 32) + ":read"}, mention: "API key id"},
		{name: "api key listed twice", cfg: Config{APIKeys: "ci:" + strings.Repeat("ab", 32) + ":read;ci:" + strings.Repeat("cd", 32) + ":read"}, mention: "twice"},
		{name: "api key bad call pattern", cfg: Config{APIKeys: "ci:" + strings.Repeat("ab", 32) + ":call:echo"}, mention: "call:<handler>.<method>"},
		{name: "api key bad glob", cfg: Config{APIKeys: "ci:" + strings.Repeat("ab", 32) + ":call:echo.[x"}, mention: "syntax error"},
		{name: "hs256 secret too short", cfg: Config{JWTHS256Secret: "short", JWTIssuer: "i", JWTAudience: "a"}, mention: "32 or more"},
		{name: "jwt without issuer", cfg: Config{JWTHS256Secret: strings.Repeat("s", 32), JWTAudience: "a"}, mention: "STREAMRPC_JWT_ISSUER"},
		{name: "jwt leeway too long", cfg: Config{JWTLeeway: time.Hour}, mention: "STREAMRPC_JWT_LEEWAY"},
		{name: "negative principal rate", cfg: Config{RateLimitPrincipal: -1}, mention: "STREAMRPC_RATE_LIMIT_PRINCIPAL"},
		{name: "NaN IP rate", cfg: Config{RateLimitIP: math.NaN()}, mention: "STREAMRPC_RATE_LIMIT_IP"},
		{name: "infinite IP rate", cfg: Config{RateLimitIP: math.Inf(1)}, mention: "STREAMRPC_RATE_LIMIT_IP"},
		{name: "negative principal burst", cfg: Config{RateLimitPrincipalBurst: -1}, mention: "STREAMRPC_RATE_LIMIT_PRINCIPAL_BURST"},
		{name: "negative IP burst", cfg: Config{RateLimitIPBurst: -1}, mention: "STREAMRPC_RATE_LIMIT_IP_BURST"},
		{name: "negative header bytes", cfg: Config{MaxHeaderBytes: -1}, mention: "STREAMRPC_MAX_HEADER_BYTES"},
		{name: "tiny header bytes", cfg: Config{MaxHeaderBytes: 100}, mention: "under 1024"},
		{name: "negative conns per IP", cfg: Config{MaxConnsPerIP: -1}, mention: "STREAMRPC_MAX_CONNS_PER_IP"},
		{name: "negative ws conns per IP", cfg: Config{WSMaxConnsPerIP: -1}, mention: "STREAMRPC_WS_MAX_CONNS_PER_IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.mention == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Validate() = %q, want it to mention %q", err, tt.mention)
			}
			// New refuses the same config before touching Redis.
			if e, err := New(nil, tt.cfg); !errors.Is(err, ErrConfig) || e != nil {
				t.Fatalf("New() = %v, %v; want nil and an ErrConfig", e, err)
			}
		})
	}
}

// setConfig has every field (but Logger) set to a value that is not its default.
var setConfig = Config{
	Addr: "127.0.0.1:0", CallTimeout: time.Second, MaxBody: 7, ResultTTL: time.Hour, ShutdownGrace: time.Millisecond,
	BacklogLimit: 3, JSONRPCMaxBatch: 2, WSMaxMessage: 100, WSMaxInFlight: 4, WSMaxConns: 5, WSWriteQueue: 600,
	WSWriteTimeout: time.Minute, WSPingInterval: 2 * time.Second, WSPongTimeout: 3 * time.Second,
	JWTLeeway:          time.Second,
	RateLimitPrincipal: 10, RateLimitPrincipalBurst: 20, RateLimitIP: 0.5, RateLimitIPBurst: 2,
	MaxHeaderBytes: 2048, ReadTimeout: 4 * time.Second, IdleTimeout: 5 * time.Second, MaxConnsPerIP: 50, WSMaxConnsPerIP: 6,
}

func TestConfigWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero value",
			in:   Config{},
			want: Config{
				Addr: ":8080", CallTimeout: 30 * time.Second, MaxBody: 1 << 20, ResultTTL: 10 * time.Minute, ShutdownGrace: 30 * time.Second,
				JSONRPCMaxBatch: 1000, WSMaxMessage: 1 << 20, WSMaxInFlight: 1024, WSMaxConns: 10000, WSWriteQueue: 8 << 20,
				WSWriteTimeout: 10 * time.Second, WSPingInterval: 30 * time.Second, WSPongTimeout: 10 * time.Second,
				JWTLeeway:      30 * time.Second,
				MaxHeaderBytes: 8 << 10, ReadTimeout: 15 * time.Second, IdleTimeout: 75 * time.Second,
			},
		},
		{
			name: "set values kept",
			in:   setConfig,
			want: setConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.withDefaults()
			if got.Logger == nil {
				t.Error("Logger = nil, want a default")
			}
			got.Logger = nil
			if got != tt.want {
				t.Fatalf("withDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
	l := slog.New(slog.DiscardHandler)
	if got := (Config{Logger: l}).withDefaults().Logger; got != l {
		t.Error("withDefaults replaced a set Logger")
	}
}
