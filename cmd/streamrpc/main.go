// Command streamrpc is the one binary of streamrpc:
//
//	streamrpc dev     the edge and the example handlers in one process, on an
//	                  embedded in-memory Redis unless REDIS_URL is set
//	streamrpc edge    the edge alone (run any number of replicas)
//	streamrpc consumer  a sidecar consumer: forwards a handler's calls to a
//	                  local HTTP service (STREAMRPC_UPSTREAM_URL)
//	streamrpc healthcheck  exit 0 if this host's edge or consumer is healthy
//	streamrpc hash-key  print a new API key and its STREAMRPC_API_KEYS entry
//	streamrpc acl     print the least-privilege Redis ACL of an edge or consumer
//
// Every setting comes from the environment; see .env.example.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `streamrpc: RPC over Redis Streams

usage: streamrpc <command>

commands:
  dev     run the edge and the example echo handler in one process; with no
          REDIS_URL it uses an embedded in-memory Redis (not durable)
  edge    run the edge; REDIS_URL names the Redis. It refuses to start
          without authentication (STREAMRPC_API_KEYS or a JWT key) unless
          STREAMRPC_AUTH=none
  consumer
          run a sidecar consumer: serve STREAMRPC_HANDLER by forwarding each
          call to POST $STREAMRPC_UPSTREAM_URL/{method} (docs/sidecar.md)
  healthcheck [--url URL]
          exit 0 if this host's edge (or consumer) answers GET /healthz with
          200, else 1; for a container HEALTHCHECK with no shell
  hash-key -id ID -scopes 'SCOPES'
          print a new random API key and its STREAMRPC_API_KEYS entry
          (only the key's SHA-256 is configured; the key is shown once)
  acl [-user NAME] [-password-stdin] edge | consumer <handler>
          print the ACL SETUSER command that gives an edge, or a consumer of
          one handler, only the Redis commands and keys it needs
          (docs/security.md, "Redis ACLs"); pipe it into redis-cli
  bench [flags]  load an edge and report throughput and latency (-h for flags)
  help    show this text

Settings are environment variables; see docs/configuration.md and .env.example.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(ctx, stdout, stderr)
	case "edge":
		err = runEdge(ctx, stderr)
	case "consumer":
		err = runConsumer(ctx, stderr)
	case "healthcheck":
		err = runHealthcheck(ctx, args[1:], stdout, stderr)
	case "acl":
		err = runACL(args[1:], os.Stdin, stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "hash-key":
		return runHashKey(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "streamrpc: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamrpc %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
