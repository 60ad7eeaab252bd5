//go:build unix

package index

import (
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f, read-only. Pages are read as the
// searches touch them, and shared with the page cache.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
