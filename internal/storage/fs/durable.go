package fs

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/trailaudit/trail/internal/durable"
)

// ErrLocked is returned by Open when another process has the log open.
var ErrLocked = errors.New("data directory is in use by another trail process")

// syncAll flushes files concurrently: the kernel merges their journal
// commits, so two files cost about what one does.
func syncAll(files []*os.File) error {
	switch len(files) {
	case 0:
		return nil
	case 1:
		return durable.Datasync(files[0])
	}
	errc := make(chan error, len(files)-1)
	for _, f := range files[1:] {
		go func() { errc <- durable.Datasync(f) }()
	}
	err := durable.Datasync(files[0])
	for range files[1:] {
		err = errors.Join(err, <-errc)
	}
	return err
}

// writeFileDurable writes a file that a crash leaves whole or absent,
// creating its directory if needed.
func writeFileDurable(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(path, data, perm)
}
