//go:build unix

package ledger_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/verify"
)

// The crash tests run the log in a child process (this test binary, run again
// with -test.run=^TestCrashChild$) that appends from several goroutines and
// reports every acknowledged append on stdout, and SIGKILL it at random
// moments: while it appends and signs checkpoints, and sometimes while it is
// still opening and recovering the log.
//
// After each kill the parent recovers a copy of the directory, as a restarted
// server would, and checks that every acknowledged entry is at its index, byte
// for byte; that everything else in the log is whole entries the child tried
// to append, in order, each at most once; that every stored checkpoint still
// matches the tree; and that the offline verifier accepts the directory. The
// original directory is left as the kill left it, so the next round's child
// recovers it itself, and a kill can land in the middle of that recovery.

// crashEnv carries the child's crashConfig, as JSON.
const crashEnv = "TRAIL_CRASH_CHILD"

type crashConfig struct {
	Dir      string
	Round    int
	Workers  int
	Shape    batchShape
	Interval time.Duration // checkpoint interval
	// Lifetime bounds the child's run should the parent fail to kill it.
	Lifetime time.Duration
}

// batchShape chooses the batches a child appends.
type batchShape int

const (
	// shapeMixed: mostly single entries, some batches of a few and of up to
	// 300, and now and then an entry too large for a bundle.
	shapeMixed batchShape = iota
	// shapeMultiBundle: batches of 1,000 entries, so that every commit spans
	// four or five 256-entry bundles.
	shapeMultiBundle
)

// batchID names one Append of a child: the seq-th of worker in round.
type batchID struct{ Round, Worker, Seq int }

// crashBatch returns the entries of batch id. Parent and child derive them
// from the same seed, so the child reports only identifiers and the parent
// knows every byte that was acknowledged.
func crashBatch(shape batchShape, id batchID) [][]byte {
	seed := uint64(id.Round)<<40 | uint64(id.Worker)<<32 | uint64(id.Seq)
	rng := rand.New(rand.NewPCG(seed, uint64(shape)))
	n, large := 1000, -1
	if shape == shapeMixed {
		switch r := rng.IntN(100); {
		case r < 40:
			n = 1
		case r < 70:
			n = 2 + rng.IntN(7)
		default:
			n = 9 + rng.IntN(292)
		}
		if rng.IntN(20) == 0 {
			large = rng.IntN(n)
		}
	}
	batch := make([][]byte, n)
	for i := range batch {
		size := rng.IntN(200)
		if i == large {
			size = c2sp.MaxEntrySize + rng.IntN(100_000)
		}
		off := rng.IntN(len(crashPad) - size)
		batch[i] = fmt.Appendf(nil, `{"round":%d,"worker":%d,"seq":%d,"i":%d,"pad":"%s"}`, id.Round, id.Worker, id.Seq, i, crashPad[off:off+size])
	}
	return batch
}

// crashPad is random letters that entries take their padding from.
var crashPad = func() string {
	b := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{}).Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}()

// entryID parses the identifiers at the start of an entry made by
// crashBatch; comparing the whole entry with the batch checks the rest.
func entryID(e []byte) (id batchID, i int, ok bool) {
	var v [4]int
	for k, key := range []string{`{"round":`, `,"worker":`, `,"seq":`, `,"i":`} {
		if e, ok = bytes.CutPrefix(e, []byte(key)); !ok {
			return batchID{}, 0, false
		}
		j := 0
		for ; j < len(e) && j < 9 && '0' <= e[j] && e[j] <= '9'; j++ {
			v[k] = v[k]*10 + int(e[j]-'0')
		}
		if j == 0 {
			return batchID{}, 0, false
		}
		e = e[j:]
	}
	return batchID{v[0], v[1], v[2]}, v[3], true
}

// openDir opens the log in dir as trail does.
func openDir(ctx context.Context, dir string, interval time.Duration) (*ledger.Log, error) {
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: interval})
	if err != nil {
		store.Close()
		return nil, err
	}
	return l, nil
}

