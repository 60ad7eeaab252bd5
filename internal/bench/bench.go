// Package bench measures the log engine on this machine: it appends
// synthetic audit events to a fresh log in a local directory, with no
// network in the way, and reports throughput, latency, the cost of one bare
// write+fsync on the same disk, and the bytes stored per entry.
//
// The audit events are generated before the clock starts, so the generator
// does not compete with the engine for the CPU. (The search events, made to
// measure the search, are generated during the run.) The storage is wrapped to time each
// group commit, which splits an Append's latency into the storage's part
// and the ledger's.
//
// On ext4 without a journal, creating a file right after many were deleted
// nearby (a previous run's directory, a test suite's temporary files) costs
// up to a millisecond of CPU: the kernel skips inodes freed in the last
// minutes. Runs in quick succession in one directory tree can thus slow each
// other down.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/selfcheck"
	"github.com/trailaudit/trail/internal/storage"
	fsstore "github.com/trailaudit/trail/internal/storage/fs"
)

// Config is one benchmark run.
type Config struct {
	// N is the number of entries to append. Required, at least 1.
	N int
	// Batch is the number of entries per Append call; the last call may
	// carry fewer. Required, at least 1.
	Batch int
	// Concurrency is the number of goroutines calling Append. Required, at
	// least 1.
	Concurrency int
	// Dir is the directory to create the log in. It must not exist or be
	// empty, and is kept afterwards. Default: a new temporary directory under
	// TempParent, removed afterwards.
	Dir string
	// TempParent is where the temporary directory is made when Dir is empty.
	// Default ".", so that the log lands on the file system the user is
	// standing on rather than on a tmpfs /tmp.
	TempParent string
	// CheckpointInterval is passed to the ledger. Default (0) is the
	// ledger's default, as in a server.
	CheckpointInterval time.Duration
	// FsyncSamples is how many bare write+fsync calls to time. Default 200.
	FsyncSamples int
	// CPUProfile, if set, receives a CPU profile of the append phase only.
	CPUProfile io.Writer
	// Events is the kind of events: "audit" (the default; see Events),
	// generated before the clock starts, or "search" (see SearchEvent),
	// the events the search figures are measured on, generated batch by
	// batch during the run (the rate includes making them; with C = 1 the
	// log is the same from run to run).
	Events string
	// SweepRate, if not zero, runs trail serve's self-verification sweep
	// (selfcheck.Sweep) over and over during the append phase, reading at
	// most SweepRate bytes per second (negative: unbounded), to measure
	// both its speed and what it costs appends.
	SweepRate int64
}

// Validate reports the first invalid field, named as the command-line flag
// that sets it.
func (c *Config) Validate() error {
	switch {
	case c.N < 1:
		return fmt.Errorf("-n must be at least 1, not %d", c.N)
	case c.Batch < 1:
		return fmt.Errorf("-batch must be at least 1, not %d", c.Batch)
	case c.Concurrency < 1:
		return fmt.Errorf("-c must be at least 1, not %d", c.Concurrency)
	case c.Events != "" && c.Events != "audit" && c.Events != "search":
		return fmt.Errorf(`-events must be "audit" or "search", not %q`, c.Events)
	case c.FsyncSamples < 0:
		return fmt.Errorf("FsyncSamples must not be negative, not %d", c.FsyncSamples)
	}
	return nil
}

