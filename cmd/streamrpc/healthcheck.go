package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// runHealthcheck GETs a local health endpoint and returns nil if it answers
// 200, so that a container's HEALTHCHECK needs no shell or curl. The URL is
// --url if given; else, for a process that runs `streamrpc consumer` (as
// read from the environment or /proc/1/cmdline in its container),
// STREAMRPC_HEALTH_ADDR's /healthz; else the edge's STREAMRPC_ADDR /healthz.
// --ready asks /readyz instead: the edge is ready only while Redis answers.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "URL to GET (default: this container's edge or consumer /healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	ready := fs.Bool("ready", false, "check readiness (GET /readyz: Redis answers, not draining) instead of liveness (GET /healthz)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		*target = defaultHealthURL(os.Getenv, pid1Command())
		if *ready {
			*target = strings.TrimSuffix(*target, "/healthz") + "/readyz"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", *target, res.Status)
	}
	fmt.Fprintf(stdout, "ok: %s\n", *target)
	return nil
}

// defaultHealthURL is the /healthz URL on this host of the consumer's health
// endpoint (STREAMRPC_HEALTH_ADDR) or of the edge (STREAMRPC_ADDR). cmd is
// PID 1's subcommand: "consumer" picks the former, "edge" or "dev" the
// latter; when it is unknown, the former if STREAMRPC_HEALTH_ADDR is set.
func defaultHealthURL(getenv func(string) string, cmd string) string {
	health := getenv("STREAMRPC_HEALTH_ADDR")
	var addr string
	switch {
	case cmd == "consumer" && health == "":
		addr = defaultHealthAddr
	case cmd == "consumer", cmd == "" && health != "" && health != "off":
		addr = health
	default:
		if addr = getenv("STREAMRPC_ADDR"); addr == "" {
			addr = ":8080"
		}
	}
	return "http://" + loopback(addr) + "/healthz"
}

// loopback turns a listen address into one to dial on this host.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// pid1Command is the streamrpc subcommand PID 1 runs (in a container whose
// entrypoint is streamrpc), or "" when it cannot tell.
func pid1Command() string {
	b, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return ""
	}
	args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
	if len(args) < 2 || !strings.HasSuffix(args[0], "streamrpc") {
		return ""
	}
	return args[1]
}
