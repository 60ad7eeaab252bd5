package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
)

var _ Ingester = (*server.Server)(nil)

// Conflict retries: a sender that reconnects and sends again a message
// whose first append is still in flight gets a conflict from the
// idempotency memory until that append settles.
const (
	conflictRetries = 20
	conflictBackoff = 50 * time.Millisecond
)

// conn is one sender's connection.
type conn struct {
	l      *Listener
	nc     net.Conn
	tc     *tls.Conn
	remote string
	id     tlsconf.Identity
	leaf   *x509.Certificate
	log    *slog.Logger
	q      queue

	draining atomic.Bool
	drainEnd atomic.Int64 // unix nanoseconds

	framing  Framing      // set by the reader before it returns
	received atomic.Int64 // messages read
	appended atomic.Int64 // messages durable
}

// errRevoked stops a connection whose certificate was revoked or expired
// while it was open.
type errRevoked struct{ msg string }

func (e *errRevoked) Error() string { return e.msg }

// serve runs the handshake, checks the identity and serves the connection.
func (c *conn) serve() {
	defer c.l.untrack(c)
	ctx, cancel := context.WithTimeout(context.Background(), c.l.cfg.HandshakeTimeout)
	err := c.tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.l.m.connections.WithLabelValues("handshake_failed").Inc()
		c.l.log.Warn("syslog TLS handshake failed", "remote", c.remote, "err", err)
		c.nc.Close()
		return
	}
	cs := c.tc.ConnectionState()
	id, err := tlsconf.ClientIdentity(cs)
	if err == nil && id.Role != tlsconf.RoleWriter && id.Role != tlsconf.RoleAdmin {
		err = fmt.Errorf("%s has role %s; sending syslog needs writer or admin", id.Name, id.Role)
	}
	if err == nil && c.draining.Load() {
		err = errors.New("the listener is shutting down")
	}
	if err != nil {
		c.l.m.connections.WithLabelValues("refused").Inc()
		c.l.log.Warn("syslog connection refused", "remote", c.remote, "reason", err)
		c.tc.Close()
		return
	}
	c.id, c.leaf = id, cs.VerifiedChains[0][0]
	c.log = c.l.log.With("identity", id.Name, "remote", c.remote)
	c.l.m.connections.WithLabelValues("accepted").Inc()
	c.log.Info("syslog connection opened", "tls", tls.VersionName(cs.Version))
	c.run()
}

// run reads and appends until the stream ends or fails, then closes the
// connection: with a close_notify if everything received was appended, with
// a reset otherwise.
func (c *conn) run() {
	start := time.Now()
	c.q.init(max(queueBytes, 2*c.l.cfg.MaxMessageSize))
	readDone := make(chan error, 1)
	go func() {
		err := c.read()
		c.q.close()
		readDone <- err
	}()
	dropped, appendErr := c.appendLoop()
	if appendErr != nil {
		dropped += c.q.abort() // unblocks a reader waiting to queue
		c.reset()              // unblocks a reader waiting for data
	}
	readErr := <-readDone

	attrs := []any{"framing", c.framing, "received", c.received.Load(), "appended", c.appended.Load(), "duration", time.Since(start).Round(time.Millisecond)}
	var fe *FrameError
	switch {
	case appendErr != nil:
		reason := "append_failed"
		if _, ok := errors.AsType[*errRevoked](appendErr); ok {
			reason = "revoked"
		}
		c.l.m.dropped.WithLabelValues(reason).Add(float64(dropped))
		c.log.Error("syslog connection reset: messages could not be appended", append(attrs, "dropped", dropped, "err", appendErr)...)
	case errors.As(readErr, &fe):
		kind := "malformed"
		if fe.TooLarge() {
			kind = "too_large"
		}
		c.l.m.frameErrors.WithLabelValues(kind).Inc()
		c.log.Error("syslog connection reset: "+fe.Error(), append(attrs, "limit", c.l.cfg.MaxMessageSize)...)
		c.reset()
	case errors.Is(readErr, ErrTruncated):
		c.l.m.frameErrors.WithLabelValues("truncated").Inc()
		c.log.Warn("syslog connection ended inside a frame; the partial message was dropped", attrs...)
		c.tc.Close()
	case errors.Is(readErr, io.EOF):
		c.log.Info("syslog connection closed by the sender; everything received is durable", attrs...)
		c.tc.Close()
	case c.draining.Load() && errors.Is(readErr, os.ErrDeadlineExceeded):
		// The close_notify went out when the drain began. A reset rather
		// than a FIN makes the sender's next write fail at once, so that it
		// keeps that message for its next connection: after a FIN the first
		// write would seem to succeed and vanish.
		c.log.Info("syslog connection closed for shutdown; everything received is durable", attrs...)
		c.reset()
	default:
		c.log.Warn("syslog connection broke", append(attrs, "err", readErr)...)
		c.nc.Close()
	}
}

