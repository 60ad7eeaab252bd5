package ledger_test

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/ledger"
)

// Every Append benchmark counts one op per entry, so their ns/op and
// entries/s compare directly; the entries are trail bench's synthetic audit
// events (about 520 bytes).

// numEvents is a multiple of every batch size benchmarked, so that batches
// never straddle the end of the events.
const numEvents = 64000

var (
	eventsOnce sync.Once
	events     [][]byte
	eventBytes int64 // mean size
)

func benchEvents() [][]byte {
	eventsOnce.Do(func() {
		events = bench.Events(numEvents, 1)
		var total int64
		for _, e := range events {
			total += int64(len(e))
		}
		eventBytes = total / int64(len(events))
	})
	return events
}

func reportEntries(b *testing.B, entries int) {
	b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkAppend(b *testing.B) {
	evs := benchEvents()
	for _, batch := range []int{1, 1000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			l := openLog(b, b.TempDir())
			defer l.Close()
			b.SetBytes(eventBytes)
			b.ResetTimer()
			for i := 0; i < b.N; {
				lo := i % len(evs)
				hi := min(lo+batch, lo+b.N-i)
				if _, err := l.Append(b.Context(), evs[lo:hi]...); err != nil {
					b.Fatal(err)
				}
				i += hi - lo
			}
			b.StopTimer()
			reportEntries(b, b.N)
		})
	}
	// Concurrent single-entry appenders, as behind an HTTP server: they
	// share fsyncs through group commit.
	b.Run("concurrent=64x1", func(b *testing.B) {
		l := openLog(b, b.TempDir())
		defer l.Close()
		b.SetBytes(eventBytes)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for range 64 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					if _, err := l.Append(b.Context(), evs[i%int64(len(evs))]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		reportEntries(b, b.N)
	})
}

// provingLogSize spans two level-1 tiles and a partial one, so proofs reach
// level-2 hashes on the tree's right edge.
const provingLogSize = 2*65536*2 + 12345

// provingLog returns a log of provingLogSize entries with its tile cache
// warmed by one pass of proofs, as in a server that has been answering them.
func provingLog(b *testing.B) *ledger.Log {
	b.Helper()
	evs := benchEvents()
	l := openLog(b, b.TempDir())
	b.Cleanup(func() { l.Close() })
	for n := 0; n < provingLogSize; {
		k := min(1000, provingLogSize-n)
		lo := n % len(evs)
		if _, err := l.Append(b.Context(), evs[lo:lo+k]...); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	for i := int64(0); i < provingLogSize; i += 256 {
		if _, err := l.ProveInclusion(b.Context(), i, provingLogSize); err != nil {
			b.Fatal(err)
		}
	}
	return l
}

func BenchmarkProveInclusion(b *testing.B) {
	l := provingLog(b)
	size := l.Size()
	root, err := l.TreeHash(b.Context(), size)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("latest", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, err := l.ProveInclusion(b.Context(), rng.Int64N(size), size); err != nil {
				b.Fatal(err)
			}
		}
		reportProofs(b)
	})
	// Proofs for an older checkpoint need interior hashes that are not tile
	// boundaries, recomputed from their tile.
	b.Run("old", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			n := 1 + rng.Int64N(size)
			if _, err := l.ProveInclusion(b.Context(), rng.Int64N(n), n); err != nil {
				b.Fatal(err)
			}
		}
		reportProofs(b)
	})
	b.Run("check", func(b *testing.B) {
		// The client's side, for scale: checking one proof.
		idx := size / 3
		p, err := l.ProveInclusion(b.Context(), idx, size)
		if err != nil {
			b.Fatal(err)
		}
		e, err := l.ReadEntry(b.Context(), idx)
		if err != nil {
			b.Fatal(err)
		}
		leaf := tlog.RecordHash(e)
		for b.Loop() {
			if err := tlog.CheckRecord(p, size, root, idx, leaf); err != nil {
				b.Fatal(err)
			}
		}
		reportProofs(b)
	})
}

func BenchmarkProveConsistency(b *testing.B) {
	l := provingLog(b)
	size := l.Size()
	b.Run("to-latest", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 4))
		for b.Loop() {
			if _, err := l.ProveConsistency(b.Context(), 1+rng.Int64N(size), size); err != nil {
				b.Fatal(err)
			}
		}
		reportProofs(b)
	})
	b.Run("old", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 4))
		for b.Loop() {
			to := 1 + rng.Int64N(size)
			if _, err := l.ProveConsistency(b.Context(), 1+rng.Int64N(to), to); err != nil {
				b.Fatal(err)
			}
		}
		reportProofs(b)
	})
}

func BenchmarkTreeHash(b *testing.B) {
	l := provingLog(b)
	size := l.Size()
	b.Run("latest", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.TreeHash(b.Context(), size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("old", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(5, 6))
		for b.Loop() {
			if _, err := l.TreeHash(b.Context(), 1+rng.Int64N(size)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func reportProofs(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
}
