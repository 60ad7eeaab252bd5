//go:build !unix

package index

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f: without mmap, a segment is held
// in memory.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}
