package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/tlsconf"
)

const benchHelp = `Usage: trail bench [-n N] [-batch B] [-c C] [-data DIR] [-json] [-cpuprofile FILE]
       trail bench -server URL [-n N] [-batch B] [-c C] [-conns K] [-warmup D] [-data DIR]
                   [-cacert FILE] [-cert FILE -key FILE] [-token FILE] [-json]

Without -server, measures the log engine alone, with no network: appends N
synthetic audit events of about 500 bytes to a new log, B entries per call
from C goroutines, and prints entries per second, the latency of one call
(p50, p99, p99.9), the time of one bare write+fsync on the same disk
measured in the same run, and the bytes stored on disk per entry.

The log is made in a new temporary directory under the current one (so on
the disk you are standing on), removed afterwards; or in -data DIR, which
must not exist or be empty, and is kept.

With -server, generates load on a running trail serve: C clients post N
synthetic events of about 420 bytes to URL/v1/events over HTTP/2 and mutual
TLS (TLS 1.3), B per request (one bare event, or a JSON array), each client
with one request in flight, spread over K connections. The request bodies
are encoded before the clock starts and the clients warm up for -warmup
first (those events are appended too, and counted apart). It prints events
per second and the latency of one request (p50, p90, p99, p99.9). Every
event appended stays in the server's log. The credentials default to the
admin certificate that trail serve made in DIR (default ./trail-data):
DIR/pki/ca.crt, DIR/pki/admin.crt and admin.key. A request that fails (no
reply, or one other than 200) counts as an error; the first few are
printed, and the exit code is 1 if any failed.

Examples:
  trail bench -n 1000000 -batch 1000
  trail bench -n 300000 -batch 1 -c 64
  trail bench -n 5000 -batch 1 -c 1 -json
  trail bench -server https://127.0.0.1:8443 -n 1000000 -batch 1000 -c 4
  trail bench -server https://127.0.0.1:8443 -n 200000 -batch 1 -c 64
  trail bench -server https://127.0.0.1:8443 -n 5000 -batch 1 -c 1 -json

Flags:
`

func init() { commands["bench"] = runBench }

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, benchHelp)
	var cfg bench.Config
	fs.IntVar(&cfg.N, "n", 100000, "the number of entries to append")
	fs.IntVar(&cfg.Batch, "batch", 1000, "entries per append call (per request with -server)")
	fs.IntVar(&cfg.Concurrency, "c", 1, "goroutines appending concurrently (clients with -server)")
	fs.StringVar(&cfg.Dir, "data", "", "make the log in `directory` (new or empty) and keep it; with -server, the server's data directory, for default credentials (default ./trail-data)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the append phase to `file` (of this process only, with -server)")
	server := fs.String("server", "", "load the trail server at `URL` instead of the engine")
	conns := fs.Int("conns", 0, "with -server, the `number` of TCP connections (default one per 8 clients, at most 8)")
	caFile := fs.String("cacert", "", "with -server, the CA certificate `file` to trust (default DIR/pki/ca.crt)")
	certFile := fs.String("cert", "", "with -server, the client certificate `file` (default DIR/pki/admin.crt unless -token is given)")
	keyFile := fs.String("key", "", "with -server, the client key `file` (default DIR/pki/admin.key unless -token is given)")
	tokenFile := fs.String("token", "", "with -server, send the bearer token read from `file`")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "with -server, how long to append before measuring")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var prof *os.File
	openProfile := func() error {
		if *profile == "" {
			return nil
		}
		var err error
		prof, err = os.Create(*profile)
		return err
	}
	closeProfile := func(err error) error {
		if prof != nil {
			if cerr := prof.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		return err
	}

	if *server != "" {
		hc := bench.HTTPConfig{URL: *server, N: cfg.N, Batch: cfg.Batch, Clients: cfg.Concurrency, Conns: *conns, Warmup: *warmup}
		if *warmup <= 0 {
			hc.Warmup = -1 // one request per client
		}
		probe := hc
		probe.TLS = &tls.Config{} // the flags are checked before any file is read
		if err := probe.Validate(); err != nil {
			return usageError{err.Error()}
		}
		if (*certFile == "") != (*keyFile == "") {
			return usageError{"-cert and -key go together"}
		}
		var err error
		if hc.TLS, hc.Token, err = benchCredentials(cfg.Dir, *caFile, *certFile, *keyFile, *tokenFile); err != nil {
			return err
		}
		if err := openProfile(); err != nil {
			return err
		}
		if prof != nil {
			hc.CPUProfile = prof
		}
		if hc.Clients == 1 {
			// One client needs one processor: a second only spins looking
			// for work while the reply is awaited, taking CPU from a server
			// on the same machine (about a fifth of the generator's time
			// per request, measured on 2 cores).
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		}
		res, err := bench.RunHTTP(ctx, hc)
		if err = closeProfile(err); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(res)
		} else {
			err = res.WriteText(stdout)
		}
		if err != nil {
			return err
		}
		if res.Errors > 0 {
			fmt.Fprintf(stderr, "trail: bench: %d of %d requests failed; the first: %s\n", res.Errors, res.Requests, res.FirstErrors[0])
			return errReported
		}
		return nil
	}

	for _, name := range []string{"conns", "cacert", "cert", "key", "token", "warmup"} {
		if flagSet(fs.Visit, name) {
			return usageError{fmt.Sprintf("-%s needs -server", name)}
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if err := openProfile(); err != nil {
		return err
	}
	if prof != nil {
		cfg.CPUProfile = prof
	}
	res, err := bench.Run(ctx, cfg)
	err = closeProfile(err)
	if errors.Is(err, bench.ErrNotEmpty) {
		return usageError{err.Error()}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return res.WriteText(stdout)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(visit func(func(*flag.Flag)), name string) bool {
	found := false
	visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// benchCredentials loads the client's TLS configuration and bearer token
// for bench -server: the files given, or the admin certificate that trail
// serve made in the data directory dir (default ./trail-data). With a
// token and no certificate, no certificate is presented.
func benchCredentials(dir, caFile, certFile, keyFile, tokenFile string) (*tls.Config, string, error) {
	if dir == "" {
		dir = "trail-data"
	}
	pkiDir := filepath.Join(dir, "pki")
	if caFile == "" {
		caFile = filepath.Join(pkiDir, tlsconf.CACertFile)
	}
	var token string
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("couldn't read the token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, "", fmt.Errorf("%s is empty: want a bearer token", tokenFile)
		}
	} else if certFile == "" {
		certFile, keyFile = filepath.Join(pkiDir, adminCertFile), filepath.Join(pkiDir, adminKeyFile)
	}
	tc, err := bench.ClientTLS(caFile, certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("%w (trail serve makes them in -data DIR; or give -cacert, -cert and -key)", err)
	}
	return tc, token, nil
}
