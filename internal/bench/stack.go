package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// The in-process stack (-inprocess): an edge and an echo consumer on the
// bench's Redis, and the memory of idle WebSockets (-idle).

// stack is an edge and an echo consumer in this process.
type stack struct {
	edge                   *app.Edge
	consumer               *consumers.Server
	edgeRDB, consumerRDB   redis.UniversalClient
	edgeCmds, consumerCmds *cmdCounter
	url                    string
	served                 chan struct{}
	once                   sync.Once
}

func startStack(ctx context.Context, cfg Config) (*stack, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connect := func() (redis.UniversalClient, *cmdCounter, error) {
		u, err := streams.Connect(streams.RedisOptions{URL: cfg.RedisURL})
		if err != nil {
			return nil, nil, err
		}
		c := &cmdCounter{}
		u.AddHook(c)
		return u, c, nil
	}
	durable := streams.Durability{Replicas: cfg.DurableReplicas}
	st := &stack{served: make(chan struct{})}
	var err error
	if st.edgeRDB, st.edgeCmds, err = connect(); err != nil {
		return nil, err
	}
	if st.consumerRDB, st.consumerCmds, err = connect(); err != nil {
		_ = st.edgeRDB.Close()
		return nil, err
	}
	fail := func(err error) (*stack, error) {
		st.stop()
		return nil, err
	}
	st.consumer, err = consumers.NewServer(st.consumerRDB, consumers.Config{
		Handler: echo.Name, Description: "the example echo handler", Concurrency: cfg.ConsumerConcurrency, Logger: log,
		Durability: durable,
	}, echo.Mux())
	if err != nil {
		return fail(err)
	}
	if err := st.consumer.Start(ctx); err != nil {
		return fail(err)
	}
	st.edge, err = app.New(st.edgeRDB, app.Config{Logger: log, Durability: durable})
	if err != nil {
		return fail(err)
	}
	if err := st.edge.Start(ctx); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	st.url = "http://" + ln.Addr().String()
	go func() {
		defer close(st.served)
		_ = st.edge.Serve(ln)
	}()
	return st, nil
}

func (st *stack) stop() {
	st.once.Do(func() {
		if st.edge != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = st.edge.Shutdown(ctx)
			cancel()
			if st.url != "" {
				<-st.served
			}
		}
		if st.consumer != nil {
			_ = st.consumer.Close()
		}
		_ = st.edgeRDB.Close()
		_ = st.consumerRDB.Close()
	})
}

// measureIdle opens cfg.IdleConns idle WebSockets to the in-process edge from
// a child process (so that the client side's memory is not in this heap) and
// reads this process's heap and stacks before and after.
func measureIdle(ctx context.Context, cfg Config, st *stack) (*Idle, error) {
	before := heapAndStacks()
	g0 := runtime.NumGoroutine()
	open0 := st.edge.WebSockets().Open
	args := append(append([]string{}, cfg.IdleClient[1:]...), strconv.Itoa(cfg.IdleConns), st.url)
	cmd := exec.CommandContext(ctx, cfg.IdleClient[0], args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = stdin.Close() // the child closes its sockets and exits
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		return nil, fmt.Errorf("the idle client did not get ready: %q %v", line, err)
	}
	// The child has its N upgrades answered; the edge registers each socket
	// right after answering it. Wait (bounded) until it shows all of them.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for st.edge.WebSockets().Open < open0+cfg.IdleConns {
		if time.Now().After(deadline) {
			return nil, errors.New("the edge did not register every idle socket within 30s")
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	after := heapAndStacks()
	g1 := runtime.NumGoroutine()
	n := float64(cfg.IdleConns)
	return &Idle{Conns: cfg.IdleConns, BytesPerConn: float64(int64(after-before)) / n, GoroutinesPer: float64(g1-g0) / n}, nil
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// IdleClient opens n WebSockets to the edge at url, writes "ready" to out,
// and keeps them open, idle, until in ends (EOF); then it closes them. It is
// the child process of -idle.
func IdleClient(ctx context.Context, n int, url string, in io.Reader, out io.Writer) error {
	conns := make([]*client.WS, 0, n)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Close() }()
		}
		wg.Wait()
	}()
	for range n {
		c, err := client.DialWS(ctx, url)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Fprintln(out, "ready")
	_, _ = io.Copy(io.Discard, in)
	return nil
}
