// Command trail is a tamper-evident audit log.
//
// Usage:
//
//	trail serve [-config FILE] [-data DIR] [-listen ADDR] [-ops-listen ADDR] [-profile intermediate|modern]
//	            [-tls-cert FILE -tls-key FILE] [-names LIST]
//	trail cert issue NAME -role writer|reader|auditor|admin [-data DIR] [-out DIR]
//	trail cert list [-data DIR] [-json]
//	trail cert revoke NAME [-data DIR]
//	trail token create NAME -role writer|reader|auditor|admin [-data DIR]
//	trail token list [-data DIR] [-json]
//	trail token revoke NAME [-data DIR]
//	trail append [-f FILE] [-proof DIR] [-json] [connection flags] [EVENT_JSON...]
//	trail get [-json] [connection flags] INDEX
//	trail verify -data DIR [-json] [-key VKEY]
//	trail verify -server URL [-state FILE|DIR] [-key VKEY] [-witness VKEY]... [-witness-quorum N] [-json] [connection flags]
//	trail verify -bundle FILE -key VKEY | -receipt FILE -key VKEY
//	trail search [filters] [-q TEXT] [-order newest|oldest] [-limit N] [-cursor C | -all] [-json] [-verify] [connection flags]
//	trail reindex [-data DIR] [-json]
//	trail export -o FILE [-from N] [-to M] | [-since TIME] [-until TIME] [connection flags]
//	trail receipt [-o FILE] [connection flags] INDEX
//	trail witness -log VKEY... -client-ca FILE... [-data WDIR] [-listen ADDR]
//	trail witness key | config | refusals [-data WDIR]
//	trail scan [-json] [-min-grade G] [-profile intermediate|modern] [-cafile FILE]... [-timeout D] [-c N] [-record] ENDPOINT...
//	trail bench [-n N] [-batch B] [-c C] [-data DIR] [-sweep RATE] [-json] [-cpuprofile FILE]
//	trail bench -server URL [-n N] [-batch B] [-c C] [-json] [connection flags]
//	trail key [-data DIR]
//	trail version
//
// Connection flags of the client commands: -server URL, -data DIR, -cacert
// FILE, -cert FILE, -cert-key FILE, -token FILE, -key VKEY; environment
// TRAIL_SERVER, TRAIL_DATA, TRAIL_TOKEN. On the server's machine
// DATA/serve.json and DATA/pki make them unnecessary. The trusted state of
// verify -server is os.UserConfigDir()/trail/trusted/<origin>.
//
// Exit codes: 0 success, 1 failure (including a failed verification or a
// SECURITY ERROR), 2 usage error.
//
// Files: the data directory (default ./trail-data) holds log/ (a C2SP
// tlog-tiles tree: checkpoint, tile/...), state/ (the entries being filled,
// every signed checkpoint, a lock), keys/ (log.key, mode 0600, and
// log.vkey, the verifier key) and pki/ (the private CA, the server
// certificate, the admin client certificate, issued certificates, the
// revocation list and token hashes; keys 0600). docs/config.md lists them.
//
// The HTTP API of trail serve is documented in docs/api.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `trail is a tamper-evident audit log.

Usage:
  trail serve [-config FILE] [-data DIR] [-listen ADDR]
                                               run the log server (TLS only)
  trail cert issue NAME -role ROLE             issue a client certificate
  trail cert list | revoke NAME                list or revoke client certificates
  trail token create NAME -role ROLE           create a bearer token
  trail token list | revoke NAME               list or revoke bearer tokens
  trail append [-f FILE] [-proof DIR] [EVENT_JSON...]
                                               append events (arguments, a file, or NDJSON on stdin)
  trail get [-json] INDEX                      read an entry; proof and checkpoint verified
  trail verify -server URL [-state FILE|DIR]   check a running server against the trusted state
  trail verify -data DIR [-json] [-key VKEY]   verify a data directory offline
  trail verify -bundle FILE -key VKEY          verify an exported bundle offline
  trail verify -receipt FILE -key VKEY         verify one entry's receipt offline
  trail search [filters] [-q TEXT] [-verify]   search the log; every result with its proof
  trail reindex [-data DIR]                    rebuild the search index from the log
  trail export -o FILE -from N -to M | -since TIME
                                               export a range as a self-contained bundle
  trail receipt [-o FILE] INDEX                write the receipt (C2SP tlog-proof) of an entry
  trail witness -log VKEY -client-ca FILE      run a witness (C2SP tlog-witness)
  trail witness key | config | refusals        a witness's key, config block, refusals
  trail scan [-json] [-min-grade G] [-cafile FILE]... [-record] ENDPOINT...
                                               grade endpoints' TLS configuration
  trail bench [-n N] [-batch B] [-c C] [-data DIR] [-sweep RATE] [-json]
                                               measure the log engine
  trail bench -server URL [-n N] [-batch B] [-c C] [-json]
                                               measure a running server
  trail key [-data DIR]                        print the log's verifier key
  trail version                                print the version

Run "trail COMMAND -h" for a command's flags.

Examples:
  trail serve
  trail append '{"time":"2026-11-29T08:00:00Z","actor":{"id":"alice"},"action":"login"}'
  trail append -f events.ndjson -proof receipts
  trail get 1
  trail verify
  trail verify -data ./trail-data
  trail search -actor alice -since 24h
  trail export -since 7d -o last-week.tar
  trail scan -cafile trail-data/pki/ca.crt https://127.0.0.1:8443
  trail bench -n 1000000 -batch 1000
  trail bench -server https://127.0.0.1:8443 -n 200000 -batch 1 -c 64 -json
`

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// failure is an error already reported to the user: exit code 1 with no
// further message.
var errReported = errors.New("reported")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "trail: %s\n", ue.msg)
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(stderr, "trail: %s\n", err)
		return 1
	}
}

// commands maps each subcommand to its run function. Each takes the
// arguments after its name.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return nil
	}
	if args[0] == "version" {
		fmt.Fprintln(stdout, version())
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q (run \"trail help\")", args[0])}
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// newFlagSet returns a FlagSet for a subcommand whose -h prints help, the
// flags, and nothing twice.
func newFlagSet(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet("trail "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(stderr, help)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.SetOutput(io.Discard) // parse errors are returned, then printed once by main
	return fs
}

// parseFlags parses args, turning errors into usage errors and refusing
// stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // Parse has printed the help
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
