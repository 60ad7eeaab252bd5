//go:build !linux

package fs

import "os"

// lockDir is a no-op where flock is not available; running two servers on
// one directory there is the operator's mistake to avoid.
func lockDir(f *os.File) error { return nil }

func syncMany(files []*os.File) error { return syncAll(files) }
