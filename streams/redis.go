package streams

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
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
	// URL says where Redis is, and which kind; rediss instead of redis in
	// each scheme means TLS. Required.
	//
	//	redis://[user:password@]host:port[/db]                  one node
	//	redis+cluster://[user:password@]host:port?addr=host2:port&addr=...
	//	                                                        Redis Cluster: seed nodes
	//	redis+sentinel://[sentinel-user:sentinel-password@]host:port?master_name=NAME
	//	    &addr=sentinel2:port&username=user&password=password[&db=N]
	//	                                                        Sentinel: the sentinels, the
	//	                                                        primary's name, its credentials
	//
	// Query parameters are go-redis's (redis.ParseURL, ParseClusterURL,
	// ParseFailoverURL): e.g. read_timeout=3s.
	URL string `env:"REDIS_URL"`
	// PoolSize bounds the connections to Redis (to each node, on a Cluster).
	// Calls in flight do not hold a connection, so this stays small at any
	// load. Default 32.
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

// Connect returns a go-redis client for opts: a single node, a Redis Cluster
// or a Sentinel-managed primary, as the URL's scheme says (see
// RedisOptions.URL). It does not dial: the first command does, and an
// unreachable Redis is an error then, not now. TLS files are read now, so
// that a wrong path fails at start.
func Connect(opts RedisOptions) (redis.UniversalClient, error) {
	if opts.URL == "" {
		return nil, fmt.Errorf("%w: empty", ErrRedisURL)
	}
	scheme, rest, ok := strings.Cut(opts.URL, "://")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme (redis://, rediss://, redis+cluster://, redis+sentinel://, ...)", ErrRedisURL, opts.URL)
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: unknown scheme %q", ErrRedisURL, scheme)
	}
	u := base + "://" + rest // the URL as go-redis's parsers read it
	poolSize := opts.PoolSize
	if poolSize <= 0 {
		poolSize = 32
	}
	dialTimeout := opts.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = 2 * time.Second
	}
	switch mode {
	case "":
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRedisURL, err)
		}
		if o.TLSConfig, err = opts.tlsConfig(o.TLSConfig); err != nil {
			return nil, err
		}
		o.PoolSize, o.DialTimeout, o.MaxRetries, o.PoolTimeout = poolSize, dialTimeout, 1, 5*time.Second
		return redis.NewClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRedisURL, err)
		}
		if o.TLSConfig, err = opts.tlsConfig(o.TLSConfig); err != nil {
			return nil, err
		}
		// PoolSize is per node. Retries ride out MOVED/ASK after a
		// failover or a resharding; go-redis refreshes its slot map on them.
		o.PoolSize, o.DialTimeout, o.PoolTimeout = poolSize, dialTimeout, 5*time.Second
		if o.MaxRetries == 0 {
			o.MaxRetries = 3
		}
		// go-redis reloads the slot map on MOVED/ASK, and otherwise only
		// when it is this old (default 60s). A dead master answers no
		// MOVED: its connections just fail, so without a short interval
		// and a reload on such failures (reloadOnFailure) its slots would
		// stall for up to a minute after its replica took over.
		o.ClusterStateReloadInterval = clusterStateReload
		cc := redis.NewClusterClient(o)
		cc.AddHook(reloadOnFailure{cc})
		return cc, nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRedisURL, err)
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("%w: a redis+sentinel:// URL needs ?master_name=", ErrRedisURL)
		}
		if o.TLSConfig, err = opts.tlsConfig(o.TLSConfig); err != nil {
			return nil, err
		}
		o.PoolSize, o.DialTimeout, o.PoolTimeout = poolSize, dialTimeout, 5*time.Second
		if o.MaxRetries == 0 {
			o.MaxRetries = 1
		}
		return redis.NewFailoverClient(o), nil
	}
	return nil, fmt.Errorf("%w: unknown scheme %q (the mode after '+' is cluster or sentinel)", ErrRedisURL, scheme)
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

// clusterStateReload is how old the Cluster slot map may get before go-redis
// reloads it (in the background, when a command needs it).
const clusterStateReload = 2 * time.Second

// reloadOnFailure asks a ClusterClient to reload its slot map when a command
// fails as it does when a master is gone or demoted (a failover): a broken
// connection, CLUSTERDOWN, READONLY, TRYAGAIN. go-redis reloads at most every
// 200 ms however often it is asked.
type reloadOnFailure struct{ cc *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if h.check(ctx, c.Err()) {
				break
			}
		}
		return err
	}
}

func (h reloadOnFailure) check(ctx context.Context, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	if errors.Is(unavailable(err), ErrUnavailable) {
		h.cc.ReloadState(ctx)
		return true
	}
	return false
}