// TestCrashChild is the child process of the crash tests; run directly, it
// skips.
func TestCrashChild(t *testing.T) {
	js := os.Getenv(crashEnv)
	if js == "" {
		t.Skip("run by the crash tests as their child process")
	}
	// The child never returns: it appends until killed. Failures go to stderr
	// and exit at once, whatever goroutine finds them.
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "crash child: "+format+"\n", args...)
		os.Exit(2)
	}
	// One Write per line: a line is either wholly in the pipe or not at all.
	say := func(line string) {
		if _, err := os.Stdout.Write([]byte(line + "\n")); err != nil {
			fail("couldn't report: %v", err)
		}
	}
	var cfg crashConfig
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fail("bad config: %v", err)
	}
	time.AfterFunc(cfg.Lifetime, func() { fail("not killed within %v", cfg.Lifetime) })
	say("start")
	ctx := context.Background()
	l, err := openDir(ctx, cfg.Dir, cfg.Interval)
	if err != nil {
		fail("couldn't open the log: %v", err)
	}
	say("ready")
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Go(func() {
			for seq := range 1 << 20 {
				id := batchID{cfg.Round, w, seq}
				batch := crashBatch(cfg.Shape, id)
				first, err := l.Append(ctx, batch...)
				if err != nil {
					fail("append %+v: %v", id, err)
				}
				// Only now is the batch acknowledged.
				say(fmt.Sprintf("ack %d %d %d %d", w, seq, first, len(batch)))
			}
		})
	}
	wg.Wait()
	fail("ran out of work before being killed")
}

// ack is one acknowledged Append, as the child reported it.
type ack struct {
	id    batchID
	first int64
	count int
}

// killPlan says when to kill the child: delay after its "ready" line (the log
// is open and appends are starting), or if early, delay after its "start" line
// (it is about to open and recover the log, which takes 10 to 60 ms under the
// race detector).
type killPlan struct {
	early bool
	delay time.Duration
}

func (p killPlan) String() string {
	if p.early {
		return fmt.Sprintf("%v after start", p.delay)
	}
	return fmt.Sprintf("%v after ready", p.delay)
}

// runChild runs one child on cfg.Dir, kills it as planned, and returns the
// appends it acknowledged before it died.
func runChild(t *testing.T, cfg crashConfig, plan killPlan) []ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cfg.Lifetime+10*time.Second)
	defer cancel()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var (
		acks   []ack
		other  []string // anything else the child printed, for failure messages
		badAck error
	)
	started, ready, eof := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "start":
				close(started)
			case line == "ready":
				close(ready)
			case strings.HasPrefix(line, "ack "):
				a := ack{id: batchID{Round: cfg.Round}}
				if _, err := fmt.Sscanf(line, "ack %d %d %d %d", &a.id.Worker, &a.id.Seq, &a.first, &a.count); err != nil && badAck == nil {
					badAck = fmt.Errorf("bad line %q: %v", line, err)
				}
				acks = append(acks, a)
			default:
				other = append(other, line)
			}
		}
	}()

	wait := ready
	if plan.early {
		wait = started
	}
	select {
	case <-wait:
		time.Sleep(plan.delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Errorf("round %d: couldn't kill the child: %v", cfg.Round, err)
		}
	case <-eof:
		// The child died before it was killed; Wait tells how.
	case <-time.After(cfg.Lifetime):
		cmd.Process.Signal(syscall.SIGKILL)
		<-eof
		cmd.Wait()
		t.Fatalf("round %d: child hung before it was ready (%v)\nstderr:\n%s", cfg.Round, plan, stderr.Bytes())
	}
	<-eof // all reads complete before Wait, as exec requires
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL || stderr.Len() > 0 {
		t.Fatalf("round %d: child ended with %v, not by our SIGKILL (%v)\nstderr:\n%s\nstdout:\n%s",
			cfg.Round, err, plan, stderr.Bytes(), strings.Join(other, "\n"))
	}
	if badAck != nil {
		t.Fatalf("round %d: %v", cfg.Round, badAck)
	}
	return acks
}

// crashStats counts what the checks saw, to show the kills landed where they
// should.
type crashStats struct {
	kills     int
	early     int // kills planned early: during open and recovery, or soon after
	acked     int // acknowledged appends
	unacked   int // kills after which the log ended in entries never acknowledged
	cutShort  int // kills after which the log ended in part of a batch
	maxSize   int64
	freshDirs int
	warnings  map[string]int // verifier warnings, by kind
}

// crashDir is a data directory that children append to and are killed on,
// round after round.
type crashDir struct {
	path    string
	shape   batchShape
	acks    []ack                // every append acknowledged in it
	batches map[batchID][][]byte // batches regenerated so far
}

func (d *crashDir) batch(id batchID) [][]byte {
	b, ok := d.batches[id]
	if !ok {
		b = crashBatch(d.shape, id)
		d.batches[id] = b
	}
	return b
}

