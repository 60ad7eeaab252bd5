// Package syslog receives syslog over TLS (RFC 5425) from rsyslog, syslog-ng
// and other senders, and appends each message to the log as an event.
//
// A Listener accepts TCP connections, completes a TLS handshake under the
// server's TLS policy with a client certificate required and verified
// against the PKI's CA (and not revoked), and admits identities with the
// writer or admin role. It reads messages in octet-counting framing (RFC
// 5425, "MSG-LEN SP MSG") or, if the first byte of the stream is '<',
// newline framing (RFC 6587 §3.4.2); parses them as RFC 5424, or as RFC 3164
// best effort (Parse); maps each to an event that keeps the message whole
// in its original (MapEvent); and appends them through an Ingester with via
// "syslog".
//
// # Durability
//
// Syslog has no application-level acknowledgement. Each connection has a
// reader and an appender: the reader frames, parses and queues messages;
// the appender takes everything queued whenever its previous append has
// become durable (never waiting on a timer) and appends it in one commit,
// in arrival order. The queue is bounded, so a sender faster than the log
// is slowed down by TCP flow control rather than by growing memory.
//
// When the sender closes the connection (a TLS close_notify, or a TCP FIN
// between two frames), everything it sent is appended before trail closes
// its side with a close_notify of its own. A sender that half-closes and
// waits for that close_notify (RFC 5425 allows it to) therefore knows that
// every message it sent is durable; a reset instead means some may not be.
// Whenever trail cannot append (a failed append, a malformed or oversized
// frame, a certificate revoked while connected) it resets the connection,
// so that the sender's next write fails and it reconnects. Shutdown sends
// a close_notify, reads until the sender closes or pauses, appends, and
// then resets too: after a FIN a sender's next write would seem to succeed
// and be lost (measured with rsyslog and syslog-ng), after a reset it fails
// and the sender keeps the message. Messages that a sender has written into
// a connection that then breaks, and messages in flight when trail stops
// abruptly, are lost unless the sender sends them again: that is what a
// sender's disk-assisted queue must cover. docs/producers/syslog.md has the
// contract for operators.
//
// # Deduplication and gaps
//
// A message with [meta sequenceId] and a TIMESTAMP gets an event id derived
// from the sequence number and a hash of the message, so that the same
// message sent again (after a reconnect, say) is appended once. The last
// sequenceId of each sender is remembered across its connections, and
// recalled from the log at start; a jump appends a syslog.sequence_gap event
// before the message that revealed it, logs a warning and counts
// trail_syslog_sequence_missing_total.
package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// Via is the ingestion path written into every leaf from this package.
const Via = "syslog"

// Defaults of Config.
const (
	// DefaultAddr is the IANA port for syslog over TLS, on loopback.
	DefaultAddr = "127.0.0.1:6514"
	// DefaultMaxMessageSize is the default limit of one message.
	DefaultMaxMessageSize = 256 << 10
	// MinMaxMessageSize is the least MaxMessageSize: the issue asks for
	// messages of at least 64 KiB (RFC 5425 only requires 2,048 octets).
	MinMaxMessageSize = 64 << 10
	// MaxMaxMessageSize bounds MaxMessageSize.
	MaxMaxMessageSize = 16 << 20
	// DefaultMaxBatch is the default number of messages in one append.
	DefaultMaxBatch = 2048
	// DefaultMaxConnections is the default number of connections open at
	// once.
	DefaultMaxConnections = 1024
	// DefaultHandshakeTimeout bounds a TLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultRecall is how many of the newest entries are read at start
	// for senders' last sequence numbers.
	DefaultRecall = 100_000
)

// How Shutdown drains: it keeps reading from each connection until its
// sender has been quiet for drainIdle, at most drainMax.
const (
	drainIdle = 100 * time.Millisecond
	drainMax  = 2 * time.Second
)

// Ingester appends mapped events in one durable commit and returns their
// indices once they are durable. An event whose ID the same producer
// logged before is not appended again. *server.Server implements it.
type Ingester interface {
	Ingest(ctx context.Context, id tlsconf.Identity, via string, events []event.Event) ([]int64, error)
}

// Config configures Listen.
type Config struct {
	// Addr is the TCP address to listen on. Default DefaultAddr.
	Addr string
	// TLS is the server's TLS configuration, from tlsconf.ServerConfig with
	// the configured profile. Required. Listen uses a clone that requires a
	// client certificate verified against ClientCAs.
	TLS *tls.Config
	// ClientCAs verifies client certificates: the PKI's CA pool. Required.
	ClientCAs *x509.CertPool
	// Revoked reports whether a client certificate's serial number is
	// revoked (tlsconf.RevocationList.Revoked). It is checked in the
	// handshake and again before each append, so a revocation also closes
	// open connections. Optional.
	Revoked func(serial *big.Int) bool
	// Ingester appends the events. Required.
	Ingester Ingester
	// MaxMessageSize is the largest message accepted, in bytes; a larger
	// one closes its connection. Default DefaultMaxMessageSize (256 KiB),
	// at least MinMaxMessageSize, at most MaxMaxMessageSize.
	MaxMessageSize int
	// MaxBatch is the most messages appended in one commit. Default
	// DefaultMaxBatch.
	MaxBatch int
	// MaxConnections is the most connections open at once; more are closed
	// as soon as they are accepted. Default DefaultMaxConnections.
	MaxConnections int
	// HandshakeTimeout bounds the TLS handshake. Default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Log, if not nil, is read at Listen: the newest Recall entries, for
	// the last [meta sequenceId] of each sender, so that a gap across a
	// restart of trail is seen. Pass the *ledger.Log.
	Log EntryReader
	// Recall is how many of the newest entries Listen reads from Log.
	// Default DefaultRecall; negative reads none.
	Recall int64
	// Registerer, if not nil, gets the listener's metrics
	// (trail_syslog_*).
	Registerer prometheus.Registerer
	// Logger receives connections, refusals, bad frames and sequence gaps.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock that stamps the time of messages without one.
	// Default: time.Now.
	Now func() time.Time
}

