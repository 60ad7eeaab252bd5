package tlsconf

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailaudit/trail/internal/durable"
)

// RevokedFile is the revocation file of the PKI directory: the serial
// numbers of client certificates the server must refuse.
const RevokedFile = "revoked.json"

// DefaultRevocationCheckInterval is how often, at most, a RevocationList
// looks at its file during handshakes unless told otherwise.
const DefaultRevocationCheckInterval = time.Second

// ErrRevoked is wrapped by the error VerifyConnection returns for a revoked
// client certificate; the handshake fails, so the client never gets as far
// as an HTTP request.
var ErrRevoked = errors.New("client certificate revoked")

// CheckClientName returns the error IssueClient would return for name, so
// that a command can refuse a bad name before it touches the PKI.
func CheckClientName(name string) error { return checkClientName(name) }

// Revocation is one entry of the revocation file.
type Revocation struct {
	// Serial is the certificate's serial number in lower-case hex, as
	// SerialString writes it.
	Serial string `json:"serial"`
	// Name is the certificate's CommonName, for the operator.
	Name string `json:"name,omitempty"`
	// Time is when it was revoked.
	Time time.Time `json:"time"`
}

// revocationFile is the revocation file's JSON. An object rather than a bare
// list, so that fields can be added.
type revocationFile struct {
	Revoked []Revocation `json:"revoked"`
}

// SerialString returns serial in lower-case hex, the form of
// Revocation.Serial.
func SerialString(serial *big.Int) string { return serial.Text(16) }

// ReadRevocations reads the revocation file at path. A missing file is an
// empty list; a file with unknown fields or a bad serial number is an error.
func ReadRevocations(path string) ([]Revocation, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read revocation file: %w", err)
	}
	rs, _, err := parseRevocations(b)
	if err != nil {
		return nil, fmt.Errorf("bad revocation file %s: %w", path, err)
	}
	return rs, nil
}

// WriteRevocations replaces the revocation file at path with rs, durably
// and atomically: a running server sees the old list or the new one.
func WriteRevocations(path string, rs []Revocation) error {
	if rs == nil {
		rs = []Revocation{}
	}
	b, err := json.MarshalIndent(revocationFile{Revoked: rs}, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(path, append(b, '\n'), 0o644)
}

// parseRevocations decodes a revocation file strictly and returns its
// entries and the set of canonical serials.
func parseRevocations(b []byte) ([]Revocation, map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f revocationFile
	if err := dec.Decode(&f); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, errors.New("data after the JSON object")
	}
	serials := make(map[string]bool, len(f.Revoked))
	for i, r := range f.Revoked {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok || n.Sign() < 0 {
			return nil, nil, fmt.Errorf("revoked[%d]: bad serial %q: want hex", i, r.Serial)
		}
		serials[SerialString(n)] = true
	}
	return f.Revoked, serials, nil
}