// checkRecovered recovers a copy of d, as a restarted server would, checks it
// against every append acknowledged in d and every checkpoint signed, and
// returns its size.
func checkRecovered(t *testing.T, d *crashDir, round int, st *crashStats) int64 {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(d.path)); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(cp)
	ctx := t.Context()
	l, err := openDir(ctx, cp, -1)
	if err != nil {
		t.Fatalf("round %d: reopening after the kill: %v", round, err)
	}
	defer l.Close()
	size := l.Size()
	if size > st.maxSize {
		st.maxSize = size
	}

	// Read every entry, resolving large ones to their bodies.
	entries := make([][]byte, 0, size)
	for lo := int64(0); lo < size; lo += c2sp.TileWidth {
		leaves, err := l.ReadEntries(ctx, lo, min(lo+c2sp.TileWidth, size))
		if err != nil {
			t.Fatalf("round %d: ReadEntries(%d, ...) after recovery: %v", round, lo, err)
		}
		for i, leaf := range leaves {
			body, err := l.Body(ctx, leaf)
			if err != nil {
				t.Fatalf("round %d: Body(entry %d) after recovery: %v", round, lo+int64(i), err)
			}
			entries = append(entries, body)
		}
	}

	// Every acknowledged entry is at its index, byte for byte.
	var maxAcked int64 = -1
	for _, a := range d.acks {
		want := d.batch(a.id)
		if len(want) != a.count {
			t.Fatalf("round %d: child acknowledged %d entries for batch %+v, which has %d", round, a.count, a.id, len(want))
		}
		for i, e := range want {
			idx := a.first + int64(i)
			maxAcked = max(maxAcked, idx)
			if idx >= size {
				t.Fatalf("round %d: acknowledged entry %d (batch %+v, entry %d) is missing: log size %d after recovery", round, idx, a.id, i, size)
			}
			if !bytes.Equal(entries[idx], e) {
				t.Fatalf("round %d: entry %d = %s, want %s (acknowledged in round %d, batch %+v, entry %d)",
					round, idx, brief(entries[idx]), brief(e), a.id.Round, a.id, i)
			}
		}
		// The same, one entry at a time, at both ends of the batch.
		for _, i := range []int{0, a.count - 1} {
			leaf, err := l.ReadEntry(ctx, a.first+int64(i))
			if err != nil {
				t.Fatalf("round %d: ReadEntry(%d): %v", round, a.first+int64(i), err)
			}
			if body, err := l.Body(ctx, leaf); err != nil || !bytes.Equal(body, want[i]) {
				t.Fatalf("round %d: Body(ReadEntry(%d)) = %s, %v; want %s (batch %+v, entry %d)",
					round, a.first+int64(i), brief(body), err, brief(want[i]), a.id, i)
			}
		}
	}
	if size < maxAcked+1 {
		t.Fatalf("round %d: log size %d after recovery, want at least %d", round, size, maxAcked+1)
	}
	if size > maxAcked+1 {
		st.unacked++
	}

	// Everything else is whole entries the children tried to append, in the
	// order they were committed: a batch is contiguous, each appears once,
	// rounds never go back, and only a round's last commit can have been cut
	// short by its kill (recovery keeps the intact part of a torn commit).
	seen := map[batchID]bool{}
	var prev batchID
	prevI, prevN := -1, 0
	for idx, e := range entries {
		id, i, ok := entryID(e)
		if !ok {
			t.Fatalf("round %d: entry %d = %s is not one a child appended", round, idx, brief(e))
		}
		b := d.batch(id)
		if i >= len(b) || !bytes.Equal(e, b[i]) {
			t.Fatalf("round %d: entry %d = %s, not entry %d of batch %+v", round, idx, brief(e), i, id)
		}
		switch {
		case i > 0 && (id != prev || i != prevI+1):
			t.Fatalf("round %d: entry %d is entry %d of batch %+v, but entry %d is entry %d of batch %+v", round, idx, i, id, idx-1, prevI, prev)
		case i == 0 && seen[id]:
			t.Fatalf("round %d: batch %+v appears twice, again at entry %d", round, id, idx)
		case i == 0 && idx > 0 && prevI != prevN-1 && prev.Round == id.Round:
			t.Fatalf("round %d: batch %+v ends after %d of its %d entries at entry %d, in the middle of round %d", round, prev, prevI+1, prevN, idx-1, id.Round)
		case id.Round < prev.Round:
			t.Fatalf("round %d: entry %d is from round %d, after an entry from round %d", round, idx, id.Round, prev.Round)
		}
		if i == 0 {
			seen[id] = true
		}
		prev, prevI, prevN = id, i, len(b)
	}
	if prevI != prevN-1 {
		st.cutShort++
	}

	// Every checkpoint ever signed is still a checkpoint of this tree.
	cps, err := l.Checkpoints(ctx)
	if err != nil {
		t.Fatalf("round %d: reading checkpoints: %v", round, err)
	}
	var last int64
	for _, c := range cps {
		if c.Size < last || c.Size > size {
			t.Fatalf("round %d: checkpoint of size %d after one of size %d, log size %d", round, c.Size, last, size)
		}
		last = c.Size
		root, err := l.TreeHash(ctx, c.Size)
		if err != nil || root != c.Hash {
			t.Fatalf("round %d: TreeHash(%d) = %v, %v; signed checkpoint says %v", round, c.Size, root, err, c.Hash)
		}
	}
	if latest := l.Latest(); latest == nil || latest.Size != size {
		t.Fatalf("round %d: newest checkpoint after reopening = %+v, want size %d", round, latest, size)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("round %d: closing the recovered log: %v", round, err)
	}
	verifyDir(t, cp, size, round, st)
	return size
}

