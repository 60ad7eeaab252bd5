//go:build unix

package bench

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// usage is the space a directory tree takes.
type usage struct {
	files     int   // regular files
	allocated int64 // st_blocks of every file and directory, in bytes
	apparent  int64 // sizes of the regular files
}

func diskUsage(dir string) (usage, error) {
	var u usage
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			u.allocated += int64(st.Blocks) * 512
		}
		if info.Mode().IsRegular() {
			u.files++
			u.apparent += info.Size()
		}
		return nil
	})
	return u, err
}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