// Result is what a run measured. Times are in milliseconds unless named
// otherwise; sizes in bytes.
type Result struct {
	N           int    `json:"n"`
	Batch       int    `json:"batch"`
	Concurrency int    `json:"concurrency"`
	Dir         string `json:"dir"`
	// DirKept is false when Dir was a temporary directory, now removed.
	DirKept bool `json:"dir_kept"`

	// Seconds is the wall time from the first Append call to the last
	// acknowledgement; it excludes Open and Close.
	Seconds       float64 `json:"seconds"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	// P50Ms, P99Ms, P999Ms and MaxMs are latencies of one Append call (a
	// batch), from the call to its return.
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// FsyncMs is the median time of one bare write of EntryBytes bytes
	// appended to a file in the same directory followed by fdatasync,
	// measured just before the appends.
	FsyncMs      float64 `json:"fsync_ms"`
	FsyncSamples int     `json:"fsync_samples"`
	// FsyncAfterMs is the same measured again after Close: a disk whose
	// sync time drifted during the run shows it here.
	FsyncAfterMs float64 `json:"fsync_after_ms"`
	// P50OverFsync is P50Ms / FsyncMs: how many bare syncs one Append costs.
	P50OverFsync float64 `json:"p50_over_fsync"`
	OpenMs       float64 `json:"open_ms"`
	CloseMs      float64 `json:"close_ms"`

	// EntryBytes is the mean size of one entry.
	EntryBytes float64 `json:"entry_bytes"`
	// BytesPerEntry is the space allocated on disk (st_blocks) for every
	// file and directory under Dir after Close, divided by N.
	BytesPerEntry float64 `json:"bytes_per_entry"`
	// BytesPerEntryApparent is the sum of the sizes of the regular files
	// under Dir after Close, divided by N.
	BytesPerEntryApparent float64 `json:"bytes_per_entry_apparent"`
	// Ratio is BytesPerEntry / EntryBytes.
	Ratio float64 `json:"ratio"`
	Files int     `json:"files"`

	// SweepPasses, SweepBytes and SweepMBps describe the self-verification
	// sweeps run during the append phase with Config.SweepRate: the passes
	// completed, the bytes they read, and the read rate in MB/s (10^6).
	SweepPasses int     `json:"sweep_passes,omitempty"`
	SweepBytes  int64   `json:"sweep_bytes,omitempty"`
	SweepMBps   float64 `json:"sweep_mb_per_sec,omitempty"`
	SweepError  string  `json:"sweep_error,omitempty"`

	// CPUSeconds is the user+system CPU time of the process during the
	// append phase (0 where the platform does not say), CPUCores the same
	// divided by Seconds.
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"`
	// AllocBytesPerEntry and GCCycles count heap allocation and garbage
	// collections during the append phase.
	AllocBytesPerEntry float64 `json:"alloc_bytes_per_entry"`
	GCCycles           uint32  `json:"gc_cycles"`

	// Commits is the number of group commits (storage appends) and
	// EntriesPerCommit their mean size. StoreP50Ms and StoreP99Ms are the
	// times the storage took to make one durable, and StoreBusy the fraction
	// of Seconds it spent doing so: near 1, the storage is the bottleneck.
	Commits          int     `json:"commits"`
	EntriesPerCommit float64 `json:"entries_per_commit"`
	StoreP50Ms       float64 `json:"store_p50_ms"`
	StoreP99Ms       float64 `json:"store_p99_ms"`
	StoreBusy        float64 `json:"store_busy"`
	// Checkpoints is the number of checkpoints stored, CheckpointMs the mean
	// time the storage took for one.
	Checkpoints  int     `json:"checkpoints"`
	CheckpointMs float64 `json:"checkpoint_ms"`
}

// ErrNotEmpty is returned by Run when Config.Dir holds files: bench never
// writes into an existing log.
var ErrNotEmpty = errors.New("directory is not empty")

// maxDistinct bounds the events generated (about 500 MiB); longer runs
// append them again in order.
const maxDistinct = 1 << 20