// verifyDir runs the offline verifier on a recovered and closed directory of
// the given size, as `trail verify -data` does.
func verifyDir(t *testing.T, dir string, size int64, round int, st *crashStats) {
	t.Helper()
	rep, err := verify.Dir(t.Context(), dir, verify.Options{})
	if err != nil {
		t.Fatalf("round %d: verify.Dir after recovery: %v", round, err)
	}
	if rep.Size != size || rep.Entries != size {
		t.Fatalf("round %d: verify.Dir checked %d entries up to a checkpoint of size %d, want %d", round, rep.Entries, rep.Size, size)
	}
	for _, w := range rep.Warnings {
		if st.warnings == nil {
			st.warnings = map[string]int{}
		}
		st.warnings[warningKind(w)]++
	}
}

// warningKind strips a verifier warning of its digits, to count warnings by
// kind.
func warningKind(w string) string {
	return strings.Map(func(r rune) rune {
		if '0' <= r && r <= '9' {
			return '#'
		}
		return r
	}, w)
}

// brief shows an entry in a failure message.
func brief(e []byte) string {
	if len(e) <= 80 {
		return fmt.Sprintf("%q", e)
	}
	return fmt.Sprintf("%q... (%d bytes)", e[:80], len(e))
}

// crashSuite is one crash test's parameters.
type crashSuite struct {
	rounds  int
	workers int
	shape   batchShape
	// Kills come early (during open and recovery) with probability early,
	// after at most earlyMax; otherwise between minDelay and maxDelay after
	// the child is ready.
	early              float64
	earlyMax           time.Duration
	minDelay, maxDelay time.Duration
	// fresh is the probability that a round starts a new directory rather
	// than recovering and extending the previous one; maxSize forces a new
	// one, to keep each round's copy and check short.
	fresh   float64
	maxSize int64
}

func runCrashSuite(t *testing.T, s crashSuite) crashStats {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	var (
		st   crashStats
		d    *crashDir
		size int64
	)
	for round := range s.rounds {
		if d == nil || rng.Float64() < s.fresh || size > s.maxSize {
			d = &crashDir{path: t.TempDir(), shape: s.shape, batches: map[batchID][][]byte{}}
			size = 0
			st.freshDirs++
		}
		plan := killPlan{delay: s.minDelay + time.Duration(rng.Int64N(int64(s.maxDelay-s.minDelay)))}
		if rng.Float64() < s.early {
			plan = killPlan{early: true, delay: time.Duration(rng.Int64N(int64(s.earlyMax)))}
			st.early++
		}
		cfg := crashConfig{Dir: d.path, Round: round, Workers: s.workers, Shape: s.shape, Interval: 5 * time.Millisecond, Lifetime: 20 * time.Second}
		got := runChild(t, cfg, plan)
		st.kills++
		st.acked += len(got)
		d.acks = append(d.acks, got...)
		size = checkRecovered(t, d, round, &st)
	}
	t.Logf("%d kills (%d early), %d acknowledged appends, %d directories, largest log %d entries; "+
		"the log held unacknowledged entries after %d kills and part of a batch after %d",
		st.kills, st.early, st.acked, st.freshDirs, st.maxSize, st.unacked, st.cutShort)
	for w, n := range st.warnings {
		t.Logf("verifier warning after %d kills: %s", n, w)
	}
	return st
}

// TestCrash is the crash test the project requires: at least 50 SIGKILLs of a
// child appending concurrently, each followed by recovery and full checks.
func TestCrash(t *testing.T) {
	st := runCrashSuite(t, crashSuite{
		rounds:   55,
		workers:  8,
		shape:    shapeMixed,
		early:    0.2,
		earlyMax: 40 * time.Millisecond,
		minDelay: 5 * time.Millisecond,
		maxDelay: 150 * time.Millisecond,
		fresh:    0.12,
		maxSize:  12_000,
	})
	if st.kills < 50 {
		t.Errorf("%d kills, want at least 50", st.kills)
	}
}

