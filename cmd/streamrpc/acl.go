package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/streamrpc/streamrpc/streams"
)

// errACLUsage is returned for a streamrpc acl command line that names no role.
var errACLUsage = errors.New("usage: streamrpc acl [-user NAME] [-password-stdin] edge | consumer <handler>")

// runACL prints the ACL SETUSER command for an edge or a consumer of one
// handler, one line that redis-cli accepts on its standard input. The rules
// come from streams.EdgeACL and streams.ConsumerACL, next to the keys they
// describe.
func runACL(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("acl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the Redis user name (default streamrpc-edge, or streamrpc-<handler>)")
	withPassword := fs.Bool("password-stdin", false, "read the user's password from the first line of standard input; the user is turned on with its SHA-256")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rules []string
	name := *user
	switch rest := fs.Args(); {
	case len(rest) == 1 && rest[0] == "edge":
		rules = streams.EdgeACL()
		if name == "" {
			name = "streamrpc-edge"
		}
	case len(rest) == 2 && rest[0] == "consumer":
		var err error
		if rules, err = streams.ConsumerACL(rest[1]); err != nil {
			return err
		}
		if name == "" {
			name = "streamrpc-" + rest[1]
		}
	default:
		return errACLUsage
	}
	password := ""
	if *withPassword {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the password: %w", err)
		}
		if password = strings.TrimRight(line, "\r\n"); password == "" {
			return errors.New("reading the password: standard input is empty")
		}
	}
	fields := streams.ACLSetUser(name, password, rules)
	words := make([]string, len(fields))
	for i, f := range fields {
		words[i] = cliQuote(fmt.Sprint(f))
	}
	fmt.Fprintln(stdout, strings.Join(words, " "))
	if password == "" {
		fmt.Fprintf(stderr, "streamrpc acl: no password given: %s stays off until you run ACL SETUSER %s on >PASSWORD\n", name, name)
	}
	return nil
}

// cliQuote quotes an argument for redis-cli when it holds a space (a
// selector does); the rules hold no quotes or backslashes.
func cliQuote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
