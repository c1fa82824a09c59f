package consumers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
)

// A consumer: a Mux of methods served by a Server that reads the handler's
// calls from Redis, until SIGTERM, then drains. (Compiled, not run: it needs
// a Redis.)
func Example() {
	mux := consumers.NewMux()
	mux.HandleFunc("echo", func(ctx context.Context, r *consumers.Request) (any, error) {
		return r.Params, nil // json.RawMessage: sent back byte for byte
	}, consumers.Describe("returns its params"))

	rdb, err := consumers.ConnectRedis(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()
	srv, err := consumers.NewServer(rdb, consumers.Config{Handler: "echo", Concurrency: 16}, mux)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Serve until ctx ends, then finish the calls in flight for up to 30s.
	if err := srv.Run(ctx, 30*time.Second); err != nil {
		log.Fatal(err)
	}
}

// Settings from the environment (STREAMRPC_HANDLER, STREAMRPC_CONCURRENCY,
// …; docs/configuration.md). (Compiled, not run: it needs a Redis.)
func ExampleConfigFromEnv() {
	cfg, err := consumers.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	rdb, err := consumers.ConnectRedis(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()
	srv, err := consumers.NewServer(rdb, cfg, consumers.NewMux())
	if err != nil {
		log.Fatal(err)
	}
	_ = srv.Run(context.Background(), 30*time.Second)
}

// A Mux routes a call to its method, as a Server does with each call it
// reads; here it is called directly.
func ExampleMux() {
	mux := consumers.NewMux()
	mux.HandleFunc("add", func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct{ A, B int }
		if err := r.Bind(&p); err != nil {
			return nil, err // an invalid-params error, as it is
		}
		return map[string]int{"sum": p.A + p.B}, nil
	}, consumers.Describe("adds two numbers"))

	res, err := mux.ServeRPC(context.Background(), &consumers.Request{Method: "add", Params: json.RawMessage(`{"a":2,"b":3}`)})
	fmt.Println(res, err)
	_, err = mux.ServeRPC(context.Background(), &consumers.Request{Method: "add", Params: json.RawMessage(`"two"`)})
	var rerr *consumers.Error
	fmt.Println(errors.As(err, &rerr) && rerr.Code == consumers.CodeInvalidParams)
	_, err = mux.ServeRPC(context.Background(), &consumers.Request{Method: "sub"})
	fmt.Println(errors.Is(err, consumers.ErrMethodNotFound))
	for _, m := range mux.Methods() {
		fmt.Printf("%s: %s\n", m.Name, m.Description)
	}
	// Output:
	// map[sum:5] <nil>
	// true
	// true
	// add: adds two numbers
}

// Middleware wraps every method of a Mux, like net/http middleware.
func ExampleMux_Use() {
	logCalls := func(next consumers.Handler) consumers.Handler {
		return consumers.HandlerFunc(func(ctx context.Context, r *consumers.Request) (any, error) {
			fmt.Println("call", r.Method, "attempt", r.Attempt)
			return next.ServeRPC(ctx, r)
		})
	}
	mux := consumers.NewMux()
	mux.Use(logCalls)
	mux.HandleFunc("ping", func(ctx context.Context, r *consumers.Request) (any, error) { return "pong", nil })

	res, _ := mux.ServeRPC(context.Background(), &consumers.Request{Method: "ping", Attempt: 1})
	fmt.Println(res)
	// Output:
	// call ping attempt 1
	// pong
}

// A handler's own error: its code, message and data reach the caller as they
// are (HTTP 422 at the edge). Errors are final unless they say otherwise.
func ExampleError() {
	greet := func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct{ Name string }
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.Name == "" {
			return nil, &consumers.Error{Code: 1001, Message: "name is required", Data: map[string]string{"field": "name"}}
		}
		return "Hello, " + p.Name + "!", nil
	}
	_, err := greet(context.Background(), &consumers.Request{Params: json.RawMessage(`{}`)})
	fmt.Println(err, consumers.IsRetryable(err))
	// Output: rpc error 1001: name is required false
}

// Retryable asks for another attempt after a backoff, up to MaxAttempts,
// then the call goes to the dead letters.
func ExampleRetryable() {
	query := func() error { return io.ErrUnexpectedEOF } // a dependency's hiccup
	handler := func(ctx context.Context, r *consumers.Request) (any, error) {
		if err := query(); errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, consumers.Retryable(err) // try again later
		}
		return "ok", nil
	}
	_, err := handler(context.Background(), &consumers.Request{})
	fmt.Println(consumers.IsRetryable(err), errors.Is(err, io.ErrUnexpectedEOF))
	fmt.Println(consumers.IsRetryable(consumers.Errorf(1002, "card declined")))
	// Output:
	// true true
	// false
}

// A Sidecar forwards each call to an HTTP app next to it; here the app is
// an httptest server and the Sidecar is called directly, as a Server would.
func ExampleSidecar() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ Name string }
		_ = json.NewDecoder(r.Body).Decode(&p)
		w.Header().Set("Content-Type", "application/json")
		if p.Name == "" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":{"code":1001,"message":"name is required"}}`)
			return
		}
		fmt.Fprintf(w, `{"greeting":"Hello, %s! (attempt %s)"}`, p.Name, r.Header.Get(consumers.HeaderAttempt))
	}))
	defer app.Close()

	side, err := consumers.NewSidecar(consumers.SidecarConfig{
		UpstreamURL: app.URL,
		Methods:     consumers.MethodList{{Name: "greet", Description: "says hello"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer side.Close()
	// With a Server: consumers.NewServer(rdb, cfg, side), then side.WaitReady
	// and srv.Start.
	res, err := side.ServeRPC(context.Background(), &consumers.Request{ID: "app.01JD", Handler: "app", Method: "greet", Attempt: 1, Params: json.RawMessage(`{"name":"Ada"}`)})
	fmt.Printf("%s %v\n", res, err)
	_, err = side.ServeRPC(context.Background(), &consumers.Request{ID: "app.01JE", Handler: "app", Method: "greet", Attempt: 1, Params: json.RawMessage(`{}`)})
	fmt.Println(err, consumers.IsRetryable(err))
	// Output:
	// {"greeting":"Hello, Ada! (attempt 1)"} <nil>
	// rpc error 1001: name is required false
}

// A handler that streams: partial results (each delivered, in order) and
// progress (coalesced) before its final result. A caller that streams (SSE,
// WebSocket $/progress, client.CallStream) sees them as they come; one that
// does not gets the final result alone. See docs/streaming.md.
func ExampleRequest_Partial() {
	mux := consumers.NewMux()
	mux.HandleFunc("rows", func(ctx context.Context, r *consumers.Request) (any, error) {
		rows := []string{"ada", "grace", "edsger"}
		for i, row := range rows {
			if err := r.Partial(map[string]string{"name": row}); err != nil {
				return nil, err // cancelled, past the deadline, or past a limit: stop
			}
			_ = r.Progress(map[string]int{"done": i + 1, "of": len(rows)})
		}
		return map[string]int{"rows": len(rows)}, nil
	})
	_ = mux
}
