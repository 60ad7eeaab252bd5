package scan

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// streamConn is a connection whose peer sends a fixed byte stream and
// then closes; what is written to it is dropped.
type streamConn struct {
	r *bytes.Reader
}

func (c *streamConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// record wraps payload in a TLS record of type typ.
func record(typ uint8, payload []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// handshakeMsg wraps body in a handshake message header.
func handshakeMsg(typ uint8, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// FuzzReadHello feeds a server's answer, as bytes on the wire, to the
// prober's reader: records, fragmented handshake messages, alerts. It
// must never panic, and when it returns no error it has a ServerHello, an
// alert or a close to report.
func FuzzReadHello(f *testing.F) {
	hello := handshakeMsg(msgServerHello, serverHelloBody(VersionTLS12, 0xC02F, [32]byte{1}, []extension{{extRenegotiationInfo, []byte{0}}}))
	cert := handshakeMsg(msgCertificate, []byte{0, 0, 5, 0, 0, 2, 0x30, 0})
	done := handshakeMsg(msgServerHelloDone, nil)
	f.Add(record(recordHandshake, hello), uint8(0))
	f.Add(append(record(recordHandshake, hello), record(recordHandshake, append(cert, done...))...), uint8(msgCertificate))
	// A ServerHello split over two records.
	f.Add(append(record(recordHandshake, hello[:10]), record(recordHandshake, hello[10:])...), uint8(msgServerKeyExchange))
	f.Add(record(recordAlert, []byte{2, 40}), uint8(0))
	f.Add(append(record(recordHandshake, hello), record(recordAlert, []byte{2, 80})...), uint8(msgCertificate))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, stream []byte, until uint8) {
		p := &prober{}
		resp, err := p.readHello(&streamConn{bytes.NewReader(stream)}, []byte{0}, until)
		if err != nil {
			if resp != nil {
				t.Errorf("readHello returned a response with error %v", err)
			}
			return
		}
		if resp == nil || resp.hello == nil && !resp.alert && !resp.closed {
			t.Fatalf("readHello(%x) = %+v, nil: no hello, alert or close", stream, resp)
		}
		if resp.refused() && resp.msgs != nil {
			t.Errorf("messages after no ServerHello: %v", resp.msgs)
		}
		_ = resp.why()
	})
}

// TestReadHelloEOF checks that a close before any answer is a refusal,
// not an error.
func TestReadHelloEOF(t *testing.T) {
	p := &prober{}
	resp, err := p.readHello(&streamConn{bytes.NewReader(nil)}, []byte{0}, 0)
	if err != nil || !resp.closed {
		t.Errorf("readHello(empty) = %+v, %v; want closed", resp, err)
	}
}
