package main

// The peers' processes. The orchestrator starts each of them as a child
// process of this same binary ("peers role NAME -flags"), so its CPU time can
// be read from /proc per process.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/gofiber/fiber/v2"
	"github.com/hibiken/asynq"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// roleConfig is what every role may need; each uses its part.
type roleConfig struct {
	addr   string        // HTTP listen address (edges) or NATS listen port (nats-server)
	redis  string        // host:port of the one Redis
	nats   string        // NATS URL
	poll   time.Duration // asynq edge: result poll interval
	id     string        // unique name for this run (reply topics, consumer names)
	reqTTL time.Duration // longest a call waits at an edge
}

// roles maps a role name to its body. Each runs until ctx ends (SIGTERM or
// SIGINT), then returns.
var roles = map[string]func(ctx context.Context, c roleConfig) error{
	"echo-edge":    echoEdge,
	"nats-server":  natsServer,
	"nats-edge":    natsEdge,
	"nats-worker":  natsWorker,
	"wm-edge":      watermillEdge,
	"wm-worker":    watermillWorker,
	"asynq-edge":   asynqEdge,
	"asynq-worker": asynqWorker,
}

func runRole(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "peers role: name missing")
		return 2
	}
	body, ok := roles[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "peers role: unknown role %q\n", args[0])
		return 2
	}
	var c roleConfig
	fs := flag.NewFlagSet("role "+args[0], flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen address")
	fs.StringVar(&c.redis, "redis", "127.0.0.1:6379", "Redis host:port")
	fs.StringVar(&c.nats, "nats", nats.DefaultURL, "NATS URL")
	fs.DurationVar(&c.poll, "poll", time.Millisecond, "asynq result poll interval")
	fs.StringVar(&c.id, "id", "peers", "unique run name")
	fs.DurationVar(&c.reqTTL, "timeout", 10*time.Second, "longest a call waits")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := body(ctx, c); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "peers role %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// newEdge is the one edge shape every peer shares: Fiber v2 with its defaults,
// POST /rpc answers {"result":<what call returned>} as application/json.
func newEdge(call func(ctx context.Context, body []byte) ([]byte, error)) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/rpc", func(c *fiber.Ctx) error {
		out, err := call(c.UserContext(), c.Body())
		if err != nil {
			return c.Status(fiber.StatusBadGateway).JSON(fiber.Map{"error": err.Error()})
		}
		buf := make([]byte, 0, len(out)+11)
		buf = append(buf, `{"result":`...)
		buf = append(buf, out...)
		buf = append(buf, '}')
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(buf)
	})
	return app
}

// serve runs app on addr until ctx ends.
func serve(ctx context.Context, app *fiber.App, addr string) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(addr) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-errc
		return nil
	}
}

// echoEdge is the baseline: no queue, the body comes straight back.
func echoEdge(ctx context.Context, c roleConfig) error {
	app := newEdge(func(_ context.Context, body []byte) ([]byte, error) {
		return append([]byte(nil), body...), nil // fasthttp reuses the request buffer
	})
	return serve(ctx, app, c.addr)
}

// natsServer is an embedded nats-server in its own process, its defaults
// (no JetStream: core request-reply needs none).
func natsServer(ctx context.Context, c roleConfig) error {
	var port int
	if _, err := fmt.Sscanf(c.addr[len("127.0.0.1:"):], "%d", &port); err != nil {
		return fmt.Errorf("-addr must be 127.0.0.1:PORT: %w", err)
	}
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, NoSigs: true})
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready")
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

const natsSubject = "echo"

// natsEdge: each HTTP call is one nats.go Request (the connection's shared
// reply subscription, "new style" request-reply): two broker hops per call.
func natsEdge(ctx context.Context, c roleConfig) error {
	nc, err := nats.Connect(c.nats)
	if err != nil {
		return err
	}
	defer nc.Close()
	app := newEdge(func(ctx context.Context, body []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, c.reqTTL)
		defer cancel()
		m, err := nc.RequestWithContext(ctx, natsSubject, body)
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	})
	return serve(ctx, app, c.addr)
}

// natsWorker answers every request with its data, in a queue group (so more
// workers would share the work), nats.go's defaults.
func natsWorker(ctx context.Context, c roleConfig) error {
	nc, err := nats.Connect(c.nats)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.QueueSubscribe(natsSubject, "workers", func(m *nats.Msg) {
		_ = m.Respond(m.Data)
	}); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nc.Drain()
}

const (
	wmRequests   = "requests"
	wmReplyTo    = "reply_to"
	wmCorrelated = "correlation_id"
)

