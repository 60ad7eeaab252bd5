package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/trailaudit/trail/internal/bench"
)

const benchHelp = `Usage: trail bench [-n N] [-batch B] [-c C] [-data DIR] [-json] [-cpuprofile FILE]

Measures the log engine alone, with no network: appends N synthetic audit
events of about 500 bytes to a new log, B entries per call from C goroutines,
and prints entries per second, the latency of one call (p50, p99, p99.9), the
time of one bare write+fsync on the same disk measured in the same run, and
the bytes stored on disk per entry.

The log is made in a new temporary directory under the current one (so on
the disk you are standing on), removed afterwards; or in -data DIR, which
must not exist or be empty, and is kept.

Examples:
  trail bench -n 1000000 -batch 1000
  trail bench -n 300000 -batch 1 -c 64
  trail bench -n 5000 -batch 1 -c 1 -json

Flags:
`

func init() { commands["bench"] = runBench }

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, benchHelp)
	var cfg bench.Config
	fs.IntVar(&cfg.N, "n", 100000, "the number of entries to append")
	fs.IntVar(&cfg.Batch, "batch", 1000, "entries per append call")
	fs.IntVar(&cfg.Concurrency, "c", 1, "goroutines appending concurrently")
	fs.StringVar(&cfg.Dir, "data", "", "make the log in `directory` (new or empty) and keep it")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the append phase to `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	var prof *os.File
	if *profile != "" {
		var err error
		if prof, err = os.Create(*profile); err != nil {
			return err
		}
		cfg.CPUProfile = prof
	}
	res, err := bench.Run(ctx, cfg)
	if prof != nil {
		if cerr := prof.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
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
