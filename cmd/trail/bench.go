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
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/bench"
)

const benchHelp = `Usage: trail bench [-n N] [-batch B] [-c C] [-data DIR] [-events KIND] [-sweep RATE] [-json] [-cpuprofile FILE]
       trail bench -server URL [-n N] [-batch B] [-c C] [-conns K | -http1] [-warmup D] [-json]
                   [-cpuprofile FILE] [connection flags]

Without -server, measures the log engine alone, with no network: appends N
synthetic audit events of about 500 bytes to a new log, B entries per call
from C goroutines, and prints entries per second, the latency of one call
(p50, p99, p99.9), the time of one bare write+fsync on the same disk
measured in the same run, and the bytes stored on disk per entry.

With -events search, the events are those the search figures of
docs/search.md are measured on: 10,000 actors, received evenly over N /
1,000,000 days (at least one), each with words no other event has. They are
made during the run, so the rate includes making them; with -c 1 the log is
the same from run to run.

With -sweep, trail serve's self-verification sweep (docs/tamper.md) runs
over and over while the entries are appended, reading at most RATE bytes
per second (-1: unbounded); the report adds the bytes it verified per
second. Compare with a run without -sweep for what it costs appends.

The log is made in a new temporary directory under the current one (so on
the disk you are standing on), removed afterwards; or in -data DIR, which
must not exist or be empty, and is kept.

With -server, generates load on a running trail serve: C clients post N
synthetic events of about 420 bytes to URL/v1/events over HTTP/2 and TLS
1.3, B per request (one bare event, or a JSON array), each client with one
request in flight, spread over K connections; with -http1, over HTTP/1.1,
each client on a connection of its own. The request bodies are
encoded before the clock starts, and the clients warm up for -warmup first
(those events are appended too, and counted apart). It prints events per
second, the latency of one request (p50, p90, p99, p99.9) and the CPU the
generator itself used. Every event appended stays in the server's log. A
request that fails (no reply, or one other than 200) counts as an error;
the first few are printed, and the exit code is 1 if any failed.

Connection flags, as for the client commands; on the server's machine none
is needed:
  DATA     -data, $TRAIL_DATA, or ./trail-data (the server's data directory)
  CA       -cacert, DATA/pki/ca.crt if present, or the system's roots
  identity -cert (its key is -cert-key, or the .key file beside it); or a
           bearer token, -token FILE or $TRAIL_TOKEN; or, with neither,
           DATA/pki/admin.crt and admin.key if present

Examples:
  trail bench -n 1000000 -batch 1000
  trail bench -n 300000 -batch 1 -c 64
  trail bench -n 1000000 -batch 1000 -sweep -1
  trail bench -n 10000000 -batch 1000 -events search -data /var/tmp/search10m
  trail bench -n 5000 -batch 1 -c 1 -json
  trail bench -server https://127.0.0.1:8443 -n 1000000 -batch 1000 -c 4
  trail bench -server https://127.0.0.1:8443 -n 200000 -batch 1 -c 64
  trail bench -server https://127.0.0.1:8443 -n 200000 -batch 1 -c 64 -http1
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
	fs.StringVar(&cfg.Dir, "data", "", "make the log in `directory` (new or empty) and keep it; with -server, the server's data directory (default $TRAIL_DATA or ./trail-data)")
	fs.StringVar(&cfg.Events, "events", "audit", "the `kind` of events: audit, or search (10,000 actors over N/1,000,000 days, made during the run: the log the search figures are measured on)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.Int64Var(&cfg.SweepRate, "sweep", 0, "run the self-verification sweep during the appends at `RATE` bytes/s (-1 unbounded)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the append phase to `file` (of this process only, with -server)")
	conn := addClientFlags(fs, false)
	conn.data, conn.key = &cfg.Dir, new(string) // -key, the verifier key, is of no use here
	fs.Lookup("server").Usage = "load the trail server at `URL` instead of the engine"
	conns := fs.Int("conns", 0, "with -server, the `number` of TCP connections (default one per 8 clients, at most 8)")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "with -server, how long to append before measuring")
	http1 := fs.Bool("http1", false, "with -server, speak HTTP/1.1, each client on a connection of its own, instead of HTTP/2")
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

	if *conn.server != "" {
		var engine []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "events" || f.Name == "sweep" {
				engine = append(engine, "-"+f.Name)
			}
		})
		if len(engine) > 0 {
			return usageError{fmt.Sprintf("%s: only without -server (the engine alone)", strings.Join(engine, ", "))}
		}
		hc := bench.HTTPConfig{URL: *conn.server, N: cfg.N, Batch: cfg.Batch, Clients: cfg.Concurrency, Conns: *conns, HTTP1: *http1, Warmup: *warmup}
		if *warmup <= 0 {
			hc.Warmup = -1 // one request per client
		}
		probe := hc
		probe.TLS = &tls.Config{} // the flags are checked before any file is read
		if err := probe.Validate(); err != nil {
			return usageError{err.Error()}
		}
		if err := conn.check(); err != nil {
			return err
		}
		cc, err := conn.config(false)
		if err != nil {
			return err
		}
		hc.Token = cc.Token
		if hc.TLS, err = bench.ClientTLS(cc.CAFile, cc.CertFile, cc.KeyFile); err != nil {
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

	var online []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains([]string{"cacert", "cert", "cert-key", "token", "conns", "warmup", "http1"}, f.Name) {
			online = append(online, "-"+f.Name)
		}
	})
	if len(online) > 0 {
		return usageError{fmt.Sprintf("%s: only with -server (loading a running server)", strings.Join(online, ", "))}
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