// TestCrashMultiBundle kills the child while it commits batches of 1,000
// entries, each spanning several bundles, so that kills land between the
// writes, syncs and renames of one commit's bundles.
func TestCrashMultiBundle(t *testing.T) {
	runCrashSuite(t, crashSuite{
		rounds:   16,
		workers:  3,
		shape:    shapeMultiBundle,
		early:    0.1,
		earlyMax: 40 * time.Millisecond,
		minDelay: 20 * time.Millisecond,
		maxDelay: 200 * time.Millisecond,
		fresh:    0.2,
		maxSize:  30_000,
	})
}

// TestRecoverKilledInCreate reproduces a kill inside fs.create, between the
// O_EXCL creation of a new bundle's staging entries file and its hashes file.
func TestRecoverKilledInCreate(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	for range 2 {
		batch := make([][]byte, c2sp.TileWidth)
		for i := range batch {
			batch[i] = fmt.Appendf(nil, `{"i":%d}`, i)
		}
		if _, err := l.Append(t.Context(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// What the kill leaves: bundle 2's entries file, empty, and no hashes
	// file. (The files may have been made ahead of need: make sure.)
	if err := os.WriteFile(filepath.Join(dir, "state/staging/entries-000000000002"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "state/staging/hashes-000000000002")); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		t.Fatal(err)
	}
	l = openLog(t, dir)
	defer l.Close()
	if _, err := l.Append(t.Context(), []byte("after recovery")); err != nil {
		t.Fatalf("Append after recovering from a kill in fs.create: %v", err)
	}
}

// TestRecoverKilledBeforeUpperTile checks recovery from a kill inside
// fs.Append after a commit's entries are synced and before the level-1 tile
// it completes is written (or its full bundle sealed). The crash tests never
// grow a log that far.
func TestRecoverKilledBeforeUpperTile(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	const full = c2sp.TileWidth * c2sp.TileWidth // entries under one level-1 tile
	for n := 0; n < full+1; {
		batch := make([][]byte, min(4096, full-1-n))
		if n == full-1 {
			batch = make([][]byte, 2) // the commit that completes tile 1/000
		}
		for i := range batch {
			batch[i] = fmt.Appendf(nil, `{"i":%d}`, n+i)
		}
		if _, err := l.Append(t.Context(), batch...); err != nil {
			t.Fatal(err)
		}
		n += len(batch)
	}
	// Copy the directory while the log is open and idle: with no checkpoint
	// signed since the empty one, the copy is what a kill leaves once the
	// last commit's entries are synced...
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// ...after undoing what fs.Append does next: write tile 1/000 and seal
	// bundle 255.
	for _, mv := range [][2]string{
		{"log/tile/1/000", ""},
		{"log/tile/entries/255", "state/staging/entries-000000000255"},
		{"log/tile/0/255", "state/staging/hashes-000000000255"},
	} {
		var err error
		if mv[1] == "" {
			err = os.Remove(filepath.Join(crashed, mv[0]))
		} else {
			err = os.Rename(filepath.Join(crashed, mv[0]), filepath.Join(crashed, mv[1]))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := openDir(t.Context(), crashed, -1)
	if err != nil {
		t.Fatalf("Open after a kill between syncing entries and writing tile 1/000: %v", err)
	}
	defer l.Close()
	if l.Size() < full-1 {
		t.Fatalf("Size() = %d after recovery, want at least %d", l.Size(), full-1)
	}
}

// TestLoadKeysKilledInCreate reproduces a kill inside ledger.createKeys after
// the signing key file is created (O_EXCL) and before the key is written to it.
func TestLoadKeysKilledInCreate(t *testing.T) {
	dir := t.TempDir()
	if _, err := ledger.LoadOrCreateKeys(dir); err != nil {
		t.Fatal(err)
	}
	// What a kill can leave: the verifier key in place, the signing key
	// still in a temporary file, not yet linked to its name.
	if err := os.Rename(filepath.Join(dir, ledger.SigningKeyFile), filepath.Join(dir, "keys", ".tmp-123")); err != nil {
		t.Fatal(err)
	}
	k, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateKeys after a kill in key creation: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, ledger.SigningKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key after recreation: %v, %v; want mode 0600", fi, err)
	}
	again, err := ledger.LoadOrCreateKeys(dir)
	if err != nil || again.VerifierKey != k.VerifierKey {
		t.Fatalf("LoadOrCreateKeys changed the key: %v", err)
	}
}
