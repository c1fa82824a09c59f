package main

import (
	"bytes"
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
