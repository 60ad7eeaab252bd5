package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

var errLocked = errors.New("data directory is in use by another trail process")

// syncAll flushes files concurrently: the kernel merges their journal
// commits, so two files cost about what one does.
func syncAll(files []*os.File) error {
	switch len(files) {
	case 0:
		return nil
	case 1:
		return datasync(files[0])
	}
	errc := make(chan error, len(files)-1)
	for _, f := range files[1:] {
		go func() { errc <- datasync(f) }()
	}
	err := datasync(files[0])
	for range files[1:] {
		err = errors.Join(err, <-errc)
	}
	return err
}

// syncDir makes the creation, removal or renaming of names in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("couldn't sync directory %s: %w", dir, err)
	}
	return nil
}

// writeFileDurable writes an immutable file: a temporary file in the same
// directory, synced, renamed into place, and the directory synced. A crash
// leaves either no file or the whole file, never a torn one.
func writeFileDurable(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := datasync(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}
