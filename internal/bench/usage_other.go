//go:build !unix

package bench

import (
	"io/fs"
	"path/filepath"
	"time"
)

// usage is the space a directory tree takes. Without st_blocks, the space
// allocated is taken to be the apparent size.
type usage struct {
	files     int
	allocated int64
	apparent  int64
}

func diskUsage(dir string) (usage, error) {
	var u usage
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		u.files++
		u.apparent += info.Size()
		u.allocated += info.Size()
		return nil
	})
	return u, err
}

// cpuTime is unknown here: Result.CPUSeconds stays 0.
func cpuTime() time.Duration { return 0 }
