package scan

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrTimeout means an endpoint did not answer a probe in time. A timeout
// is reported as such, never taken for "not supported".
var ErrTimeout = errors.New("timed out")

// errNotTLS means the endpoint answered with something that is not TLS.
var errNotTLS = errors.New("the answer is not TLS")

// prober sends hand-written hellos to one endpoint, one connection per
// probe, and reads what comes back up to the message it needs.
type prober struct {
	addr    string
	timeout time.Duration
	dialer  net.Dialer
	sem     chan struct{} // bounds this endpoint's connections in flight
	count   atomic.Int64  // probes made
}

// response is what a server answered to one hello.
type response struct {
	hello *serverHello
	// alert is set when the server answered with an alert, before or
	// after its hello.
	alert    bool
	alertMsg uint8
	// closed is set when the server closed or reset the connection
	// without an alert.
	closed bool
	// msgs holds the bodies of the handshake messages read after the
	// ServerHello, by type.
	msgs map[uint8][]byte
	// conn is the open connection, when the caller asked to keep it.
	conn net.Conn
}

// refused reports whether the server turned the hello down (an alert or a
// close) rather than answering with a hello.
func (r *response) refused() bool { return r.hello == nil }

// why says in words how the server refused.
func (r *response) why() string {
	switch {
	case r.alert:
		return "alert " + AlertName(r.alertMsg)
	case r.closed:
		return "connection closed"
	}
	return ""
}

// exchange sends the record payload and reads the answer: up to the
// ServerHello, or, if until is not zero, on to the handshake message of
// that type or ServerHelloDone, whichever comes first. If keep is set the
// connection is left open in the response for the caller to close.
func (p *prober) exchange(ctx context.Context, payload []byte, until uint8, keep bool) (*response, error) {
	c, err := p.open(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := p.readHello(c, payload, until)
	if err != nil || !keep {
		c.Close()
		return resp, err
	}
	resp.conn = c
	return resp, nil
}

// probeConn is a probe's connection. Close gives the prober slot back
// and stops watching the context.
type probeConn struct {
	net.Conn
	stop    func() bool
	release func()
	closed  atomic.Bool
}

func (c *probeConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.stop()
		c.release()
	}
	return err
}

// open takes a slot and dials, with the probe's deadline set on the
// connection.
func (p *prober) open(ctx context.Context) (net.Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.count.Add(1)
	deadline := time.Now().Add(p.timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := p.dialer.DialContext(dctx, "tcp", p.addr)
	if err != nil {
		<-p.sem
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("connecting to %s: %w", p.addr, ErrTimeout)
		}
		return nil, &DialError{Addr: p.addr, Err: err}
	}
	c.SetDeadline(deadline)
	// Cancelling ctx ends a read in progress at once.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return &probeConn{Conn: c, stop: stop, release: func() { <-p.sem }}, nil
}

// DialError means the endpoint could not be reached at all.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("couldn't connect to %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// readErr classifies a read error: a timeout, a close or reset (the
// server refusing), or another error.
func readErr(err error) (closed bool, _ error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return false, ErrTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true, nil
	}
	return false, err
}

const maxRecord = 16384 + 2048

// readRecord reads one TLS record.
func readRecord(c net.Conn) (typ uint8, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[0] < recordChangeCipherSpec || hdr[0] > recordHeartbeat || hdr[1] != 3 && hdr[1] != 0 {
		return 0, nil, errNotTLS
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n > maxRecord {
		return 0, nil, errNotTLS
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

func (p *prober) readHello(c net.Conn, payload []byte, until uint8) (*response, error) {
	resp := &response{}
	if _, err := c.Write(payload); err != nil {
		closed, err := readErr(err)
		if closed {
			resp.closed = true
			return resp, nil
		}
		return nil, err
	}
	var hs []byte // handshake bytes not yet parsed
	for {
		typ, rec, err := readRecord(c)
		if err != nil {
			closed, err := readErr(err)
			if closed {
				if resp.hello == nil {
					resp.closed = true
				}
				return resp, nil
			}
			return nil, err
		}
		switch typ {
		case recordAlert:
			_, desc, err := parseAlert(rec)
			if err != nil {
				return nil, fmt.Errorf("alert: %w", err)
			}
			resp.alert, resp.alertMsg = true, desc
			return resp, nil
		case recordHandshake:
			hs = append(hs, rec...)
			for len(hs) >= 4 {
				n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
				if len(hs) < 4+n {
					break
				}
				typ, body := hs[0], hs[4:4+n]
				hs = hs[4+n:]
				if resp.hello == nil {
					if typ != msgServerHello {
						return nil, fmt.Errorf("%w: handshake message %d before ServerHello", errNotTLS, typ)
					}
					sh, err := parseServerHello(body)
					if err != nil {
						return nil, fmt.Errorf("ServerHello: %w", err)
					}
					resp.hello = sh
					if until == 0 || sh.hrr || sh.selectedVersion == VersionTLS13 {
						return resp, nil
					}
					continue
				}
				if resp.msgs == nil {
					resp.msgs = map[uint8][]byte{}
				}
				resp.msgs[typ] = body
				if typ == until || typ == msgServerHelloDone {
					return resp, nil
				}
			}
			if len(hs) > 1<<20 {
				return nil, fmt.Errorf("%w: handshake message too large", errNotTLS)
			}
		default:
			if resp.hello == nil {
				return nil, fmt.Errorf("%w: record type %d before ServerHello", errNotTLS, typ)
			}
			return resp, nil
		}
	}
}

// ssl2Response is what a server answered to an SSL 2.0 CLIENT-HELLO: a
// SERVER-HELLO, or nothing usable (refused).
type ssl2Response struct {
	hello *ssl2ServerHello
	why   string
}

func (p *prober) exchangeSSL2(ctx context.Context) (*ssl2Response, error) {
	c, err := p.open(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var challenge [16]byte
	rand.Read(challenge[:])
	if _, err := c.Write(marshalSSL2Hello(challenge)); err != nil {
		if closed, err := readErr(err); !closed {
			return nil, err
		}
		return &ssl2Response{why: "connection closed"}, nil
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		if closed, err := readErr(err); !closed {
			return nil, err
		}
		return &ssl2Response{why: "connection closed"}, nil
	}
	if hdr[0] >= recordChangeCipherSpec && hdr[0] <= recordHeartbeat && hdr[1] == 3 {
		return &ssl2Response{why: "answered in TLS"}, nil // typically an alert
	}
	var n int
	if hdr[0]&0x80 != 0 {
		n = int(hdr[0]&0x7f)<<8 | int(hdr[1])
	} else {
		n = int(hdr[0]&0x3f)<<8 | int(hdr[1])
		var pad [1]byte
		if _, err := io.ReadFull(c, pad[:]); err != nil {
			return &ssl2Response{why: "malformed answer"}, nil
		}
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c, msg); err != nil {
		if closed, err := readErr(err); !closed {
			return nil, err
		}
		return &ssl2Response{why: "connection closed"}, nil
	}
	sh, err := parseSSL2ServerHello(msg)
	if err != nil {
		return &ssl2Response{why: "not an SSL 2.0 SERVER-HELLO"}, nil
	}
	return &ssl2Response{hello: sh}, nil
}
