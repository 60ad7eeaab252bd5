package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
)

// Defaults of the idempotency memory.
const (
	// DefaultIdempotencyKeys bounds the keys remembered while running; the
	// oldest are forgotten first.
	DefaultIdempotencyKeys = 1_000_000
	// DefaultIdempotencyScan is how many of the newest entries are read at
	// start to remember their keys across a restart.
	DefaultIdempotencyScan = 100_000
)

// A claim records that the entries a key names are in the log, or are being
// appended (done is open). Keys are scoped by the authenticated source: two
// producers may use the same key.
//
// Two kinds of key exist: a request's Idempotency-Key header, which names
// the whole request (n entries from first), and an event's own id, which
// names one entry. fp fingerprints the events, so that a key reused for
// different events is a conflict (409), not a silent replay.
type claim struct {
	done  chan struct{} // closed once first is set or the append failed
	ok    bool          // the append succeeded; first is valid
	first int64
	n     int
	fp    [sha256.Size]byte
}

// dedup is the server's memory of idempotency keys.
type dedup struct {
	mu     sync.Mutex
	claims map[string]*claim
	order  []string // keys in the order they were committed, for eviction
	max    int
}

func newDedup(max int) *dedup {
	return &dedup{claims: make(map[string]*claim), max: max}
}

func requestKey(source, key string) string { return source + "\x00k\x00" + key }
func eventKey(source, id string) string    { return source + "\x00i\x00" + id }

// fingerprint hashes the events' canonical JSON (Event.AppendJSON), which is
// also what a leaf holds under "event": the same whether computed from a
// request or read back from the log.
func fingerprint(evs ...event.Event) [sha256.Size]byte {
	var f fingerprinter
	var buf []byte
	for i := range evs {
		// An error means Details or Original is not JSON, which Validate
		// refuses before an event gets here; what was written still counts.
		buf, _ = evs[i].AppendJSON(buf[:0])
		f.add(buf)
	}
	return f.sum()
}

// fingerprinter hashes a list of canonical event encodings, each length-
// prefixed so that no two lists share a fingerprint.
type fingerprinter struct {
	h    hash.Hash
	size []byte
}

func (f *fingerprinter) add(canonical []byte) {
	if f.h == nil {
		f.h = sha256.New()
	}
	f.size = binary.AppendUvarint(f.size[:0], uint64(len(canonical)))
	f.h.Write(f.size)
	f.h.Write(canonical)
}

func (f *fingerprinter) sum() [sha256.Size]byte {
	if f.h == nil {
		f.h = sha256.New()
	}
	var sum [sha256.Size]byte
	f.h.Sum(sum[:0])
	return sum
}

// commit records a finished claim and evicts the oldest if over the bound.
// The caller holds d.mu.
func (d *dedup) commitLocked(key string, c *claim) {
	d.order = append(d.order, key)
	for len(d.order) > d.max {
		old := d.order[0]
		d.order = d.order[1:]
		if oc := d.claims[old]; oc != nil && oc.ok {
			delete(d.claims, old)
		}
	}
	if len(d.order) > 2*d.max && cap(d.order) > 4*d.max {
		d.order = append([]string(nil), d.order...)
	}
}

// recall reads the newest scan entries of l and remembers their keys, so
// that a producer retrying across a server restart creates no duplicate.
func (d *dedup) recall(ctx context.Context, l *ledger.Log, scan int64) error {
	size := l.Size()
	start := max(0, size-scan)
	d.mu.Lock()
	defer d.mu.Unlock()
	var run *claim                 // the request claim the previous entry belonged to
	var runKey, runReceived string // entries of one request share their received time
	var runFP fingerprinter
	flush := func() {
		if run != nil {
			run.fp = runFP.sum()
			if _, dup := d.claims[runKey]; !dup {
				d.claims[runKey] = run
				d.commitLocked(runKey, run)
			}
		}
		run, runFP = nil, fingerprinter{}
	}
	const chunk = 256
	for lo := start; lo < size; lo += chunk {
		leaves, err := l.ReadEntries(ctx, lo, min(lo+chunk, size))
		if err != nil {
			return fmt.Errorf("couldn't read entries to recall idempotency keys: %w", err)
		}
		for i, leaf := range leaves {
			index := lo + int64(i)
			body, err := l.Body(ctx, leaf)
			if err != nil {
				return err
			}
			k, ok := leafKeys(body)
			if !ok {
				flush() // not an event envelope: the log may hold other leaves
				continue
			}
			if k.Key != "" {
				key := requestKey(k.Source, k.Key)
				if run != nil && key == runKey && run.first+int64(run.n) == index && k.Received == runReceived {
					run.n++
				} else {
					flush()
					run = &claim{done: closed, ok: true, first: index}
					runKey, runReceived, run.n = key, k.Received, 1
				}
				runFP.add(k.Event)
			} else {
				flush()
			}
			if k.EventID != "" {
				key := eventKey(k.Source, k.EventID)
				if _, dup := d.claims[key]; !dup {
					var f fingerprinter
					f.add(k.Event)
					c := &claim{done: closed, ok: true, first: index, n: 1, fp: f.sum()}
					d.claims[key] = c
					d.commitLocked(key, c)
				}
			}
		}
	}
	flush()
	return nil
}