// Run creates a log, measures one bare write+fsync in its directory, appends
// cfg.N events to it, closes it and measures its size on disk.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FsyncSamples == 0 {
		cfg.FsyncSamples = 200
	}
	dir, cleanup, err := prepareDir(cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	res = &Result{N: cfg.N, Batch: cfg.Batch, Concurrency: cfg.Concurrency, Dir: dir, DirKept: cfg.Dir != ""}

	var batchOf func(lo, hi int, buf []byte) ([][]byte, []byte)
	var generated atomic.Int64 // bytes of the search events made
	if cfg.Events == "search" {
		days := SearchDays(int64(cfg.N))
		batchOf = func(lo, hi int, _ []byte) ([][]byte, []byte) {
			// A new buffer each time: the log may hold on to a batch's
			// entries until it is durable and acknowledged.
			buf := make([]byte, 0, (hi-lo)*560)
			ends := make([]int, 0, hi-lo)
			for i := lo; i < hi; i++ {
				buf, _ = SearchEvent(buf, int64(i), int64(cfg.N), days)
				ends = append(ends, len(buf))
			}
			batch := make([][]byte, len(ends))
			start := 0
			for k, end := range ends {
				batch[k] = buf[start:end:end]
				start = end
			}
			generated.Add(int64(len(buf)))
			return batch, buf
		}
		var sample []byte
		for i := range min(cfg.N, 10_000) {
			sample, _ = SearchEvent(sample[:0], int64(i), int64(cfg.N), days)
			res.EntryBytes += float64(len(sample))
		}
		res.EntryBytes /= float64(min(cfg.N, 10_000)) // until the run has made them all
	} else {
		distinct := Events(min(cfg.N, maxDistinct), 1)
		entries := distinct
		if cfg.N > len(distinct) {
			entries = make([][]byte, cfg.N)
			for i := range entries {
				entries[i] = distinct[i%len(distinct)]
			}
		}
		var total int64
		for _, e := range entries {
			total += int64(len(e))
		}
		res.EntryBytes = float64(total) / float64(cfg.N)
		batchOf = func(lo, hi int, buf []byte) ([][]byte, []byte) { return entries[lo:hi], buf }
	}

	fsync, err := measureFsync(dir, int(res.EntryBytes), cfg.FsyncSamples)
	if err != nil {
		return nil, fmt.Errorf("couldn't time a bare fsync: %w", err)
	}
	res.FsyncMs, res.FsyncSamples = ms(fsync), cfg.FsyncSamples

	start := time.Now()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	fstore, err := fsstore.Open(dir, nil)
	if err != nil {
		return nil, fmt.Errorf("couldn't open the log: %w", err)
	}
	store := &timedStore{Backend: fstore}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: cfg.CheckpointInterval})
	if err != nil {
		store.Close() // Open may have closed it already; a second Close is harmless
		return nil, fmt.Errorf("couldn't open the log: %w", err)
	}
	res.OpenMs = ms(time.Since(start))

	store.mu.Lock()
	store.commits, store.entries, store.checkpoints, store.cpTime = nil, 0, 0, 0 // count the append phase only
	store.mu.Unlock()
	stopSweep := startSweeps(cfg.SweepRate, fstore, keys, res)
	lat, err := appendAll(ctx, l, batchOf, cfg, res)
	if cfg.Events == "search" && err == nil {
		res.EntryBytes = float64(generated.Load()) / float64(cfg.N)
	}
	stopSweep()
	store.report(res)
	start = time.Now()
	if cerr := l.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("couldn't close the log: %w", cerr)
	}
	res.CloseMs = ms(time.Since(start))
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	res.P50Ms = ms(quantile(lat, 0.50))
	res.P99Ms = ms(quantile(lat, 0.99))
	res.P999Ms = ms(quantile(lat, 0.999))
	res.MaxMs = ms(lat[len(lat)-1])
	res.EntriesPerSec = float64(cfg.N) / res.Seconds
	if res.FsyncMs > 0 {
		res.P50OverFsync = res.P50Ms / res.FsyncMs
	}

	after, err := measureFsync(dir, int(res.EntryBytes), cfg.FsyncSamples)
	if err != nil {
		return nil, fmt.Errorf("couldn't time a bare fsync: %w", err)
	}
	res.FsyncAfterMs = ms(after)

	u, err := diskUsage(dir)
	if err != nil {
		return nil, fmt.Errorf("couldn't measure the log's size: %w", err)
	}
	res.Files = u.files
	res.BytesPerEntry = float64(u.allocated) / float64(cfg.N)
	res.BytesPerEntryApparent = float64(u.apparent) / float64(cfg.N)
	res.Ratio = res.BytesPerEntry / res.EntryBytes
	return res, nil
}

