package app

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// TestMain fails the package's tests if a goroutine they started outlives
// them (goleak retries for a while, so stragglers that are stopping pass).
func TestMain(m *testing.M) {
	// The tests run edges against a Redis that cannot be reached on purpose;
	// go-redis would log every failed dial.
	redis.SetLogger(discardRedisLog{})
	goleak.VerifyTestMain(m,
		// fasthttp's one goroutine per process that keeps the Date header current.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's worker pool cleaner notices a stopped server only after
		// its 10s sleep; the tests check that Serve returns after Close.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
