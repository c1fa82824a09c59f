package redistest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a tb that records what requireImages asked of it.
type recorder struct {
	skipped, failed string
}

func (r *recorder) Helper()                          {}
func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

// TestRequireImages: a present image lets the test run; a missing one that
// cannot be pulled (a name no registry has) skips it with one line naming
// the image and how to provide it, or fails it when Docker is required.
func TestRequireImages(t *testing.T) {
	RequireDocker(t) // an engine, and Image present
	const bogus = "streamrpc.invalid/no-such-image:never"
	cases := []struct {
		name                string
		image               string
		require             bool
		wantSkip, wantFatal bool
	}{
		{name: "present image runs", image: Image},
		{name: "missing image skips", image: bogus, wantSkip: true},
		{name: "missing image fails when Docker is required", image: bogus, require: true, wantFatal: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			requireImages(&r, tc.require, tc.image)
			if (r.skipped != "") != tc.wantSkip || (r.failed != "") != tc.wantFatal {
				t.Fatalf("skipped %q, failed %q; want skip %v, fatal %v", r.skipped, r.failed, tc.wantSkip, tc.wantFatal)
			}
			msg := r.skipped + r.failed
			if msg == "" {
				return
			}
			for _, want := range []string{tc.image, "docker pull " + tc.image, "local-images.sh", "STREAMRPC_REQUIRE_DOCKER=1"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message is not one line: %q", msg)
			}
		})
	}
}
