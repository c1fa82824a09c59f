package integration

import (
	"context"
	"testing"
	"time"
)

// TestRedisHarnessStopStart checks the harness itself: data written with AOF on survives a
// graceful Stop/Start, Redis is unreachable while stopped, and the URL stays the same.
func TestRedisHarnessStopStart(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes")
	url := srv.URL
	c := srv.Client(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := c.Set(ctx, "harness:key", "persisted", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	srv.Stop(t)

	pingCtx, pingCancel := context.WithTimeout(ctx, 5*time.Second)
	err := c.Ping(pingCtx).Err()
	pingCancel()
	if err == nil {
		t.Fatalf("PING succeeded while redis is stopped")
	}
	t.Logf("PING while stopped failed as expected: %v", err)

	srv.Start(t)
	if srv.URL != url {
		t.Fatalf("URL changed across Stop/Start: %q -> %q", url, srv.URL)
	}

	// The same client must recover: its pooled connections died with the old process.
	waitUntil(t, 30*time.Second, func() error { return c.Ping(ctx).Err() })

	// Redis also saves an RDB on a graceful shutdown; check AOF is really the mode in use.
	if aof, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || aof["appendonly"] != "yes" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; want yes", aof, err)
	}

	got, err := c.Get(ctx, "harness:key").Result()
	if err != nil {
		t.Fatalf("GET after restart: %v", err)
	}
	if got != "persisted" {
		t.Fatalf("GET after restart = %q, want %q", got, "persisted")
	}
}
