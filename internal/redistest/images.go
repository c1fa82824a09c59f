package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

// ReaperImage is the image of testcontainers' reaper (Ryuk) in the
// testcontainers-go version go.mod names (its internal/config
// ReaperDefaultImage); update it with that module.
const ReaperImage = "testcontainers/ryuk:0.14.0"

// pullTimeout bounds one pull of a missing image.
const pullTimeout = 3 * time.Minute

// images remembers, per image, whether it is present (nil) or why it is not
// and cannot be pulled: each image is looked up once per test process.
var images sync.Map // image -> *imageCheck

type imageCheck struct {
	once sync.Once
	err  error
}

// imageProblem reports nil when the Docker engine has image, pulling it if
// it is missing; else why the image is not there and could not be pulled.
// An engine that cannot be asked at all is not an image problem: nil, and the
// caller's Docker health check says what is wrong.
func imageProblem(image string) error {
	v, _ := images.LoadOrStore(image, &imageCheck{})
	c := v.(*imageCheck)
	c.once.Do(func() { c.err = lookUpOrPull(image) })
	return c.err
}

func lookUpOrPull(image string) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return nil
	}
	_, inspectErr := cli.ImageInspect(ctx, image)
	if inspectErr == nil {
		return nil
	}
	pull, err := cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err == nil {
		err = pull.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("image %s is not present (%v) and cannot be pulled: %w", image, inspectErr, err)
	}
	return nil
}

// tb is the part of testing.TB that requireImages uses.
type tb interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// RequireImages skips the test with one line naming the first of images the
// Docker engine does not have and cannot pull, and how to provide it; with
// STREAMRPC_REQUIRE_DOCKER=1 (as in CI) that is a failure instead. Images
// that are missing but can be pulled are pulled here.
func RequireImages(t tb, images ...string) {
	t.Helper()
	requireImages(t, os.Getenv("STREAMRPC_REQUIRE_DOCKER") == "1", images...)
}

func requireImages(t tb, require bool, images ...string) {
	t.Helper()
	for _, image := range images {
		err := imageProblem(image)
		if err == nil {
			continue
		}
		msg := fmt.Sprintf("%v; provide it with `docker pull %s`, or where nothing can be pulled build it locally (the CI script does: `bash ../shared/ci/local-images.sh <name> %s`)", err, image, image)
		if require {
			t.Fatalf("test needs Docker image %s (STREAMRPC_REQUIRE_DOCKER=1): %s", image, msg)
			return
		}
		t.Skipf("skipping test: %s; set STREAMRPC_REQUIRE_DOCKER=1 to make this a failure", msg)
		return
	}
}

var reaperOnce sync.Once

// ErrNoReaper says why testcontainers' reaper was turned off for this process.
var ErrNoReaper = errors.New("redistest: the reaper image is missing")

// prepareReaper turns testcontainers' reaper (Ryuk) off for this test process
// when TESTCONTAINERS_RYUK_DISABLED is not set and the reaper's image is
// neither present nor pullable: otherwise every container start would fail on
// the reaper. The reaper only removes containers a crashed test process left
// behind; every test here also removes its containers in t.Cleanup. It must
// run before testcontainers reads its configuration (once per process): at the
// top of RequireDocker and checkDocker. It says so once on stderr.
func prepareReaper() {
	reaperOnce.Do(func() {
		if _, set := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); set {
			return
		}
		if err := imageProblem(ReaperImage); err != nil {
			_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
			fmt.Fprintf(os.Stderr, "redistest: %v: %v; running without the reaper (TESTCONTAINERS_RYUK_DISABLED=true): each test still removes its containers\n", ErrNoReaper, err)
		}
	})
}
