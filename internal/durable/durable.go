// Package durable writes files so that a crash leaves either the whole file
// or none, and makes names durable: the few file-system habits that trail's
// log, keys and certificates all depend on.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir makes the creation, removal or renaming of names in dir durable.
func SyncDir(dir string) error {
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

// WriteFile writes data to path, replacing any file there: a synced
// temporary file in the same directory is renamed into place and the
// directory synced.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// CreateFile writes data to path, which must not exist: a synced temporary
// file is linked into place (a link, unlike a rename, never replaces a file)
// and the directory synced. If path exists, the error wraps fs.ErrExist.
func CreateFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("couldn't create %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes data to a synced temporary file beside path.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = Datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("couldn't write %s: %w", path, err)
	}
	return f.Name(), nil
}