// RevocationConfig configures NewRevocationList.
type RevocationConfig struct {
	// File is the revocation file, normally <PKI dir>/revoked.json.
	// Required; it need not exist.
	File string
	// CheckInterval is how often, at most, a handshake checks whether the
	// file's modification time or size changed (a stat; the file is read
	// only when it did). Zero means DefaultRevocationCheckInterval;
	// negative means never: only Reload reads the file.
	CheckInterval time.Duration
	// Logger receives each reload and each failure. Default: discard.
	Logger *slog.Logger
	// OnError, if not nil, is also called with each failed reload, from
	// the goroutine that tried it (a handshake's or Reload's caller).
	OnError func(error)
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// RevocationList is the set of revoked client certificate serial numbers,
// read from a file and re-read when the file changes, so that a revocation
// takes effect without a restart. A file that fails to load is reported
// and the previous list kept: a corrupt file never un-revokes anything. A
// missing file is an empty list.
//
// Revocation is checked on every handshake, resumed ones included, so a
// revoked client cannot come back with a session ticket. Connections
// established before the revocation are not cut.
type RevocationList struct {
	cfg      RevocationConfig
	log      *slog.Logger
	serials  atomic.Pointer[map[string]bool]
	nextScan atomic.Int64 // unix nanoseconds; handshakes before it don't check

	mu     sync.Mutex // held while checking or loading
	loaded fileStamp  // the file as last loaded
	failed fileStamp  // the file as last failed to load, reported once
}

// fileStamp identifies a version of a file by modification time and size.
type fileStamp struct {
	exists bool
	mod    int64 // unix nanoseconds
	size   int64
}

// NewRevocationList loads cfg.File; it fails if the file exists and cannot
// be read or parsed, so that a server never starts without its list.
func NewRevocationList(cfg RevocationConfig) (*RevocationList, error) {
	if cfg.File == "" {
		return nil, errors.New("tlsconf: revocation list needs a file")
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultRevocationCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &RevocationList{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err == nil {
		err = r.load(st)
	}
	if err != nil {
		return nil, err
	}
	r.scheduleScan()
	return r, nil
}

// Len returns how many serial numbers are revoked.
func (r *RevocationList) Len() int { return len(*r.serials.Load()) }

// Revoked reports whether serial is revoked, first checking the file if
// CheckInterval has passed since the last check.
func (r *RevocationList) Revoked(serial *big.Int) bool {
	if r.cfg.CheckInterval > 0 && r.cfg.Now().UnixNano() >= r.nextScan.Load() && r.mu.TryLock() {
		// Handshakes that find another one checking don't wait for it.
		r.check()
		r.mu.Unlock()
	}
	return (*r.serials.Load())[SerialString(serial)]
}

// VerifyConnection fails a handshake whose verified client certificate is
// revoked, with an error that wraps ErrRevoked. It has the shape of
// tls.Config.VerifyConnection; connections without a verified client
// certificate pass, for the server to authenticate some other way.
func (r *RevocationList) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := cs.VerifiedChains[0][0]
	if r.Revoked(leaf.SerialNumber) {
		return fmt.Errorf("%w: %q, serial %s", ErrRevoked, leaf.Subject.CommonName, SerialString(leaf.SerialNumber))
	}
	return nil
}

// Reload reads the file now, whether or not it seems to have changed. On
// failure it reports and returns the error, and the old list stays in
// force.
func (r *RevocationList) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.scheduleScan()
	st, err := r.stat()
	if err == nil {
		err = r.load(st)
	}
	if err != nil {
		r.failed = st
		r.report(err)
	}
	return err
}

// check reloads the file if it changed since it was loaded, and it is not
// the version that already failed. r.mu is held.
func (r *RevocationList) check() {
	defer r.scheduleScan()
	st, err := r.stat()
	if err != nil {
		if st != r.failed {
			r.failed = st
			r.report(err)
		}
		return
	}
	if st == r.loaded || st == r.failed {
		return
	}
	if err := r.load(st); err != nil {
		r.failed = st
		r.report(err)
	}
}

func (r *RevocationList) scheduleScan() {
	if r.cfg.CheckInterval > 0 {
		r.nextScan.Store(r.cfg.Now().Add(r.cfg.CheckInterval).UnixNano())
	}
}

// stat returns the file's stamp: the zero stamp if it does not exist.
func (r *RevocationList) stat() (fileStamp, error) {
	fi, err := os.Stat(r.cfg.File)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, fmt.Errorf("couldn't check revocation file: %w", err)
	}
	return fileStamp{exists: true, mod: fi.ModTime().UnixNano(), size: fi.Size()}, nil
}

// load reads and installs the list; st is the stamp seen before reading, so
// that a change during the read is seen by the next check. r.mu is held.
func (r *RevocationList) load(st fileStamp) error {
	serials := map[string]bool{}
	if st.exists {
		b, err := os.ReadFile(r.cfg.File)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("couldn't read revocation file: %w", err)
		}
		if err == nil {
			if _, serials, err = parseRevocations(b); err != nil {
				return fmt.Errorf("bad revocation file %s: %w", r.cfg.File, err)
			}
		}
	}
	old := r.serials.Swap(&serials)
	r.loaded, r.failed = st, fileStamp{}
	if old != nil {
		r.log.Info("reloaded revocation list", "file", r.cfg.File, "revoked", len(serials))
	}
	return nil
}

func (r *RevocationList) report(err error) {
	r.log.Error("keeping the current revocation list", "err", err)
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
	}
}
