package streams

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRedisURL wraps a REDIS_URL that cannot be used.
var ErrRedisURL = errors.New("invalid REDIS_URL")

// ErrRedisTLS wraps TLS settings that cannot be used: a file that cannot be
// read or holds no certificate, a certificate without its key, or TLS files
// given for a plain redis:// URL.
var ErrRedisTLS = errors.New("invalid Redis TLS settings")

// RedisOptions are the connection settings shared by the edge and consumers.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS. Required.
	URL string `env:"REDIS_URL"`
	// PoolSize bounds the connections to Redis. Calls in flight do not hold a
	// connection, so this stays small at any load. Default 32.
	PoolSize int `env:"STREAMRPC_REDIS_POOL_SIZE"`
	// DialTimeout bounds connecting; short, so an outage answers 503 quickly. Default 2s.
	DialTimeout time.Duration `env:"STREAMRPC_REDIS_DIAL_TIMEOUT"`

	// The TLS settings apply to a rediss:// URL only; given with redis:// they
	// are an error rather than silently unused, so that a typo in the scheme
	// cannot send passwords in the clear.

	// TLSCA is a PEM file of the CA certificates that sign the server's
	// certificate. Default: the system's roots.
	TLSCA string `env:"STREAMRPC_REDIS_TLS_CA"`
	// TLSCert and TLSKey are PEM files of a client certificate and its key,
	// for a Redis that requires them (tls-auth-clients yes). Default: none.
	TLSCert string `env:"STREAMRPC_REDIS_TLS_CERT"`
	TLSKey  string `env:"STREAMRPC_REDIS_TLS_KEY"`
	// TLSServerName is the name the server's certificate must carry, when it
	// is not the URL's host (e.g. Redis reached by IP address). Default: the
	// URL's host.
	TLSServerName string `env:"STREAMRPC_REDIS_TLS_SERVER_NAME"`
	// TLSInsecureSkipVerify accepts any server certificate. For development
	// only: it leaves the connection open to anyone on the path. Default false.
	TLSInsecureSkipVerify bool `env:"STREAMRPC_REDIS_TLS_INSECURE_SKIP_VERIFY"`
}

// Connect returns a go-redis client for opts. It does not dial: the first
// command does, and an unreachable Redis is an error then, not now. TLS
// files are read now, so that a wrong path fails at start.
func Connect(opts RedisOptions) (redis.UniversalClient, error) {
	if opts.URL == "" {
		return nil, fmt.Errorf("%w: empty", ErrRedisURL)
	}
	o, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRedisURL, err)
	}
	if o.TLSConfig, err = opts.tlsConfig(o.TLSConfig); err != nil {
		return nil, err
	}
	o.PoolSize = opts.PoolSize
	if o.PoolSize <= 0 {
		o.PoolSize = 32
	}
	o.DialTimeout = opts.DialTimeout
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	o.MaxRetries = 1
	o.PoolTimeout = 5 * time.Second
	return redis.NewClient(o), nil
}

// usesTLSSettings reports whether any TLS setting is given.
func (opts RedisOptions) usesTLSSettings() bool {
	return opts.TLSCA != "" || opts.TLSCert != "" || opts.TLSKey != "" || opts.TLSServerName != "" || opts.TLSInsecureSkipVerify
}

// tlsConfig completes the TLS config redis.ParseURL made for a rediss:// URL
// (nil for redis://) with the TLS settings.
func (opts RedisOptions) tlsConfig(base *tls.Config) (*tls.Config, error) {
	if base == nil {
		if opts.usesTLSSettings() {
			return nil, fmt.Errorf("%w: STREAMRPC_REDIS_TLS_* settings are given but REDIS_URL is not rediss://", ErrRedisTLS)
		}
		return nil, nil
	}
	cfg := base.Clone()
	cfg.MinVersion = tls.VersionTLS12
	if opts.TLSServerName != "" {
		cfg.ServerName = opts.TLSServerName
	}
	cfg.InsecureSkipVerify = opts.TLSInsecureSkipVerify
	if opts.TLSCA != "" {
		pem, err := os.ReadFile(opts.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%w: STREAMRPC_REDIS_TLS_CA: %v", ErrRedisTLS, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: STREAMRPC_REDIS_TLS_CA %s holds no PEM certificate", ErrRedisTLS, opts.TLSCA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case opts.TLSCert != "" && opts.TLSKey != "":
		pair, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: STREAMRPC_REDIS_TLS_CERT/KEY: %v", ErrRedisTLS, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case opts.TLSCert != "" || opts.TLSKey != "":
		return nil, fmt.Errorf("%w: STREAMRPC_REDIS_TLS_CERT and STREAMRPC_REDIS_TLS_KEY go together; only one is set", ErrRedisTLS)
	}
	return cfg, nil
}