// leafKeys reads what recall needs of a leaf: quickly for what Encode
// writes, by decoding otherwise.
func leafKeys(leaf []byte) (event.LeafKeys, bool) {
	if k, ok := event.ReadLeafKeys(leaf); ok {
		return k, true
	}
	env, err := event.DecodeLeaf(leaf)
	if err != nil {
		return event.LeafKeys{}, false
	}
	canonical, err := env.Event.AppendJSON(nil)
	if err != nil {
		return event.LeafKeys{}, false
	}
	return event.LeafKeys{
		Received: env.Received.UTC().Format(time.RFC3339Nano),
		Source:   env.Source, Key: env.Key, EventID: env.Event.ID, Event: canonical,
	}, true
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// conflictError is a 409.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// plan is what one append request must do after consulting the memory.
type plan struct {
	d *dedup
	// replay is set when the whole request was seen before: its entries.
	replay *claim
	// reqClaim is this request's new Idempotency-Key claim, if any.
	reqClaim    *claim
	reqClaimKey string
	// reuse[i] >= 0 is the known index of event i; -1 means append it.
	reuse []int64
	// fresh lists the events to append, in order; idClaims their new id claims.
	fresh    []int
	idClaims map[int]*claim
	idKeys   map[int]string
}

// begin consults and claims the keys of a request by source with the given
// Idempotency-Key (possibly empty) and events. It returns a plan, or a
// *conflictError.
func (d *dedup) begin(source, key string, evs []event.Event) (*plan, error) {
	p := &plan{d: d, reuse: make([]int64, len(evs))}
	d.mu.Lock()
	defer d.mu.Unlock()
	if key != "" {
		k := requestKey(source, key)
		fp := fingerprint(evs...)
		if c, ok := d.claims[k]; ok {
			select {
			case <-c.done:
			default:
				return nil, &conflictError{fmt.Sprintf("a request with Idempotency-Key %q is still in progress; retry it later", key)}
			}
			if c.fp != fp || c.n != len(evs) {
				return nil, &conflictError{fmt.Sprintf("Idempotency-Key %q was used for a different request (entries %d to %d)", key, c.first, c.first+int64(c.n)-1)}
			}
			p.replay = c
			return p, nil
		}
		p.reqClaim = &claim{done: make(chan struct{}), n: len(evs), fp: fp}
		p.reqClaimKey = k
	}
	var ids map[string]int // ids claimed by this request, to find repeats within it
	for i, ev := range evs {
		p.reuse[i] = -1
		if ev.ID == "" {
			p.fresh = append(p.fresh, i)
			continue
		}
		k := eventKey(source, ev.ID)
		fp := fingerprint(ev)
		if j, ok := ids[k]; ok { // the same id twice in one request
			if fingerprint(evs[j]) != fp {
				return nil, &conflictError{fmt.Sprintf("[%d] id %q: used by event [%d] of this request for a different event", i, ev.ID, j)}
			}
			p.reuse[i] = -2 - int64(j) // resolved to j's index in finish
			continue
		}
		if c, ok := d.claims[k]; ok {
			select {
			case <-c.done:
			default:
				return nil, &conflictError{fmt.Sprintf("[%d] id %q: an event with this id is still being appended; retry later", i, ev.ID)}
			}
			if c.fp != fp {
				return nil, &conflictError{fmt.Sprintf("[%d] id %q: already used for a different event (entry %d)", i, ev.ID, c.first)}
			}
			p.reuse[i] = c.first
			continue
		}
		if ids == nil {
			ids = make(map[string]int)
			p.idClaims = make(map[int]*claim)
			p.idKeys = make(map[int]string)
		}
		ids[k] = i
		p.fresh = append(p.fresh, i)
		p.idClaims[i] = &claim{done: make(chan struct{}), n: 1, fp: fp}
		p.idKeys[i] = k
	}
	// Claim only now that no conflict can stop the request.
	if p.reqClaim != nil {
		d.claims[p.reqClaimKey] = p.reqClaim
	}
	for i, c := range p.idClaims {
		d.claims[p.idKeys[i]] = c
	}
	return p, nil
}

// finish records the outcome of appending p.fresh at first (err == nil), or
// releases the claims (err != nil), and returns every event's index.
func (p *plan) finish(first int64, err error) []int64 {
	d := p.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if p.reqClaim != nil {
			delete(d.claims, p.reqClaimKey)
			close(p.reqClaim.done)
		}
		for i, c := range p.idClaims {
			delete(d.claims, p.idKeys[i])
			close(c.done)
		}
		return nil
	}
	for n, i := range p.fresh {
		p.reuse[i] = first + int64(n)
		if c := p.idClaims[i]; c != nil {
			c.first, c.ok = p.reuse[i], true
			close(c.done)
			d.commitLocked(p.idKeys[i], c)
		}
	}
	for i, idx := range p.reuse {
		if idx <= -2 {
			p.reuse[i] = p.reuse[-2-idx]
		}
	}
	if p.reqClaim != nil {
		// A request's entries are contiguous only when all were fresh; a
		// request that reused ids is remembered by its ids alone.
		if len(p.fresh) == len(p.reuse) {
			p.reqClaim.first, p.reqClaim.ok = first, true
			close(p.reqClaim.done)
			d.commitLocked(p.reqClaimKey, p.reqClaim)
		} else {
			delete(d.claims, p.reqClaimKey)
			close(p.reqClaim.done)
		}
	}
	return p.reuse
}
