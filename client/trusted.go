package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/durable"
)

// Sentinel errors wrapped by a *SecurityError, for callers that branch on
// the kind.
var (
	// ErrRollback: the server's newest checkpoint is of a smaller tree than
	// one verified before. The log lost entries it had signed, or the
	// server runs on an older copy of its data.
	ErrRollback = errors.New("the log was rolled back")
	// ErrFork: the server signed a tree that does not extend one verified
	// before (same size and another root, or no valid consistency proof).
	// The log's history was rewritten, or different clients are shown
	// different logs.
	ErrFork = errors.New("the log forked")
)

// SecurityError reports two checkpoints, both signed by the log's key, that
// no append-only log can have signed: a rollback or a fork. Both notes are
// the evidence; anyone with the verifier key can check them. Never ignore
// it, and do not discard the trusted state to make it go away: keep the
// evidence and ask the log's operator.
type SecurityError struct {
	// Err is ErrRollback or ErrFork.
	Err error
	// Trusted is the checkpoint verified before, Served the one the server
	// sends now.
	Trusted, Served Checkpoint
	// Proof is the consistency proof the server sent from Trusted to
	// Served, which failed to check; nil if none was asked for.
	Proof tlog.TreeProof
	// Reason says what failed, such as the tlog error for a bad proof.
	Reason string
}

func (e *SecurityError) Error() string {
	switch {
	case errors.Is(e.Err, ErrRollback):
		return fmt.Sprintf("SECURITY ERROR: log %s was rolled back: its newest checkpoint is of size %d, but one of size %d was verified before",
			e.Trusted.Origin, e.Served.Size, e.Trusted.Size)
	case e.Trusted.Size == e.Served.Size:
		return fmt.Sprintf("SECURITY ERROR: log %s forked: two checkpoints of size %d with different root hashes, %s verified before and %s now",
			e.Trusted.Origin, e.Served.Size, e.Trusted.Hash, e.Served.Hash)
	default:
		return fmt.Sprintf("SECURITY ERROR: log %s forked: its checkpoint of size %d does not extend the one of size %d verified before: %s",
			e.Trusted.Origin, e.Served.Size, e.Trusted.Size, e.Reason)
	}
}

// Unwrap returns Err.
func (e *SecurityError) Unwrap() error { return e.Err }

// Evidence returns both signed checkpoints and the failed proof, if any, as
// text to print or keep.
func (e *SecurityError) Evidence() string {
	var b strings.Builder
	fmt.Fprintf(&b, "trusted checkpoint (verified before):\n%s\nserver's checkpoint (served now):\n%s", e.Trusted.Note, e.Served.Note)
	if e.Proof != nil {
		fmt.Fprintf(&b, "\nconsistency proof from %d to %d, as served:\n", e.Trusted.Size, e.Served.Size)
		for _, h := range e.Proof {
			fmt.Fprintf(&b, "%s\n", h)
		}
	}
	return b.String()
}

// CheckConsistency checks that newer, a verified checkpoint, extends older,
// one verified before: that the log only grew between them. It fetches a
// consistency proof when newer is larger. Two checkpoints that cannot both
// come from one append-only log yield a *SecurityError; failing to get a
// proof is any other error.
func (c *Client) CheckConsistency(ctx context.Context, older, newer Checkpoint) error {
	serr := &SecurityError{Err: ErrFork, Trusted: older, Served: newer}
	switch {
	case newer.Origin != older.Origin:
		return fmt.Errorf("checkpoints of two logs, %q and %q, cannot be compared", older.Origin, newer.Origin)
	case newer.Size < older.Size:
		serr.Err = ErrRollback
		return serr
	case newer.Size == older.Size:
		if newer.Hash != older.Hash {
			serr.Reason = "different root hashes"
			return serr
		}
		return nil
	case older.Size == 0:
		return nil // every tree extends the empty one
	}
	proof, err := c.ConsistencyProof(ctx, older.Size, newer.Size)
	if err != nil {
		return fmt.Errorf("couldn't get a proof that the log of size %d extends the one of size %d: %w", newer.Size, older.Size, err)
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		serr.Proof, serr.Reason = proof, err.Error()
		return serr
	}
	return nil
}

