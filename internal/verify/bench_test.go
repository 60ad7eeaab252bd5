package verify_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/trailaudit/trail/internal/verify"
)

// BenchmarkDir verifies a log of 131,072 entries of 512 bytes (64 MiB of
// entries, 512 bundles), read from the page cache. The throughput it reports
// is of entry data: the bytes of the bundle files.
//
//	go test -run '^$' -bench Dir -benchtime 20x ./internal/verify/
func BenchmarkDir(b *testing.B) {
	for _, size := range []int{128, 512, 4096} {
		b.Run(fmt.Sprintf("entry=%dB", size), func(b *testing.B) {
			dir := b.TempDir()
			n := 64 << 20 / size
			buildLog(b, dir, spec{entries: n, size: size, batch: 8192, checkpoint: n / 4})
			bundles, err := filepath.Glob(filepath.Join(dir, "log", "tile", "entries", "*"))
			if err != nil {
				b.Fatal(err)
			}
			var total int64
			for _, p := range bundles {
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
					total += fi.Size()
				}
			}
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				rep, err := verify.Dir(b.Context(), dir, verify.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if rep.Entries != int64(n) {
					b.Fatalf("%d entries checked, want %d", rep.Entries, n)
				}
			}
		})
	}
}
