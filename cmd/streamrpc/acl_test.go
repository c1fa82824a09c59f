package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestACLCommand(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		stdin   string
		want    []string // substrings of the printed line
		wantErr error
	}{
		{"edge", []string{"edge"}, "", []string{"ACL SETUSER streamrpc-edge reset ", "~srpc:* "}, nil},
		{"consumer", []string{"consumer", "billing"}, "", []string{"ACL SETUSER streamrpc-billing reset ", "~srpc:{billing}:calls", `"(+evalsha +eval `}, nil},
		{"named user with password", []string{"-user", "e1", "-password-stdin", "edge"}, "pw\n", []string{"ACL SETUSER e1 reset on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 "}, nil},
		{"no role", nil, "", nil, errACLUsage},
		{"consumer without handler", []string{"consumer"}, "", nil, errACLUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runACL(tc.args, strings.NewReader(tc.stdin), &out, &errOut)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(out.String(), "\n") != 1 {
				t.Fatalf("want one line, got %q", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q: %s", w, out.String())
				}
			}
			if pw := strings.TrimSpace(tc.stdin); pw != "" && strings.Contains(out.String(), ">"+pw) {
				t.Errorf("the plain password is printed: %s", out.String())
			}
		})
	}
}
