package verify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/c2sp"
)

// The checkpoint history (state/checkpoints) is a file of records, one per
// signed checkpoint: a 4-byte big-endian body length, the CRC-32C of the
// body, then the body, the signed note.
const (
	recordHeader = 8
	// maxRecord bounds a record: a signed note is a few hundred bytes.
	maxRecord = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkpoint is one verified record of the history.
type checkpoint struct {
	c2sp.Checkpoint
	note   []byte
	record int // 1-based position in the history
	total  int // records in the history
	path   string
}

// where names the checkpoint for a Failure.
func (c *checkpoint) where() string {
	return fmt.Sprintf("checkpoint of size %d (record %d of %d in %s)", c.Size, c.record, c.total, c.path)
}

// loadKey sets v.key from Options.Key or the directory's verifier key file.
func (v *verifier) loadKey() error {
	dirKeyPath := v.l.path(verifierKeyFile)
	dirKey, err := os.ReadFile(dirKeyPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if v.opts.Key != "" {
		text := strings.TrimSpace(v.opts.Key)
		if v.key, err = note.NewVerifier(text); err != nil {
			return fmt.Errorf("bad verifier key %q: %w", text, err)
		}
		v.rep.Key = text
		// A replaced key file misleads whoever trusts the directory next.
		if dirKey != nil && strings.TrimSpace(string(dirKey)) != text {
			return &Failure{Where: dirKeyPath, What: fmt.Sprintf("holds the verifier key %q, not the pinned key %q: it was replaced", strings.TrimSpace(string(dirKey)), text)}
		}
		return nil
	}
	if dirKey == nil {
		return &Failure{Where: dirKeyPath, What: "missing: pass the log's verifier key (from \"trail key\") explicitly"}
	}
	text := strings.TrimSpace(string(dirKey))
	if v.key, err = note.NewVerifier(text); err != nil {
		return &Failure{Where: dirKeyPath, What: fmt.Sprintf("not a verifier key: %v", err)}
	}
	v.rep.Key, v.rep.KeyFromDir = text, true
	return nil
}

// keyWhere names the key for a Failure.
func (v *verifier) keyWhere() string {
	if v.rep.KeyFromDir {
		return v.l.path(verifierKeyFile)
	}
	return "the pinned verifier key"
}

// checkHistory reads state/checkpoints and checks each record's checksum,
// signature and origin, and that the tree sizes never decrease.
func (v *verifier) checkHistory() error {
	path := v.l.path(historyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Failure{Where: path, What: "missing: the history of signed checkpoints was deleted"}
	} else if err != nil {
		return err
	}
	v.rep.Bytes += int64(len(b))
	var notes [][]byte
	for off := 0; off < len(b); {
		rec := len(notes) + 1
		where := fmt.Sprintf("%s record %d (at byte %d)", path, rec, off)
		if len(b)-off < recordHeader {
			return &Failure{Where: where, What: fmt.Sprintf("the file ends %d bytes into the record's %d-byte header: truncated, or torn by a crash (start trail to recover)", len(b)-off, recordHeader)}
		}
		l := int(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if l == 0 || l > maxRecord {
			return &Failure{Where: where, What: fmt.Sprintf("implausible record length %d: damaged", l)}
		}
		if len(b)-off-recordHeader < l {
			return &Failure{Where: where, What: fmt.Sprintf("the file ends %d bytes into a %d-byte record: truncated, or torn by a crash (start trail to recover)", len(b)-off-recordHeader, l)}
		}
		body := b[off+recordHeader : off+recordHeader+l]
		if got := crc32.Checksum(body, castagnoli); got != sum {
			return &Failure{Where: where, What: fmt.Sprintf("CRC-32C %08x, the record says %08x: the checkpoint was altered or damaged", got, sum)}
		}
		notes = append(notes, body)
		off += recordHeader + l
	}
	if len(notes) == 0 {
		return &Failure{Where: path, What: "holds no signed checkpoint (start trail to sign one)"}
	}
	if err := v.checkKeyMatches(notes); err != nil {
		return err
	}
	for i, n := range notes {
		cp := &checkpoint{note: n, record: i + 1, total: len(notes), path: path}
		c, err := v.open(n)
		if err != nil {
			return &Failure{Where: fmt.Sprintf("%s record %d of %d", path, i+1, len(notes)), What: err.Error()}
		}
		cp.Checkpoint = c
		if i > 0 {
			prev := v.cps[i-1]
			if cp.Size < prev.Size {
				return &Failure{Where: cp.where(), What: fmt.Sprintf("the tree shrank from size %d (record %d): the history was rewritten", prev.Size, prev.record)}
			}
			if cp.Size == prev.Size && cp.Hash != prev.Hash {
				return &Failure{
					Where:    cp.where(),
					What:     fmt.Sprintf("SECURITY ERROR: record %d has the same size and a different root hash (%s, not %s): the signing key signed two different trees", prev.record, cp.Hash, prev.Hash),
					Evidence: forkEvidence(prev, cp, nil),
				}
			}
		}
		v.cps = append(v.cps, cp)
	}
	v.rep.Checkpoints = int64(len(v.cps))
	return nil
}

// checkKeyMatches blames the key, not a checkpoint, when not one checkpoint
// is signed by it: then the key file was replaced (or every checkpoint was
// re-signed, which the key pinned by an auditor catches).
func (v *verifier) checkKeyMatches(notes [][]byte) error {
	signers := map[string]bool{}
	for _, n := range notes {
		_, err := note.Open(n, note.VerifierList(v.key))
		var ue *note.UnverifiedNoteError
		if !errors.As(err, &ue) {
			return nil
		}
		for _, s := range ue.Note.UnverifiedSigs {
			signers[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] = true
		}
	}
	var names []string
	for s := range signers {
		names = append(names, s)
	}
	return &Failure{
		Where: v.keyWhere(),
		What: fmt.Sprintf("no checkpoint is signed by key %s+%08x (they are signed by %s): the verifier key was replaced, or every checkpoint was re-signed",
			v.key.Name(), v.key.KeyHash(), strings.Join(names, ", ")),
	}
}

// open verifies a signed checkpoint note and parses it.
func (v *verifier) open(signed []byte) (c2sp.Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v.key))
	if err != nil {
		var ue *note.UnverifiedNoteError
		if errors.As(err, &ue) {
			return c2sp.Checkpoint{}, fmt.Errorf("not signed by the verifier key %s+%08x", v.key.Name(), v.key.KeyHash())
		}
		return c2sp.Checkpoint{}, fmt.Errorf("bad signature: %w", err)
	}
	c, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return c, err
	}
	if c.Origin != v.key.Name() {
		return c, fmt.Errorf("origin %q, but the verifier key is for %q", c.Origin, v.key.Name())
	}
	return c, nil
}

