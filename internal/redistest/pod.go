// Package redistest starts real multi-node Redis topologies (Redis Cluster, Redis Sentinel) in
// Docker containers for tests in other packages.
//
// # Networking
//
// Cluster and Sentinel hand node addresses to clients (CLUSTER SLOTS, MOVED,
// SENTINEL get-master-addr-by-name), so an address has to work both from the test process and
// between the nodes. Every topology is therefore one "pod", as in Kubernetes: an anchor container
// (`sleep infinity`) on a private Docker network owns a network namespace and publishes each
// client port P as host 127.0.0.1:P -> container P, the same number on both sides; every Redis
// node and sentinel runs in its own container that joins the anchor's namespace
// (NetworkMode "container:<anchor>") and listens on its own port. All nodes announce themselves
// as 127.0.0.1:P, which reaches the node from the host (through the published port) and from
// the other nodes (through the shared loopback). The test process dials 127.0.0.1 only.
//
// Killing one node's container kills that node only; the anchor keeps the namespace and the
// published ports (a dial to a dead node's port is then accepted by Docker's proxy and closed).
//
// # Docker
//
// The image is redis:7-alpine; a missing one is pulled once, if a registry answers. When no
// Docker engine answers, or the image is missing and cannot be pulled, RequireDocker,
// StartCluster and StartSentinel skip the test with one line saying why and how to provide the
// image, or fail it when STREAMRPC_REQUIRE_DOCKER=1. When Ryuk's image (ReaperImage) is missing
// and cannot be pulled and TESTCONTAINERS_RYUK_DISABLED is not set, the reaper is turned off for
// the process (each test removes its containers anyway). TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
// may be needed where Docker's host address is not reachable.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynetwork "github.com/moby/moby/api/types/network"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"
)

// Image is the Docker image every container of a topology runs. It must exist locally.
const Image = "redis:7-alpine"

const (
	startTimeout     = 2 * time.Minute
	terminateTimeout = time.Minute
	pollInterval     = 100 * time.Millisecond
	portAttempts     = 3
)

// ErrNoDocker is returned (wrapped) by NewCluster and NewSentinel when no Docker engine
// answers, so that a TestMain can tell "skip" from "broken".
var ErrNoDocker = errors.New("redistest: no Docker engine answers")

// ErrNoImage is returned (wrapped) by NewCluster and NewSentinel when Image is not present and
// cannot be pulled.
var ErrNoImage = errors.New("redistest: a Docker image is missing")

// checkDocker returns an error wrapping ErrNoDocker when no Docker engine answers, or ErrNoImage
// when Image is missing and cannot be pulled.
func checkDocker() error {
	prepareReaper()
	if err := dockerHealth(); err != nil {
		return fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	if err := imageProblem(Image); err != nil {
		return fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	return nil
}

// RequireDocker skips the test when no Docker engine answers or the Redis image (Image) is
// missing and cannot be pulled, with one line saying which and how to provide it; it fails the
// test instead when STREAMRPC_REQUIRE_DOCKER=1 (as in CI), so that tests needing Docker cannot
// silently vanish. When the reaper's image is missing, it turns the reaper off (prepareReaper).
func RequireDocker(t testing.TB) {
	t.Helper()
	prepareReaper()
	if err := dockerHealth(); err != nil {
		if os.Getenv("STREAMRPC_REQUIRE_DOCKER") == "1" {
			t.Fatalf("test needs a Docker engine (STREAMRPC_REQUIRE_DOCKER=1), but none answers: %v", err)
		}
		t.Skipf("skipping test: no Docker engine answers (%v); set STREAMRPC_REQUIRE_DOCKER=1 to make this a failure", err)
	}
	RequireImages(t, Image)
}

func dockerHealth() (err error) {
	// Provider construction has panicked in some testcontainers versions when no engine is found.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("testcontainers panicked: %v", p)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer func() { _ = provider.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return provider.Health(ctx)
}

// freeLocalPorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago. All n
// listeners are held until the last one is open, so the ports differ from each other.
func freeLocalPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free host port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// IsPortInUse reports whether Docker refused a container because its host port was taken.
func IsPortInUse(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// addr is the host-reachable (and namespace-reachable) address of a port in a pod.
func addr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// pod is a set of containers sharing the network namespace of one anchor container.
type pod struct {
	ports   []int // client ports, published as 127.0.0.1:P -> P
	network *testcontainers.DockerNetwork
	anchor  *testcontainers.DockerContainer

	mu         sync.Mutex
	members    []*testcontainers.DockerContainer
	terminated bool
}

// newPod creates a private network and an anchor container on it that publishes n free host
// ports. On error, whatever was created is removed again.
func newPod(ctx context.Context, n int) (_ *pod, err error) {
	nw, err := network.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("create network: %w", err)
	}
	p := &pod{network: nw}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.terminate(context.WithoutCancel(ctx)))
		}
	}()

	// The ports are picked here and then handed to Docker, so another process may take one in
	// between; retry with new ports if Docker reports one as taken.
	var lastErr error
	for range portAttempts {
		ports, err := freeLocalPorts(n)
		if err != nil {
			return nil, err
		}
		anchor, err := runAnchor(ctx, nw, ports)
		if anchor != nil {
			// A failed start may still leave a container behind.
			if err != nil {
				err = errors.Join(err, terminateContainer(anchor))
			} else {
				p.anchor, p.ports = anchor, ports
				return p, nil
			}
		}
		if !IsPortInUse(err) {
			return nil, fmt.Errorf("start anchor container: %w", err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start anchor container: no free host ports after %d attempts: %w", portAttempts, lastErr)
}

func runAnchor(ctx context.Context, nw *testcontainers.DockerNetwork, ports []int) (*testcontainers.DockerContainer, error) {
	exposed := make([]string, 0, len(ports))
	bindings := mobynetwork.PortMap{}
	for _, port := range ports {
		spec := strconv.Itoa(port) + "/tcp"
		exposed = append(exposed, spec)
		bindings[mobynetwork.MustParsePort(spec)] = []mobynetwork.PortBinding{{
			HostIP:   netip.MustParseAddr("127.0.0.1"),
			HostPort: strconv.Itoa(port),
		}}
	}
	return testcontainers.Run(ctx, Image,
		testcontainers.WithCmd("sleep", "infinity"),
		network.WithNetwork(nil, nw),
		testcontainers.WithExposedPorts(exposed...),
		testcontainers.WithConfigModifier(func(c *container.Config) {
			c.StopSignal = "SIGKILL" // sleep as PID 1 ignores SIGTERM
		}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = bindings
		}),
	)
}

// run starts a container running cmd inside the pod's network namespace. Its stop signal is
// SIGKILL, so stopping it is an abrupt crash, not a graceful shutdown.
func (p *pod) run(ctx context.Context, cmd ...string) (*testcontainers.DockerContainer, error) {
	ctr, err := testcontainers.Run(ctx, Image,
		testcontainers.WithCmd(cmd...),
		testcontainers.WithConfigModifier(func(c *container.Config) {
			c.StopSignal = "SIGKILL"
		}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode("container:" + p.anchor.GetContainerID())
		}),
	)
	if ctr != nil {
		p.mu.Lock()
		p.members = append(p.members, ctr)
		p.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("start container %q: %w", strings.Join(cmd, " "), err)
	}
	return ctr, nil
}