// ErrListenerClosed is returned by Serve after Shutdown.
var ErrListenerClosed = errors.New("syslog: listener closed")

// Listener is a syslog-over-TLS listener.
type Listener struct {
	cfg  Config
	ln   net.Listener
	tls  *tls.Config
	log  *slog.Logger
	m    *metrics
	seqs sequences

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup // connections being served
}

// Listen checks cfg and listens on cfg.Addr. Serve must be called to accept
// connections.
func Listen(cfg Config) (*Listener, error) {
	if cfg.TLS == nil || cfg.ClientCAs == nil || cfg.Ingester == nil {
		return nil, errors.New("syslog: TLS, ClientCAs and Ingester are required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	switch {
	case cfg.MaxMessageSize == 0:
		cfg.MaxMessageSize = DefaultMaxMessageSize
	case cfg.MaxMessageSize < MinMaxMessageSize || cfg.MaxMessageSize > MaxMaxMessageSize:
		return nil, fmt.Errorf("syslog: max message size %d outside %d..%d bytes", cfg.MaxMessageSize, MinMaxMessageSize, MaxMaxMessageSize)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recall == 0 {
		cfg.Recall = DefaultRecall
	}
	l := &Listener{cfg: cfg, log: cfg.Logger, conns: make(map[*conn]struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.tls = cfg.TLS.Clone()
	l.tls.ClientAuth = tls.RequireAndVerifyClientCert
	l.tls.ClientCAs = cfg.ClientCAs
	l.tls.NextProtos = nil
	l.tls.VerifyConnection = l.verifyConnection
	l.m = newMetrics(cfg.Registerer)
	if cfg.Log != nil && cfg.Recall > 0 {
		if err := l.seqs.recall(context.Background(), cfg.Log, cfg.Recall); err != nil {
			return nil, fmt.Errorf("syslog: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	l.ln = ln
	return l, nil
}

// Addr returns the address the listener listens on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// verifyConnection refuses a revoked client certificate in the handshake.
// The chain was verified by then (RequireAndVerifyClientCert).
func (l *Listener) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return tlsconf.ErrNoClientCertificate
	}
	leaf := cs.VerifiedChains[0][0]
	if l.cfg.Revoked != nil && l.cfg.Revoked(leaf.SerialNumber) {
		return fmt.Errorf("%w: %q, serial %s", tlsconf.ErrRevoked, leaf.Subject.CommonName, tlsconf.SerialString(leaf.SerialNumber))
	}
	return nil
}

// Serve accepts connections until Shutdown, serving each in its own
// goroutines. It returns ErrListenerClosed after Shutdown, or the error
// that stopped accepting.
func (l *Listener) Serve() error {
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			l.mu.Lock()
			closing := l.closing
			l.mu.Unlock()
			if closing {
				return ErrListenerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("syslog: %w", err)
			}
			// Out of file descriptors, say: wait rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Error("syslog accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := &conn{l: l, nc: nc, remote: nc.RemoteAddr().String()}
		c.tc = tls.Server(hookedConn{nc, c}, l.tls)
		if reason := l.track(c); reason != "" {
			l.m.connections.WithLabelValues(reason).Inc()
			l.log.Warn("syslog connection refused", "remote", c.remote, "reason", reason)
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// track registers c, or says why it is refused.
func (l *Listener) track(c *conn) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closing:
		return "refused"
	case len(l.conns) >= l.cfg.MaxConnections:
		return "over_limit"
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	l.m.open.Inc()
	return ""
}

func (l *Listener) untrack(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.m.open.Dec()
	l.wg.Done()
}

// Shutdown stops accepting, sends each sender a close_notify, reads what
// it sends until it closes or has been quiet for 100 ms (at most 2 s),
// appends it, resets the connections and returns. If ctx ends first, it resets the connections
// still open and returns ctx's error; appends in flight then still finish
// or fail on their own.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing = true
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	l.ln.Close() // the only error is closing twice
	now := time.Now()
	for _, c := range conns {
		c.drain(now)
	}
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for c := range l.conns {
			c.reset()
		}
		l.mu.Unlock()
		return ctx.Err()
	}
}