// watermillEdge publishes each call to the requests stream with the edge's
// reply stream and the call's id in its metadata, and reads its reply stream
// with one fan-out subscriber (XREAD, no group), handing each reply to the
// waiting call by id. Watermill's redisstream defaults otherwise.
func watermillEdge(ctx context.Context, c roleConfig) error {
	rdb := redis.NewClient(&redis.Options{Addr: c.redis})
	defer rdb.Close()
	logger := watermill.NopLogger{}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	if err != nil {
		return err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: rdb}, logger)
	if err != nil {
		return err
	}
	replyTopic := "replies-" + c.id
	replies, err := sub.Subscribe(ctx, replyTopic)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	waiting := map[string]chan []byte{}
	go func() {
		for m := range replies {
			mu.Lock()
			ch := waiting[m.Metadata.Get(wmCorrelated)]
			mu.Unlock()
			if ch != nil {
				ch <- m.Payload
			}
			m.Ack()
		}
	}()
	app := newEdge(func(ctx context.Context, body []byte) ([]byte, error) {
		m := message.NewMessage(watermill.NewUUID(), append([]byte(nil), body...))
		m.Metadata.Set(wmReplyTo, replyTopic)
		ch := make(chan []byte, 1)
		mu.Lock()
		waiting[m.UUID] = ch
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(waiting, m.UUID)
			mu.Unlock()
		}()
		if err := pub.Publish(wmRequests, m); err != nil {
			return nil, err
		}
		t := time.NewTimer(c.reqTTL)
		defer t.Stop()
		select {
		case out := <-ch:
			return out, nil
		case <-t.C:
			return nil, errors.New("timed out")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	err = serve(ctx, app, c.addr)
	_ = sub.Close()
	return err
}

// watermillWorker takes requests through a consumer group (watermill's
// default subscriber: one message at a time, acked before the next) and
// publishes each reply to the stream the request names.
func watermillWorker(ctx context.Context, c roleConfig) error {
	rdb := redis.NewClient(&redis.Options{Addr: c.redis})
	defer rdb.Close()
	logger := watermill.NopLogger{}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	if err != nil {
		return err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: rdb, ConsumerGroup: "workers", Consumer: "worker-" + c.id,
	}, logger)
	if err != nil {
		return err
	}
	defer sub.Close()
	reqs, err := sub.Subscribe(ctx, wmRequests)
	if err != nil {
		return err
	}
	for m := range reqs {
		r := message.NewMessage(watermill.NewUUID(), m.Payload)
		r.Metadata.Set(wmCorrelated, m.UUID)
		if err := pub.Publish(m.Metadata.Get(wmReplyTo), r); err != nil {
			m.Nack()
			continue
		}
		m.Ack()
	}
	return nil
}

const asynqType = "echo"

// asynqEdge enqueues each call as a task (kept after completion so its result
// can be read) and polls the task's state every -poll until it completes.
func asynqEdge(ctx context.Context, c roleConfig) error {
	opt := asynq.RedisClientOpt{Addr: c.redis}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	app := newEdge(func(ctx context.Context, body []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, c.reqTTL)
		defer cancel()
		info, err := client.EnqueueContext(ctx, asynq.NewTask(asynqType, append([]byte(nil), body...)),
			asynq.Retention(time.Minute), asynq.MaxRetry(0))
		if err != nil {
			return nil, err
		}
		t := time.NewTicker(c.poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
			}
			ti, err := insp.GetTaskInfo(info.Queue, info.ID)
			if err != nil {
				return nil, err
			}
			switch ti.State {
			case asynq.TaskStateCompleted:
				return ti.Result, nil
			case asynq.TaskStateArchived:
				return nil, fmt.Errorf("task failed: %s", ti.LastErr)
			}
		}
	})
	return serve(ctx, app, c.addr)
}

// asynqWorker is an asynq server with its defaults (concurrency: the CPUs)
// whose handler writes the payload back as the task's result.
func asynqWorker(ctx context.Context, c roleConfig) error {
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: c.redis}, asynq.Config{
		Logger: quietLogger{}, LogLevel: asynq.ErrorLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(asynqType, func(_ context.Context, t *asynq.Task) error {
		_, err := t.ResultWriter().Write(t.Payload())
		return err
	})
	if err := srv.Start(mux); err != nil {
		return err
	}
	<-ctx.Done()
	srv.Shutdown()
	return nil
}

// quietLogger drops asynq's info lines; errors still go to stderr.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(a ...any) {
	fmt.Fprintln(os.Stderr, a...)
}
func (quietLogger) Fatal(a ...any) {
	fmt.Fprintln(os.Stderr, a...)
	os.Exit(1)
}
