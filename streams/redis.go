package streams

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRedisURL wraps a REDIS_URL that cannot be used.
var ErrRedisURL = errors.New("invalid REDIS_URL")

// RedisOptions are the connection settings shared by the edge and consumers.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS. Required.
	URL string `env:"REDIS_URL"`
	// PoolSize bounds the connections to Redis. Calls in flight do not hold a
	// connection, so this stays small at any load. Default 32.
	PoolSize int `env:"STREAMRPC_REDIS_POOL_SIZE"`
	// DialTimeout bounds connecting; short, so an outage answers 503 quickly. Default 2s.
	DialTimeout time.Duration `env:"STREAMRPC_REDIS_DIAL_TIMEOUT"`
}

// Connect returns a go-redis client for opts. It does not dial: the first
// command does, and an unreachable Redis is an error then, not now.
func Connect(opts RedisOptions) (redis.UniversalClient, error) {
	if opts.URL == "" {
		return nil, fmt.Errorf("%w: empty", ErrRedisURL)
	}
	o, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRedisURL, err)
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