// read frames, parses and maps messages and queues them, until the stream
// ends or fails.
func (c *conn) read() error {
	fr := NewFramer(c.tc, c.l.cfg.MaxMessageSize)
	defer func() { c.framing = fr.Framing() }()
	for {
		raw, err := fr.Next()
		if err != nil {
			return err
		}
		c.received.Add(1)
		now := c.l.cfg.Now()
		m := Parse(raw, now)
		items := make([]pending, 0, 1)
		if seq, ok := sequenceID(&m); ok {
			st := c.l.seqs.observe(c.id.Name, seq)
			switch {
			case st.missing > 0:
				c.l.m.gaps.Inc()
				c.l.m.missing.Add(float64(st.missing))
				c.log.Warn("syslog sequence gap: messages missing", "previous", st.prev, "next", seq, "missing", st.missing)
				items = append(items, pending{ev: gapEvent(c.id.Name, &m, st, seq, now), size: pendingOverhead})
			case st.back:
				c.log.Info("syslog sequenceId went back: a resend or a restarted sender", "previous", st.prev, "next", seq)
			}
		}
		// An event holds the message about twice (details and original).
		items = append(items, pending{ev: MapEvent(&m, raw, c.id.Name, now), size: 2*len(raw) + pendingOverhead, msg: true})
		if !c.q.put(items) {
			return errors.New("appending failed")
		}
	}
}

// appendLoop appends what is queued, all of it at once up to MaxBatch,
// until the queue is closed and empty. On failure it returns how many
// messages of the failed batch were lost.
func (c *conn) appendLoop() (int, error) {
	for {
		batch := c.q.take(c.l.cfg.MaxBatch)
		if batch == nil {
			return 0, nil
		}
		if lost, err := c.appendBatch(batch); err != nil {
			return lost, err
		}
	}
}

func (c *conn) appendBatch(batch []pending) (int, error) {
	evs := make([]event.Event, len(batch))
	msgs := 0
	for i, p := range batch {
		evs[i] = p.ev
		if p.msg {
			msgs++
		}
	}
	if err := c.checkCertificate(); err != nil {
		return msgs, err
	}
	for attempt := 0; ; attempt++ {
		_, err := c.l.cfg.Ingester.Ingest(context.Background(), c.id, Via, evs)
		if err == nil {
			break
		}
		if _, ok := errors.AsType[*server.ConflictError](err); !ok {
			return msgs, fmt.Errorf("couldn't append %d messages: %w", msgs, err)
		}
		if attempt < conflictRetries {
			time.Sleep(conflictBackoff)
			continue
		}
		// Better a duplicate than a lost message: append without ids.
		c.log.Warn("syslog: event ids still in conflict; appending without them", "err", err)
		for i := range evs {
			evs[i].ID = ""
		}
	}
	c.appended.Add(int64(msgs))
	c.l.m.messages.Add(float64(msgs))
	c.l.m.batchSize.Observe(float64(len(evs)))
	return 0, nil
}