// appendAll appends entries in batches from cfg.Concurrency goroutines and
// returns the latency of every Append call, in no particular order. It fills
// in the append phase's time, CPU and allocation figures.
func appendAll(ctx context.Context, l *ledger.Log, batchOf func(lo, hi int, buf []byte) ([][]byte, []byte), cfg Config, res *Result) ([]time.Duration, error) {
	batches := (cfg.N + cfg.Batch - 1) / cfg.Batch
	lat := make([]time.Duration, batches)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		ready    sync.WaitGroup
		begin    = make(chan struct{})
	)
	for range cfg.Concurrency {
		ready.Add(1)
		wg.Go(func() {
			ready.Done()
			<-begin
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= batches || ctx.Err() != nil {
					return
				}
				var batch [][]byte
				batch, buf = batchOf(i*cfg.Batch, min((i+1)*cfg.Batch, cfg.N), buf)
				t := time.Now()
				if _, err := l.Append(ctx, batch...); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	ready.Wait()

	runtime.GC() // start with a clean heap: the events are garbage-free
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			cancel()
			close(begin)
			wg.Wait()
			return nil, fmt.Errorf("couldn't start the CPU profile: %w", err)
		}
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)

	if firstErr != nil {
		return nil, fmt.Errorf("couldn't append: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Seconds = elapsed.Seconds()
	res.CPUSeconds = cpu.Seconds()
	res.CPUCores = cpu.Seconds() / elapsed.Seconds()
	res.AllocBytesPerEntry = float64(after.TotalAlloc-before.TotalAlloc) / float64(cfg.N)
	res.GCCycles = after.NumGC - before.NumGC
	return lat, nil
}

// prepareDir returns the directory to bench in, and a function that removes
// it if it was a temporary one.
func prepareDir(cfg Config) (string, func() error, error) {
	keep := func() error { return nil }
	if cfg.Dir != "" {
		names, err := os.ReadDir(cfg.Dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
				return "", nil, err
			}
		case err != nil:
			return "", nil, err
		case len(names) > 0:
			return "", nil, fmt.Errorf("%s: %w (bench makes a new log: give a new or empty directory)", cfg.Dir, ErrNotEmpty)
		}
		return cfg.Dir, keep, nil
	}
	parent := cfg.TempParent
	if parent == "" {
		parent = "."
	}
	dir, err := os.MkdirTemp(parent, "trail-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("couldn't create a temporary directory: %w", err)
	}
	return dir, func() error { return os.RemoveAll(dir) }, nil
}

// quantile returns the q-quantile of sorted by the nearest-rank method.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measureFsync times samples appends of one size-byte buffer to a new file in
// dir, each followed by the same data sync the storage uses, and returns the
// median. The file is removed afterwards.
func measureFsync(dir string, size, samples int) (time.Duration, error) {
	if samples == 0 {
		return 0, nil
	}
	f, err := os.CreateTemp(dir, ".fsync-probe-")
	if err != nil {
		return 0, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	buf := make([]byte, max(size, 1))
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	times := make([]time.Duration, samples)
	for i := range times {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := durable.Datasync(f); err != nil {
			return 0, err
		}
		times[i] = time.Since(t)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// startSweeps runs selfcheck.Sweep over the log until the returned func is
// called, which waits for the pass in progress and fills in res. A rate of
// zero runs none.
func startSweeps(rate int64, store storage.Backend, keys *ledger.Keys, res *Result) (stop func()) {
	if rate == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	var passes int
	var bytes int64
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			n, err := selfcheck.Sweep(ctx, store, keys.Verifier, rate)
			bytes += n
			if err != nil {
				if ctx.Err() == nil {
					res.SweepError = err.Error()
				}
				return
			}
			passes++
			if n == 0 { // no checkpoint yet
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		res.SweepPasses, res.SweepBytes = passes, bytes
		res.SweepMBps = float64(bytes) / 1e6 / time.Since(start).Seconds()
	}
}
