package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/streamrpc/streamrpc/app"
)

// runHashKey prints a new random API key and the STREAMRPC_API_KEYS entry
// that accepts it. Only the entry is configured: the edge keeps the key's
// SHA-256, so its configuration holds no secret. The key is printed once.
func runHashKey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "the key's id: names the caller in logs and the principal id (letters, digits, '_', '.', '-')")
	scopes := fs.String("scopes", "", `space-separated scopes, e.g. "call:echo.* read" (call:<handler>.<method> globs, read, admin)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *id == "" || strings.TrimSpace(*scopes) == "" {
		fmt.Fprintln(stderr, "streamrpc hash-key: -id and -scopes are required, e.g. streamrpc hash-key -id ci -scopes 'call:echo.* read'")
		return 2
	}
	key, hash, err := app.NewAPIKey()
	if err != nil {
		fmt.Fprintf(stderr, "streamrpc hash-key: %v\n", err)
		return 1
	}
	entry := *id + ":" + hash + ":" + strings.Join(strings.Fields(*scopes), " ")
	// The entry must be one the edge accepts: check it as the edge would.
	if err := (app.Config{APIKeys: entry}).Validate(); err != nil {
		fmt.Fprintf(stderr, "streamrpc hash-key: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "API key (give it to the caller; it is shown only this once):\n%s\n\nSTREAMRPC_API_KEYS entry (join several with ';'):\n%s\n", key, entry)
	return 0
}
