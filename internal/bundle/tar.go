package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// header is the tar header of every member: only the name and size vary.
func header(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
}

// tarWriter writes members with canonical headers and counts the bytes.
type tarWriter struct {
	tw *tar.Writer
	cw *countWriter
}

func newTarWriter(w io.Writer) *tarWriter {
	cw := &countWriter{w: w}
	return &tarWriter{tw: tar.NewWriter(cw), cw: cw}
}

func (t *tarWriter) add(name string, data []byte) error {
	if err := t.tw.WriteHeader(header(name, int64(len(data)))); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

func (t *tarWriter) close() error { return t.tw.Close() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// canonReader reads a bundle's members and checks, byte for byte, that the
// archive is exactly what tarWriter writes for them: the tar reader's
// input is echoed into pending, and a tar writer fed the members read
// must produce the same bytes. So no header field, padding or trailer byte
// can change unnoticed; the members' contents are checked by the verifier.
type canonReader struct {
	r       io.Reader
	pending bytes.Buffer // read by the tar reader, not yet matched
	off     int64        // bundle offset of pending's first byte
	tr      *tar.Reader
	tw      *tar.Writer
	where   string // what is being matched, for messages
	diff    *Failure
}

func newCanonReader(r io.Reader) *canonReader {
	c := &canonReader{r: r}
	c.tr = tar.NewReader(readFunc(c.read))
	c.tw = tar.NewWriter(writeFunc(c.match))
	return c
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

type writeFunc func([]byte) (int, error)

func (f writeFunc) Write(p []byte) (int, error) { return f(p) }

func (c *canonReader) read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pending.Write(p[:n])
	return n, err
}

// match compares what the canonical writer writes with what was read.
func (c *canonReader) match(p []byte) (int, error) {
	for c.pending.Len() < len(p) {
		// The writer is ahead (the trailer): read what it compares with.
		buf := make([]byte, len(p)-c.pending.Len())
		n, err := io.ReadFull(c.r, buf)
		c.pending.Write(buf[:n])
		if err != nil {
			break
		}
	}
	got := c.pending.Next(len(p))
	for i := range got {
		if got[i] != p[i] {
			c.diff = fail(fmt.Sprintf("bundle byte %d", c.off+int64(i)), "the tar framing %s is not as trail writes it", c.where)
			return 0, c.diff
		}
	}
	c.off += int64(len(got))
	if len(got) < len(p) {
		c.diff = fail(fmt.Sprintf("bundle byte %d", c.off), "the bundle ends early, %s", c.where)
		return 0, c.diff
	}
	return len(p), nil
}

// tarError turns an error of the tar reader or writer into a Failure.
func (c *canonReader) tarError(err error) error {
	if c.diff != nil {
		return c.diff
	}
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fail(fmt.Sprintf("bundle byte %d", c.off+int64(c.pending.Len())), "the bundle ends early, %s (truncated?)", c.where)
	}
	return fail(fmt.Sprintf("bundle byte %d", c.off), "not a tar archive as trail writes it, %s: %v", c.where, err)
}

// next reads the header of the next member, which must be want, and
// returns its size.
func (c *canonReader) next(want string) (int64, error) {
	c.where = "before member " + want
	h, err := c.tr.Next()
	if err == io.EOF {
		return 0, fail(fmt.Sprintf("bundle byte %d", c.off), "the bundle ends where member %s should be (truncated?)", want)
	}
	if err != nil {
		return 0, c.tarError(err)
	}
	if h.Name != want {
		return 0, fail(fmt.Sprintf("bundle byte %d", c.off), "member %.100q where %s should be", h.Name, want)
	}
	if err := c.tw.WriteHeader(header(want, h.Size)); err != nil {
		return 0, c.tarError(err)
	}
	c.where = "in member " + want
	return h.Size, nil
}

// readAll reads the current member, of size bytes.
func (c *canonReader) readAll(size int64) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(c.tr, b); err != nil {
		return nil, c.tarError(err)
	}
	if _, err := c.tw.Write(b); err != nil {
		return nil, c.tarError(err)
	}
	return b, nil
}

// readInto reads the current member, of size bytes, into *buf, growing it
// as needed, and returns the bytes read.
func (c *canonReader) readInto(buf *[]byte, size int64) ([]byte, error) {
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	b := (*buf)[:size]
	if _, err := io.ReadFull(c.tr, b); err != nil {
		return nil, c.tarError(err)
	}
	if _, err := c.tw.Write(b); err != nil {
		return nil, c.tarError(err)
	}
	return b, nil
}

// stream passes the current member to fn in pieces.
func (c *canonReader) stream(fn func([]byte)) error {
	buf := make([]byte, 256<<10)
	for {
		n, err := c.tr.Read(buf)
		if n > 0 {
			fn(buf[:n])
			if _, werr := c.tw.Write(buf[:n]); werr != nil {
				return c.tarError(werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return c.tarError(err)
		}
	}
}

// end checks that no member follows, that the trailer is canonical and
// that nothing follows it.
func (c *canonReader) end() error {
	c.where = "after the last member"
	h, err := c.tr.Next()
	if err == nil {
		return fail(fmt.Sprintf("bundle byte %d", c.off), "member %.100q after the last one", h.Name)
	}
	if err != io.EOF {
		return c.tarError(err)
	}
	if err := c.tw.Close(); err != nil {
		return c.tarError(err)
	}
	if c.pending.Len() > 0 {
		return fail(fmt.Sprintf("bundle byte %d", c.off), "data after the end of the archive")
	}
	var one [1]byte
	if n, _ := io.ReadFull(c.r, one[:]); n > 0 {
		return fail(fmt.Sprintf("bundle byte %d", c.off), "data after the end of the archive")
	}
	return nil
}