// runAll starts one container per command, concurrently, and returns them in the same order.
func (p *pod) runAll(ctx context.Context, cmds [][]string) ([]*testcontainers.DockerContainer, error) {
	ctrs := make([]*testcontainers.DockerContainer, len(cmds))
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() {
			ctrs[i], errs[i] = p.run(ctx, cmd...)
		})
	}
	wg.Wait()
	return ctrs, errors.Join(errs...)
}

// terminate removes the members, then the anchor, then the network. It may be called again.
func (p *pod) terminate(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminated {
		return nil
	}
	p.terminated = true
	var errs []error
	for _, ctr := range p.members {
		errs = append(errs, terminateContainer(ctr))
	}
	if p.anchor != nil {
		errs = append(errs, terminateContainer(p.anchor))
	}
	if p.network != nil {
		errs = append(errs, p.network.Remove(ctx))
	}
	return errors.Join(errs...)
}

func terminateContainer(ctr *testcontainers.DockerContainer) error {
	ctx, cancel := context.WithTimeout(context.Background(), terminateTimeout)
	defer cancel()
	return testcontainers.TerminateContainer(ctr, testcontainers.StopContext(ctx), testcontainers.StopTimeout(0))
}

// kill stops ctr at once with SIGKILL (its stop signal); the container is removed later by
// terminate.
func kill(ctx context.Context, ctr *testcontainers.DockerContainer) error {
	var zero time.Duration
	return ctr.Stop(ctx, &zero)
}

// exec runs cmd in ctr and returns its combined output; a non-zero exit status is an error.
func exec(ctx context.Context, ctr *testcontainers.DockerContainer, cmd ...string) (string, error) {
	code, r, err := ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return "", fmt.Errorf("exec %q: %w", strings.Join(cmd, " "), err)
	}
	var out strings.Builder
	if r != nil {
		if _, err := io.Copy(&out, r); err != nil {
			return "", fmt.Errorf("exec %q: read output: %w", strings.Join(cmd, " "), err)
		}
	}
	if code != 0 {
		return out.String(), fmt.Errorf("exec %q: exit status %d: %s", strings.Join(cmd, " "), code, out.String())
	}
	return out.String(), nil
}

// poll calls cond every pollInterval until it returns nil or timeout passes, and then returns
// an error that wraps cond's last one. Each call of cond gets its own short deadline.
func poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		err := cond(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		// An error caused by the overall deadline says less than the one before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// nodeClient is a client for one node's address with short timeouts and no retries, for
// administrative commands. The caller closes it.
func nodeClient(address string) *redis.Client { return redis.NewClient(adminOptions(address)) }

// adminOptions are the options of nodeClient and sentinelClient.
func adminOptions(address string) *redis.Options {
	return &redis.Options{
		Addr:            address,
		MaxRetries:      -1,
		DialTimeout:     time.Second,
		ReadTimeout:     2 * time.Second,
		WriteTimeout:    2 * time.Second,
		PoolSize:        1,
		DisableIdentity: true,
	}
}

// onNode runs f with a fresh client for address and closes the client afterwards.
func onNode(ctx context.Context, address string, f func(ctx context.Context, c *redis.Client) error) error {
	c := nodeClient(address)
	defer func() { _ = c.Close() }()
	if err := f(ctx, c); err != nil {
		return fmt.Errorf("%s: %w", address, err)
	}
	return nil
}

// infoField returns the value of field in the output of INFO (or CLUSTER INFO), or "".
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// waitPing waits until every address answers PING.
func waitPing(ctx context.Context, timeout time.Duration, addrs []string) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		for _, a := range addrs {
			if err := onNode(ctx, a, func(ctx context.Context, c *redis.Client) error {
				return c.Ping(ctx).Err()
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// terminateAtCleanup calls terminate in t.Cleanup, within terminateTimeout,
// and fails the test if it fails.
func terminateAtCleanup(t testing.TB, what string, terminate func(context.Context) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), terminateTimeout)
		defer cancel()
		if err := terminate(ctx); err != nil {
			t.Errorf("terminate %s: %v", what, err)
		}
	})
}
