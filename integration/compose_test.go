package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/internal/redistest"
	"github.com/streamrpc/streamrpc/streams"
)

const (
	composeImage         = "streamrpc:local" // as compose.yaml names them
	composeUpstreamImage = "streamrpc-upstream:local"
	// 32 MiB: the binary grew from 23.8 to 30.1 MB with the Prometheus client and the
	// OpenTelemetry SDK and OTLP exporter (see docs/deploy.md "Container image and compose").
	maxImageBytes       = 32 << 20
	composeBuildTimeout = 10 * time.Minute
	composeUpTimeout    = 3 * time.Minute
)

// composeCmd is how to run compose here: `docker compose` or `docker-compose`.
func composeCmd(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	if os.Getenv("STREAMRPC_REQUIRE_DOCKER") == "1" {
		t.Fatal("neither `docker compose` nor `docker-compose` works (STREAMRPC_REQUIRE_DOCKER=1)")
	}
	t.Skip("skipping: neither `docker compose` nor `docker-compose` works")
	return nil
}

// composeProject is one `compose -p NAME` run of ../compose.yaml.
type composeProject struct {
	t    *testing.T
	cmd  []string
	name string
	env  []string
}

// run runs a compose subcommand with a deadline and returns its stdout.
func (c *composeProject) run(timeout time.Duration, args ...string) (string, error) {
	all := append(append([]string{}, c.cmd[1:]...), append([]string{"-p", c.name, "-f", "compose.yaml"}, args...)...)
	return runCmd(timeout, c.env, c.cmd[0], all...)
}

func (c *composeProject) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatalf("compose %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// container is the id of a service's container.
func (c *composeProject) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.must(time.Minute, "ps", "-q", service))
	if id == "" {
		c.t.Fatalf("compose service %s has no container", service)
	}
	return id
}