// TrustedState is the last verified checkpoint of one log, kept in a file so
// that every later checkpoint can be checked to extend it. The file holds
// the signed note as the server sent it, and is replaced atomically. The
// default location is DefaultTrustedStateDir()/TrustedStateFile(origin).
//
// Several processes updating one file do not corrupt it, but the last to
// write wins: the file may go back to an older checkpoint that both
// verified, which is safe.
type TrustedState struct {
	path     string
	verifier note.Verifier
}

// NewTrustedState returns the trusted state in the file path, of the log
// whose checkpoints verifierKey verifies. If path is "", the file is
// TrustedStateFile(origin) in DefaultTrustedStateDir(). Nothing is read or
// created until Load or Save.
func NewTrustedState(path, verifierKey string) (*TrustedState, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("bad verifier key: %w", err)
	}
	if path == "" {
		dir, err := DefaultTrustedStateDir()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, TrustedStateFile(v.Name()))
	}
	return &TrustedState{path: path, verifier: v}, nil
}

// DefaultTrustedStateDir returns the directory of the trusted state files of
// the current user: "trail/trusted" in os.UserConfigDir(), such as
// ~/.config/trail/trusted on Linux.
func DefaultTrustedStateDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("couldn't find where to keep the trusted state: %w", err)
	}
	return filepath.Join(dir, "trail", "trusted"), nil
}

// TrustedStateFile returns the name of the file that holds the trusted
// state of the log origin: the origin with every byte other than letters,
// digits, '-' and '_' (and '.' but not first) written as %XX, so that each
// origin has its own file on every operating system.
func TrustedStateFile(origin string) string {
	var b strings.Builder
	for i := 0; i < len(origin); i++ {
		ch := origin[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' && i > 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// Path returns the file that holds the state.
func (s *TrustedState) Path() string { return s.path }

// Origin returns the origin of the log.
func (s *TrustedState) Origin() string { return s.verifier.Name() }

// Load returns the trusted checkpoint, its signature checked again, or nil
// if there is none yet.
func (s *TrustedState) Load() (*Checkpoint, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read the trusted state: %w", err)
	}
	cp, err := openCheckpoint(b, s.verifier)
	if err != nil {
		return nil, fmt.Errorf("trusted state %s holds no checkpoint of %s signed by its key (was the key replaced, or the file edited?): %w", s.path, s.verifier.Name(), err)
	}
	return &cp, nil
}

// Save makes cp the trusted checkpoint, durably. It does not check that cp
// extends the one trusted before: UpdateTrusted does.
func (s *TrustedState) Save(cp Checkpoint) error {
	if _, err := openCheckpoint(cp.Note, s.verifier); err != nil {
		return fmt.Errorf("won't trust it: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("couldn't save the trusted state: %w", err)
	}
	if err := durable.WriteFile(s.path, cp.Note, 0o644); err != nil {
		return fmt.Errorf("couldn't save the trusted state: %w", err)
	}
	return nil
}

// TrustUpdate is the outcome of UpdateTrusted.
type TrustUpdate struct {
	// Previous is the checkpoint trusted before, or nil on first use: then
	// Current is trusted on first sight, and the client has only the
	// server's word that it is the log everyone else sees.
	Previous *Checkpoint
	// Current is the server's newest checkpoint, verified and now trusted.
	Current Checkpoint
}

// UpdateTrusted fetches the server's newest checkpoint, checks its signature
// and that it extends the checkpoint trusted in s (see CheckConsistency),
// and then trusts it. With no checkpoint trusted yet, it trusts the server's
// on first sight. On a rollback or fork it returns a *SecurityError and
// leaves s as it was.
func (c *Client) UpdateTrusted(ctx context.Context, s *TrustedState) (*TrustUpdate, error) {
	if c.verifier == nil {
		return nil, ErrNoVerifierKey
	}
	if s.verifier.Name() != c.verifier.Name() || s.verifier.KeyHash() != c.verifier.KeyHash() {
		return nil, fmt.Errorf("the trusted state is of log %s, the client's key of %s", s.verifier.Name(), c.verifier.Name())
	}
	old, err := s.Load()
	if err != nil {
		return nil, err
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if old != nil {
		if err := c.CheckConsistency(ctx, *old, cp); err != nil {
			return nil, err
		}
		if cp.Size == old.Size {
			return &TrustUpdate{Previous: old, Current: cp}, nil // nothing new to save
		}
	}
	if err := s.Save(cp); err != nil {
		return nil, err
	}
	return &TrustUpdate{Previous: old, Current: cp}, nil
}