// checkCertificate refuses a certificate that expired or was revoked since
// the handshake, so that revoking a sender also stops its open connection.
func (c *conn) checkCertificate() error {
	if now := c.l.cfg.Now(); now.After(c.leaf.NotAfter) {
		return &errRevoked{fmt.Sprintf("client certificate %q expired at %s", c.id.Name, c.leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	if c.l.cfg.Revoked != nil && c.l.cfg.Revoked(c.leaf.SerialNumber) {
		return &errRevoked{fmt.Sprintf("client certificate %q (serial %s) was revoked", c.id.Name, tlsconf.SerialString(c.leaf.SerialNumber))}
	}
	return nil
}

// reset closes the connection with a TCP reset, so that the sender's next
// write fails instead of vanishing into a half-closed socket.
func (c *conn) reset() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.nc.Close()
}

// drain sends the sender a close_notify (RFC 5425 §4.4: the receiver
// initiates the exchange of close_notify alerts) and makes the reader stop
// once the sender has closed its side, or has been quiet for drainIdle, or
// at now+drainMax.
func (c *conn) drain(now time.Time) {
	c.drainEnd.Store(now.Add(drainMax).UnixNano())
	c.draining.Store(true)
	c.nc.SetReadDeadline(now.Add(drainIdle))
	// Before the handshake is complete this fails, harmlessly: the
	// deadline ends the handshake.
	c.tc.CloseWrite()
}

// hookedConn extends the read deadline while a connection drains, for as
// long as data keeps coming.
type hookedConn struct {
	net.Conn
	c *conn
}

func (h hookedConn) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	if n > 0 && h.c.draining.Load() {
		d := time.Now().Add(drainIdle)
		if end := time.Unix(0, h.c.drainEnd.Load()); end.Before(d) {
			d = end
		}
		h.Conn.SetReadDeadline(d)
	}
	return n, err
}

// queueBytes bounds what one connection holds between its reader and its
// appender (at least two messages of the largest size are always let in).
// pendingOverhead is what an event costs besides its message.
const (
	queueBytes      = 4 << 20
	pendingOverhead = 1024
)

// pending is a queued event.
type pending struct {
	ev   event.Event
	size int  // bytes held, roughly
	msg  bool // a sender's message (not a gap record)
}

// queue holds a connection's events between its reader and its appender,
// bounded in bytes so that a fast sender is slowed down by TCP flow control.
type queue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []pending
	bytes   int
	max     int
	closed  bool // the reader is done
	aborted bool // the appender is done
}

func (q *queue) init(maxBytes int) {
	q.cond.L = &q.mu
	q.max = maxBytes
}

// put queues items, waiting while the queue is full. It returns false if the
// appender has given up.
func (q *queue) put(items []pending) bool {
	size := 0
	for _, it := range items {
		size += it.size
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.aborted && len(q.items) > 0 && q.bytes+size > q.max {
		q.cond.Wait()
	}
	if q.aborted {
		return false
	}
	q.items = append(q.items, items...)
	q.bytes += size
	q.cond.Broadcast()
	return true
}

// take waits for events and returns up to n of them, or nil once the queue
// is closed and empty.
func (q *queue) take(n int) []pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed && !q.aborted {
		q.cond.Wait()
	}
	if q.aborted || len(q.items) == 0 {
		return nil
	}
	var batch []pending
	if n >= len(q.items) {
		// The usual case: hand over everything, and start a new slice as
		// large as this batch, since the next one is likely similar.
		batch, q.items = q.items, make([]pending, 0, len(q.items))
	} else {
		batch = make([]pending, n)
		copy(batch, q.items)
		q.items = append(q.items[:0], q.items[n:]...)
	}
	for _, it := range batch {
		q.bytes -= it.size
	}
	q.cond.Broadcast()
	return batch
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// abort discards what is queued, wakes the reader, and returns how many
// sender's messages were discarded.
func (q *queue) abort() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, it := range q.items {
		if it.msg {
			n++
		}
	}
	q.items, q.bytes, q.aborted = nil, 0, true
	q.cond.Broadcast()
	return n
}
