package otlp

// SetMaxDecoded lowers the decompressed body limit until the returned
// function is called.
func SetMaxDecoded(n int64) (restore func()) {
	old := maxDecoded
	maxDecoded = n
	return func() { maxDecoded = old }
}
