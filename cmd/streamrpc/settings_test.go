package main

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/streamrpc/streamrpc/consumers"
)

// envNames lists every env tag reachable from t.
func envNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			names = append(names, envNames(f.Type)...)
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

func TestEnvExampleListsEverySetting(t *testing.T) {
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	names := append(envNames(reflect.TypeOf(settings{})), envNames(reflect.TypeOf(consumers.Config{}))...)
	names = append(names, envNames(reflect.TypeOf(consumers.SidecarConfig{}))...)
	names = append(names, envNames(reflect.TypeOf(consumerSettings{}))...)
	if len(names) < 10 {
		t.Fatalf("found only %d settings: %v", len(names), names)
	}
	for _, name := range names {
		if !bytes.Contains(example, []byte("\n"+name+"=")) {
			t.Errorf(".env.example does not list %s", name)
		}
	}
}

func TestRunUsage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"nope"}, 2, `unknown command "nope"`},
		{"help", []string{"help"}, 0, "commands:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), tc.args, &out, &errOut)
			if code != tc.wantCode || !strings.Contains(out.String()+errOut.String(), tc.wantOut) {
				t.Fatalf("code %d, output %q; want %d and %q", code, out.String()+errOut.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}

func TestEdgeRequiresRedisURL(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"edge"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "REDIS_URL is not set") {
		t.Fatalf("code %d, stderr %q", code, errOut.String())
	}
}

func TestCallHost(t *testing.T) {
	cases := map[string]string{":8080": "localhost:8080", "0.0.0.0:9": "localhost:9", "127.0.0.1:7": "127.0.0.1:7", "": "localhost:8080"}
	for in, want := range cases {
		if got := callHost(in); got != want {
			t.Errorf("callHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// The Dockerfile's header shows how to run the image: its edge command must
// pass the settings checks the edge makes at start (it exited at once for
// want of auth settings), and publish the open demo on loopback only.
func TestDockerfileExampleRuns(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The header's commands, continuation lines joined.
	var cmds []string
	cur := ""
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		l := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if cur != "" {
			cur += " " + strings.TrimSuffix(l, `\`)
		} else if strings.HasPrefix(l, "docker ") {
			cur = strings.TrimSuffix(l, `\`)
		}
		if cur != "" && !strings.HasSuffix(l, `\`) {
			cmds = append(cmds, strings.Join(strings.Fields(cur), " "))
			cur = ""
		}
	}
	var edge []string
	for _, c := range cmds {
		f := strings.Fields(c)
		if f[0] == "docker" && f[1] == "run" && f[len(f)-1] == "streamrpc" { // the image's default command: edge
			edge = f
		}
	}
	if edge == nil {
		t.Fatalf("no `docker run … streamrpc` (the edge) in the Dockerfile's header: %q", cmds)
	}
	clearAuthEnv(t)
	t.Setenv("REDIS_URL", "")
	published := ""
	for i := 0; i+1 < len(edge); i++ {
		switch edge[i] {
		case "-e":
			k, v, _ := strings.Cut(edge[i+1], "=")
			t.Setenv(k, v)
		case "-p":
			published = edge[i+1]
		}
	}
	s, err := loadSettings()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(edge, " "), err)
	}
	if s.Redis.URL == "" {
		t.Fatalf("%s: no REDIS_URL", strings.Join(edge, " "))
	}
	if err := checkEdgeAuth(s.Edge, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("%s: the edge would exit at once: %v", strings.Join(edge, " "), err)
	}
	if !s.Edge.AuthEnabled() && !strings.HasPrefix(published, "127.0.0.1:") {
		t.Fatalf("%s: an open edge published on %q, want 127.0.0.1 only", strings.Join(edge, " "), published)
	}
	if u := s.Redis.URL; strings.Contains(u, "//redis:") && !strings.Contains(strings.Join(edge, " "), "--network") {
		t.Fatalf("%s: REDIS_URL names host redis, which only a --network reaches", strings.Join(edge, " "))
	}
}