// checkPublished checks that log/checkpoint is the newest checkpoint of the
// history, byte for byte.
func (v *verifier) checkPublished() error {
	path := v.l.path(checkpointFile)
	newest := v.cps[len(v.cps)-1]
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Failure{Where: path, What: fmt.Sprintf("missing (the newest checkpoint is of size %d, record %d of %d in %s)", newest.Size, newest.record, newest.total, newest.path)}
	} else if err != nil {
		return err
	}
	v.rep.Bytes += int64(len(b))
	if bytes.Equal(b, newest.note) {
		return nil
	}
	c, err := v.open(b)
	if err != nil {
		return &Failure{Where: path, What: err.Error()}
	}
	for _, cp := range v.cps {
		if bytes.Equal(cp.note, b) {
			return &Failure{Where: path, What: fmt.Sprintf("holds the checkpoint of size %d (record %d), but the newest is of size %d (record %d): an older checkpoint was put back, or trail crashed while publishing (start trail to recover)",
				c.Size, cp.record, newest.Size, newest.record)}
		}
	}
	return &Failure{Where: path, What: fmt.Sprintf("holds a checkpoint of size %d that is not in %s, whose newest is of size %d (record %d): the history was truncated or edited",
		c.Size, newest.path, newest.Size, newest.record)}
}

// forkEvidence formats two contradicting checkpoints and, when there is one,
// the consistency proof between them, for a SECURITY ERROR.
func forkEvidence(older, newer *checkpoint, proof []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "older checkpoint (record %d):\n%s\nnewer checkpoint (record %d):\n%s", older.record, older.note, newer.record, newer.note)
	if proof != nil {
		fmt.Fprintf(&b, "\nconsistency proof from %d to %d, computed from the stored tiles:\n%s\n", older.Size, newer.Size, strings.Join(proof, "\n"))
	}
	return b.String()
}
