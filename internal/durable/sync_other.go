//go:build !linux

package durable

import "os"

// Datasync flushes a file's data; where fdatasync is not available, with fsync.
func Datasync(f *os.File) error { return f.Sync() }
