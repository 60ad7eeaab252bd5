package tlsconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/trailaudit/trail/internal/durable"
)

// createFile writes data to path, which must not exist; see durable.CreateFile.
func createFile(path string, data []byte, perm os.FileMode) error {
	return durable.CreateFile(path, data, perm)
}

// moveAside renames path to a new name with a suffix that says when, never
// replacing an existing file, and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".old-" + now.UTC().Format("20060102T150405Z")
	for i := range 100 {
		aside := base
		if i > 0 {
			aside = fmt.Sprintf("%s.%d", base, i)
		}
		err := os.Link(path, aside)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("couldn't keep old %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return "", err
		}
		return aside, durable.SyncDir(filepath.Dir(path))
	}
	return "", fmt.Errorf("couldn't keep old %s: too many old copies named %s*", path, base)
}
