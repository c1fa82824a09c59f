package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// Binaries built once per test run, for tests that run streamrpc's parts as
// real OS processes.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	terminateTopologies()
	os.Exit(code)
}

// binary returns the path of a built binary: "streamrpc" or "echo".
func binary(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "streamrpc-bin-")
		if binErr != nil {
			return
		}
		for name, pkg := range map[string]string{"streamrpc": "./cmd/streamrpc", "echo": "./examples/echo"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// process is a running OS process whose output is kept for assertions.
type process struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	exited chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess runs bin with args and exactly env (plus PATH and HOME). It is
// killed at the end of the test if still running.
func startProcess(t testing.TB, bin string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p := &process{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", filepath.Base(bin), p.stdout, p.stderr)
		}
	})
	return p
}

// signal sends sig and waits for the process to exit; it returns the exit code.
func (p *process) signal(t testing.TB, sig syscall.Signal, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %s of %s", timeout, sig)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitForEcho waits until the edge at url answers an echo call.
func waitForEcho(t testing.TB, url string) {
	t.Helper()
	waitUntil(t, 30*time.Second, func() error {
		res, err := httpClient.Post(url+"/rpc/echo/echo", "application/json", strings.NewReader(`{"msg":"hi"}`))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
}

// TestDevModeEmbedded runs `streamrpc dev` with no REDIS_URL, as a user would
// on a fresh machine: it must start on the embedded Redis and say so first.
func TestDevModeEmbedded(t *testing.T) {
	addr := freeAddr(t)
	p := startProcess(t, binary(t, "streamrpc"), []string{"STREAMRPC_ADDR=" + addr}, "dev")
	url := "http://" + addr
	waitForEcho(t, url)
	r := post(t, url, "/rpc/echo/echo", []byte(`{"msg":"hi"}`), nil)
	if r.status != 200 || string(r.body) != `{"result":{"msg":"hi"}}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	first, _, _ := strings.Cut(p.stderr.String(), "\n")
	if !strings.Contains(first, "embedded in-memory Redis") || !strings.Contains(first, "NOT durable") {
		t.Fatalf("first log line does not say the Redis is embedded and not durable: %q", first)
	}
	if !strings.Contains(p.stdout.String(), "curl -s -X POST http://"+addr+"/rpc/echo/echo") {
		t.Fatalf("dev does not print the URL to call: %q", p.stdout.String())
	}
	if code := p.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestDevModeServesConsumerMetrics: `streamrpc dev` runs a consumer in its
// process, so its GET /metrics has the consumer's streamrpc_consumer_* series
// beside the edge's.
func TestDevModeServesConsumerMetrics(t *testing.T) {
	rs := startRedis(t)
	addr := freeAddr(t)
	p := startProcess(t, binary(t, "streamrpc"), []string{"REDIS_URL=" + rs.URL, "STREAMRPC_ADDR=" + addr}, "dev")
	url := "http://" + addr
	waitForEcho(t, url)
	ok := map[string]string{"handler": "echo", "method": "echo", "outcome": "ok"}
	// The consumer counts a run once it has settled it, which may be a moment
	// after the edge answered.
	waitUntil(t, 10*time.Second, func() error {
		fams := scrape(t, url)
		if n := metricValue(fams, "streamrpc_consumer_runs_total", ok); n < 1 {
			return fmt.Errorf("streamrpc_consumer_runs_total%v = %v, want >= 1", ok, n)
		}
		if n := metricValue(fams, "streamrpc_calls_total", ok); n < 1 {
			return fmt.Errorf("streamrpc_calls_total%v = %v, want >= 1", ok, n)
		}
		return nil
	})
	if code := p.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestEdgeAndConsumerProcesses runs the parts apart, as in production: an
// edge and the example consumer as separate processes on one real Redis.
func TestEdgeAndConsumerProcesses(t *testing.T) {
	rs := startRedis(t)
	addr := freeAddr(t)
	edge := startProcess(t, binary(t, "streamrpc"), []string{"REDIS_URL=" + rs.URL, "STREAMRPC_ADDR=" + addr, "STREAMRPC_AUTH=none"}, "edge")
	consumer := startProcess(t, binary(t, "echo"), []string{"REDIS_URL=" + rs.URL})
	url := "http://" + addr
	waitForEcho(t, url)
	r := post(t, url, "/rpc/echo/sleep", []byte(`{"ms":10}`), nil)
	if r.status != 200 || string(r.Result) != `{"slept":10}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if code := consumer.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("consumer exit code %d after SIGTERM", code)
	}
	if code := edge.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("edge exit code %d after SIGTERM", code)
	}
}

// TestDevModeOnRealRedis runs `streamrpc dev` pointed at a real Redis.
func TestDevModeOnRealRedis(t *testing.T) {
	rs := startRedis(t)
	addr := freeAddr(t)
	p := startProcess(t, binary(t, "streamrpc"), []string{"REDIS_URL=" + rs.URL, "STREAMRPC_ADDR=" + addr}, "dev")
	waitForEcho(t, "http://"+addr)
	if strings.Contains(p.stderr.String(), "embedded") {
		t.Fatalf("dev used the embedded Redis although REDIS_URL is set: %s", p.stderr)
	}
	sc := streams.New(rs.Client(t), streams.Options{})
	t.Cleanup(func() { _ = sc.Close() })
	if m, err := sc.Methods(t.Context(), "echo"); err != nil || len(m) != len(echo.Mux().Methods()) {
		t.Fatalf("the echo handler is not registered in the real Redis: %v %v", m, err)
	}
	if code := p.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