// runCmd runs a command from the repository root with a deadline; the error
// carries its output.
func runCmd(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = ".."
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCmd(2*time.Minute, os.Environ(), "docker", args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestComposeStack builds the images from the Dockerfiles, brings up
// compose.yaml (Redis, edge, example upstream and its two sidecar consumers)
// and calls the upstream through the published edge: echo.echo byte for byte
// and app methods over HTTP and WebSocket, a 422, retries, a dead letter, and a
// call whose sidecar is killed while it runs. Then it checks the image is small and runs as non-root.
func TestComposeStack(t *testing.T) {
	requireDocker(t)
	// The Dockerfiles build FROM these; without them the builds fail after minutes.
	redistest.RequireImages(t, "golang:1.26-bookworm", "gcr.io/distroless/static-debian12:nonroot")
	cc := composeCmd(t)
	start := time.Now()

	// Build both images, at once, as `docker build` does for a user.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range [][]string{{composeImage, "Dockerfile"}, {composeUpstreamImage, "examples/upstream/Dockerfile"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runCmd(composeBuildTimeout, os.Environ(), "docker", "build", "-q", "-t", b[0], "-f", b[1], ".")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("images built in %s", time.Since(start).Round(time.Second))

	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	port := freeLocalPort(t)
	p := &composeProject{t: t, cmd: cc, name: "srpcit" + hex.EncodeToString(suffix[:])}
	p.env = append(os.Environ(),
		"STREAMRPC_EDGE_PORT="+strconv.Itoa(port),
		"STREAMRPC_MAX_ATTEMPTS=3",
		"STREAMRPC_RETRY_BASE_DELAY=100ms",
		"STREAMRPC_RETRY_MAX_DELAY=1s",
		"STREAMRPC_VISIBILITY_TIMEOUT=2s",
		"STREAMRPC_SHUTDOWN_GRACE=5s",
	)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := p.run(time.Minute, "logs", "--no-color", "--tail=60")
			t.Logf("compose logs:\n%s", logs)
		}
		if _, err := p.run(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	upStart := time.Now()
	p.must(composeUpTimeout, "up", "-d", "--no-build")
	for _, svc := range []string{"redis", "upstream", "edge", "app-consumer", "echo-consumer"} {
		id := p.container(svc)
		waitUntil(t, composeUpTimeout, func() error {
			status := docker(t, "inspect", "-f", "{{.State.Health.Status}}", id)
			if status != "healthy" {
				return fmt.Errorf("%s is %s", svc, status)
			}
			return nil
		})
	}
	t.Logf("compose up and healthy in %s", time.Since(upStart).Round(time.Second))
	url := "http://127.0.0.1:" + strconv.Itoa(port)

	cases := []struct {
		path, body string
		status     int
		result     string
		code       int
	}{
		{"/rpc/app/greet", `{"name":"Ada"}`, 200, `{"greeting":"Hello, Ada!"}`, 0},
		{"/rpc/app/add", `{"a":1,"b":2}`, 200, `{"sum":3}`, 0},
		{"/rpc/app/greet", `{}`, 422, "", 1001},                            // the app's own error: final
		{"/rpc/app/add", `{"a":1}`, 422, "", -32602},                       // 400 with a code
		{"/rpc/app/flaky", `{"fail_attempts":2}`, 200, `{"attempt":3}`, 0}, // 503, 503, then an answer
		{"/rpc/app/fail", `{}`, 502, "", streams.CodeDeadLettered},         // 503 on every attempt
	}
	// echo.echo: the params come back byte for byte, through the echo sidecar and the app.
	const echoParams = "{ \"s\" :\t\"h\u00e9llo \U0001F680 \\u00e9\" , \"n\": 1.50e3, \"a\": [1, null] }"
	if r := post(t, url, "/rpc/echo/echo", []byte(echoParams), nil); r.status != 200 || string(r.Result) != echoParams {
		t.Errorf("POST /rpc/echo/echo %s: got %d %s; want 200 and the params byte for byte", echoParams, r.status, r.body)
	}
	for _, tc := range cases {
		r := post(t, url, tc.path, []byte(tc.body), nil)
		if r.status != tc.status || (tc.result != "" && string(r.Result) != tc.result) || (tc.code != 0 && (r.Error == nil || r.Error.Code != tc.code)) {
			t.Errorf("POST %s %s: got %d %s; want %d %s %d", tc.path, tc.body, r.status, r.body, tc.status, tc.result, tc.code)
		}
	}

	// The same method over WebSocket (JSON-RPC 2.0).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := client.DialWS(ctx, "ws://127.0.0.1:"+strconv.Itoa(port)+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	var greeting struct{ Greeting string }
	err = ws.Call(ctx, "app.greet", map[string]string{"name": "WebSocket"}, &greeting)
	if err != nil || greeting.Greeting != "Hello, WebSocket!" {
		t.Errorf("app.greet over WebSocket: %+v %v", greeting, err)
	}
	var echoed json.RawMessage
	err = ws.Call(ctx, "echo.echo", json.RawMessage(echoParams), &echoed)
	_ = ws.Close()
	if err != nil || string(echoed) != echoParams {
		t.Errorf("echo.echo over WebSocket: %s %v; want the params byte for byte", echoed, err)
	}

	// Kill the sidecar while it runs a call: the call stays pending in Redis and
	// is taken by the sidecar once it is back, after the visibility timeout.
	redisID, sidecarID := p.container("redis"), p.container("app-consumer")
	answer := make(chan asyncAnswer, 1)
	go func() {
		// Owned by this test: it ends with the call (bounded by the edge's call timeout).
		answer <- postNoFatal(url, "/rpc/app/slow", `{"ms":1500}`)
	}()
	waitUntil(t, 30*time.Second, func() error {
		out := docker(t, "exec", redisID, "redis-cli", "XPENDING", "srpc:{app}:calls", streams.Group)
		if n, _, _ := strings.Cut(out, "\n"); strings.TrimSpace(n) == "0" || n == "" {
			return fmt.Errorf("no call pending: %q", out)
		}
		return nil
	})
	docker(t, "kill", sidecarID)
	docker(t, "start", sidecarID)
	select {
	case r := <-answer:
		if r.err != nil || r.status != 200 || string(r.body) != `{"result":{"slept":1500}}` {
			t.Errorf("the call whose sidecar was killed: %d %s %v", r.status, r.body, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the call whose sidecar was killed got no answer within 60s")
	}

	// The image: small, and its processes run as non-root.
	size, _ := strconv.ParseInt(docker(t, "image", "inspect", "-f", "{{.Size}}", composeImage), 10, 64)
	if size <= 0 || size >= maxImageBytes {
		t.Errorf("image %s is %d bytes, want under %d", composeImage, size, maxImageBytes)
	}
	t.Logf("image %s: %.1f MB", composeImage, float64(size)/1e6)
	if user := docker(t, "image", "inspect", "-f", "{{.Config.User}}", composeImage); user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("image user %q, want non-root", user)
	}
	for _, svc := range []string{"edge", "app-consumer"} {
		pid := docker(t, "inspect", "-f", "{{.State.Pid}}", p.container(svc))
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Errorf("%s: reading its process status: %v", svc, err)
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
				t.Errorf("%s runs as root: %s", svc, line)
			}
		}
	}
	t.Logf("compose test took %s", time.Since(start).Round(time.Second))
}

// asyncAnswer is an edge's answer to a call made by a goroutine other than the test's.
type asyncAnswer struct {
	status int
	body   []byte
	err    error
}

func postNoFatal(url, path, body string) asyncAnswer {
	res, err := httpClient.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return asyncAnswer{err: err}
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(res.Body)
	return asyncAnswer{status: res.StatusCode, body: buf.Bytes(), err: err}
}
