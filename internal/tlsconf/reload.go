package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, a Reloader looks at its files
// during handshakes unless told otherwise.
const DefaultCheckInterval = 10 * time.Second

// ReloaderConfig configures NewReloader.
type ReloaderConfig struct {
	// CertFile and KeyFile are the PEM certificate chain (leaf first) and
	// private key. Required.
	CertFile, KeyFile string
	// CheckInterval is how often, at most, a handshake checks whether the
	// files' modification time or size changed (a stat of each; the files
	// are read only when they did). Zero means DefaultCheckInterval;
	// negative means never: only Reload reads the files.
	CheckInterval time.Duration
	// Logger receives each reload and each failure. Default: discard.
	Logger *slog.Logger
	// OnError, if not nil, is also called with each failed reload, from
	// the goroutine that tried it (a handshake's or Reload's caller).
	OnError func(error)
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Reloader is a CertSource that serves a certificate and key read from
// files, and re-reads them when they change, without a restart. A pair
// that fails to load is reported and the old pair kept, so a half-written
// or mismatched replacement never takes the server down. Connections
// already established are never affected: a certificate is only used
// during a handshake.
//
// An operator replacing both files should replace the key first, or
// rename both into place: between the two, a check may see the new
// certificate with the old key, report the mismatch, and keep the old pair
// until the next change.
type Reloader struct {
	cfg      ReloaderConfig
	log      *slog.Logger
	cert     atomic.Pointer[tls.Certificate]
	nextScan atomic.Int64 // unix nanoseconds; handshakes before it don't check

	mu     sync.Mutex // held while checking or loading
	loaded stamp      // the files as last loaded
	failed stamp      // the files as last failed to load, reported once
}

// stamp identifies a version of the two files by modification time and size.
type stamp struct {
	certMod, keyMod   int64 // unix nanoseconds
	certSize, keySize int64
}

// NewReloader loads cfg.CertFile and cfg.KeyFile; it fails if they do not
// make a valid pair.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tlsconf: reloader needs a certificate file and a key file")
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reloader{cfg: cfg, log: cfg.Logger}
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

// Certificate returns the pair being served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// GetCertificate returns the pair being served, first checking the files if
// CheckInterval has passed since the last check. It never fails because of
// a bad replacement: that is reported, and the old pair returned.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if r.cfg.CheckInterval > 0 && r.cfg.Now().UnixNano() >= r.nextScan.Load() && r.mu.TryLock() {
		// Handshakes that find another one checking don't wait for it.
		r.check()
		r.mu.Unlock()
	}
	return r.cert.Load(), nil
}

// Reload reads the files now, whether or not they seem to have changed (for
// SIGHUP). On failure it reports and returns the error, and the old pair
// stays in service.
func (r *Reloader) Reload() error {
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

// check reloads the files if they changed since they were loaded, and they
// are not the version that already failed. r.mu is held.
func (r *Reloader) check() {
	defer r.scheduleScan()
	st, err := r.stat()
	if err != nil {
		// Probably mid-replacement; say so once per state of the files.
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

func (r *Reloader) scheduleScan() {
	if r.cfg.CheckInterval > 0 {
		r.nextScan.Store(r.cfg.Now().Add(r.cfg.CheckInterval).UnixNano())
	}
}

// stat returns the files' stamp; on error, a stamp of what could be seen.
func (r *Reloader) stat() (stamp, error) {
	var st stamp
	ci, err := os.Stat(r.cfg.CertFile)
	if err != nil {
		return st, fmt.Errorf("couldn't reload certificate: %w", err)
	}
	st.certMod, st.certSize = ci.ModTime().UnixNano(), ci.Size()
	ki, err := os.Stat(r.cfg.KeyFile)
	if err != nil {
		return st, fmt.Errorf("couldn't reload certificate: %w", err)
	}
	st.keyMod, st.keySize = ki.ModTime().UnixNano(), ki.Size()
	return st, nil
}

// load reads and installs the pair; st is the stamp seen before reading, so
// that a change during the read is seen by the next check. r.mu is held.
func (r *Reloader) load(st stamp) error {
	pair, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("couldn't load certificate %s and key %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	old := r.cert.Swap(&pair)
	r.loaded, r.failed = st, stamp{}
	if old != nil {
		r.log.Info("reloaded certificate", "file", r.cfg.CertFile,
			"subject", pair.Leaf.Subject.String(), "expires", pair.Leaf.NotAfter,
			"fingerprint", Fingerprint(pair.Leaf))
	}
	return nil
}

func (r *Reloader) report(err error) {
	r.log.Error("keeping the current certificate", "err", err)
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
	}
}
