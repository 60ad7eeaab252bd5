package syslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Framing is how a connection delimits messages.
type Framing int

const (
	// Undetected: no byte has arrived yet.
	Undetected Framing = iota
	// OctetCounting is RFC 5425 / RFC 6587 §3.4.1: "MSG-LEN SP MSG", the
	// length in decimal counting every octet of MSG.
	OctetCounting
	// NonTransparent is RFC 6587 §3.4.2: each message ends with LF. A CR
	// before the LF is dropped; blank lines are skipped.
	NonTransparent
)

func (f Framing) String() string {
	switch f {
	case OctetCounting:
		return "octet-counting"
	case NonTransparent:
		return "newline"
	}
	return "undetected"
}

// FrameError is a malformed or oversized frame. The stream cannot be
// resynchronised after one, so the connection is closed.
type FrameError struct {
	// Offset is the stream offset, in bytes after the TLS layer, at which
	// the frame started.
	Offset int64
	// Size is the declared (octet counting) or accumulated (newline)
	// length of an oversized frame; 0 otherwise.
	Size int64
	// Problem says what is wrong.
	Problem string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("bad frame at byte %d: %s", e.Offset, e.Problem)
}

// TooLarge reports whether the frame exceeded the size limit.
func (e *FrameError) TooLarge() bool { return e.Size > 0 }

// ErrTruncated is returned by Framer.Next when the stream ends inside an
// octet-counted frame: the sender closed (or the connection broke) before
// the whole message arrived, so the partial message is not a message.
var ErrTruncated = errors.New("stream ended inside a frame")

// maxLenDigits bounds the digits of MSG-LEN read before the length is known
// to be too large, so that a stream of digits cannot run on.
const maxLenDigits = 12

// Framer splits a byte stream into syslog messages. The framing is chosen
// from the first byte: a digit means octet counting, '<' newline framing;
// anything else is a FrameError.
type Framer struct {
	r       *bufio.Reader
	max     int
	framing Framing
	off     int64 // stream offset of the next unread byte
}

// NewFramer returns a Framer reading r, refusing messages longer than max
// bytes.
func NewFramer(r io.Reader, max int) *Framer {
	return &Framer{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Framing returns the framing detected so far.
func (f *Framer) Framing() Framing { return f.framing }

// Offset returns how many bytes of the stream have been consumed.
func (f *Framer) Offset() int64 { return f.off }

// Next returns the next message, without its framing: for octet counting
// exactly MSG-LEN bytes (a trailing LF the sender counted is kept), for
// newline framing the line without LF (and without a CR before it). It
// returns io.EOF when the stream ends between messages, ErrTruncated when it
// ends inside an octet-counted frame, a *FrameError for a malformed or
// oversized frame, or the reader's error. The returned slice is the
// caller's.
//
// In newline framing, bytes after the last LF at the end of the stream are
// returned as a last message: such senders do not terminate the last line.
func (f *Framer) Next() ([]byte, error) {
	if f.framing == Undetected {
		b, err := f.r.Peek(1)
		if err != nil {
			return nil, err
		}
		switch {
		case b[0] >= '0' && b[0] <= '9':
			f.framing = OctetCounting
		case b[0] == '<':
			f.framing = NonTransparent
		default:
			return nil, &FrameError{Offset: f.off, Problem: fmt.Sprintf("stream starts with %q: want a digit (octet counting) or '<' (newline framing)", b[0])}
		}
	}
	if f.framing == OctetCounting {
		return f.nextCounted()
	}
	return f.nextLine()
}

func (f *Framer) nextCounted() ([]byte, error) {
	start := f.off
	var n int64
	digits := 0
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, ErrTruncated
			}
			return nil, err
		}
		f.off++
		switch {
		case c >= '0' && c <= '9':
			if digits == 0 && c == '0' {
				return nil, &FrameError{Offset: start, Problem: "MSG-LEN starts with 0"}
			}
			digits++
			if digits > maxLenDigits {
				return nil, &FrameError{Offset: start, Size: n, Problem: fmt.Sprintf("MSG-LEN of more than %d digits; the limit is %d bytes", maxLenDigits, f.max)}
			}
			n = n*10 + int64(c-'0')
			continue
		case c == ' ' && digits > 0:
		case digits == 0:
			return nil, &FrameError{Offset: start, Problem: fmt.Sprintf("frame starts with %q: want MSG-LEN (octet counting)", c)}
		default:
			return nil, &FrameError{Offset: start, Problem: fmt.Sprintf("MSG-LEN followed by %q: want a space", c)}
		}
		break
	}
	if n > int64(f.max) {
		return nil, &FrameError{Offset: start, Size: n, Problem: fmt.Sprintf("message of %d bytes exceeds the limit of %d", n, f.max)}
	}
	msg := make([]byte, n)
	got, err := io.ReadFull(f.r, msg)
	f.off += int64(got)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return msg, nil
}

func (f *Framer) nextLine() ([]byte, error) {
	for {
		start := f.off
		var line []byte
		for {
			chunk, err := f.r.ReadSlice('\n')
			f.off += int64(len(chunk))
			if len(line)+len(chunk) > f.max+2 { // +2: the CR LF are not the message
				return nil, &FrameError{Offset: start, Size: int64(len(line) + len(chunk)), Problem: fmt.Sprintf("line longer than the limit of %d bytes", f.max)}
			}
			line = append(line, chunk...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF && len(line) > 0 {
				break // an unterminated last line
			}
			if err != nil {
				return nil, err
			}
			break
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > f.max {
			return nil, &FrameError{Offset: start, Size: int64(len(line)), Problem: fmt.Sprintf("line longer than the limit of %d bytes", f.max)}
		}
		if len(line) == 0 {
			continue // blank lines carry no message
		}
		return line, nil
	}
}

// AppendOctetCounted appends msg to b in octet-counting framing.
func AppendOctetCounted(b, msg []byte) []byte {
	b = fmt.Appendf(b, "%d ", len(msg))
	return append(b, msg...)
}
