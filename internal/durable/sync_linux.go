package durable

import (
	"os"

	"golang.org/x/sys/unix"
)

// Datasync flushes a file's data and the metadata needed to read it back
// (its size), but not its timestamps: cheaper than fsync for appends. It
// retries when interrupted.
func Datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
