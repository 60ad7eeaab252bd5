package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
)

// TimeEvidence is what the RFC 3161 time-stamps of a data directory say.
type TimeEvidence struct {
	// Stamped is how many checkpoints carry a verified time-stamp, of
	// Report.Checkpoints.
	Stamped int64
	// First and Last are the earliest and latest time the TSA vouched for.
	First, Last time.Time
	// LastSize is the tree size of the newest checkpoint stamped, and
	// LastSizeTime the time of its stamp: every entry below LastSize
	// existed by then.
	LastSize     int64
	LastSizeTime time.Time
	// ChainChecked says the TSA's certificates were checked against
	// Options.TSACAFile. Without it, each token's signature and content
	// are checked but anyone could have made the TSA certificate.
	ChainChecked bool
}

// checkTimestamps verifies each time-stamp in tsa.Dir against the checkpoint
// of its size in the history: its message imprint must be SHA-256 of that
// signed note, its signature and TSA certificate valid, and with
// Options.TSACAFile its chain trusted.
func (v *verifier) checkTimestamps() error {
	var roots *x509.CertPool
	if v.opts.TSACAFile != "" {
		b, err := os.ReadFile(v.opts.TSACAFile)
		if err != nil {
			return fmt.Errorf("couldn't read the TSA CA file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return fmt.Errorf("TSA CA file %s holds no PEM certificate", v.opts.TSACAFile)
		}
		v.rep.Time.ChainChecked = true
	}
	dir := v.l.path(tsa.Dir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	bySize := make(map[int64]*checkpoint, len(v.cps))
	for _, cp := range v.cps {
		bySize[cp.Size] = cp
	}
	// In tree-size order, so that the first failure is the oldest.
	type file struct {
		size int64
		name string
	}
	var files []file
	for _, de := range des {
		size, ok := tsa.ParseTokenFile(de.Name())
		if !ok || !de.Type().IsRegular() {
			if !strings.HasPrefix(de.Name(), ".tmp-") {
				v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("unexpected file %s", filepath.Join(dir, de.Name())))
			}
			continue
		}
		files = append(files, file{size, de.Name()})
	}
	slices.SortFunc(files, func(a, b file) int { return int(min(max(a.size-b.size, -1), 1)) })
	ev := &v.rep.Time
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		der, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		v.rep.Bytes += int64(len(der))
		cp := bySize[f.size]
		if cp == nil {
			return &Failure{Where: path, What: fmt.Sprintf("a time-stamp for a checkpoint of size %d, which the history %s does not hold: the history was rolled back or edited, or the file was put there", f.size, v.l.path(historyFile))}
		}
		tok, err := tsa.ParseResponse(der)
		if err != nil {
			return &Failure{Where: path, What: fmt.Sprintf("not a valid time-stamp response (%v): it was altered or damaged", err)}
		}
		err = tok.Verify(cp.note, tsa.VerifyOptions{Roots: roots})
		switch {
		case errors.Is(err, tsa.ErrImprint):
			return &Failure{Where: path, What: fmt.Sprintf("does not stamp the %s: %v: it is the time-stamp of something else", cp.where(), err)}
		case errors.Is(err, tsa.ErrUntrusted):
			return &Failure{Where: path, What: fmt.Sprintf("%v: not signed by a TSA that %s vouches for", err, v.opts.TSACAFile)}
		case err != nil:
			return &Failure{Where: path, What: fmt.Sprintf("%v (for the %s)", err, cp.where())}
		}
		ev.Stamped++
		if ev.First.IsZero() || tok.GenTime.Before(ev.First) {
			ev.First = tok.GenTime
		}
		if tok.GenTime.After(ev.Last) {
			ev.Last = tok.GenTime
		}
		ev.LastSize, ev.LastSizeTime = f.size, tok.GenTime // files are in size order
	}
	return nil
}
