package verify_test

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/verify"
)

// File edits, as an attacker with write access to the directory makes them.

func path(dir, rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }

func flip(t *testing.T, file string, off int64) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x01
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// resize truncates a file by -delta bytes, or extends it by delta bytes.
func resize(t *testing.T, file string, delta int64) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, fi.Size()+delta); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, file string) {
	t.Helper()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
}

// entryOffset returns where entry i of a bundle file starts (its length
// prefix) and its length.
func entryOffset(t *testing.T, file string, i int) (int64, int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, _ := c2sp.ParseBundle(b)
	off := 0
	for _, e := range entries[:i] {
		off += 2 + len(e)
	}
	return int64(off), len(entries[i])
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func readHistory(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path(dir, "state/checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	for len(b) > 0 {
		l := binary.BigEndian.Uint32(b)
		notes = append(notes, b[8:8+l])
		b = b[8+l:]
	}
	return notes
}

func writeHistory(t *testing.T, dir string, notes [][]byte) {
	t.Helper()
	var b []byte
	for _, n := range notes {
		b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(n, castagnoli))
		b = append(b, n...)
	}
	if err := os.WriteFile(path(dir, "state/checkpoints"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T, origin string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func origin(t *testing.T, dir string) string {
	t.Helper()
	k, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k.Verifier.Name()
}

// The small log (smallSpec) has 3,003 entries: bundles 000 to 010 sealed,
// bundle 011 staged with 187 entries; it has six checkpoints, the newest of
// size 3003,
// with partial tiles tile/entries/011.p/187, tile/0/011.p/187 and
// tile/1/000.p/11. The big log (bigSpec) has 66,001: bundles 000 to 256
// sealed, tile/1/000 full, tile/1/001.p/1 and tile/2/000.p/1.

func TestTamper(t *testing.T) {
	const (
		staged  = "state/staging/entries-000000000011"
		hashes  = "state/staging/hashes-000000000011"
		history = "state/checkpoints"
	)
	tests := []struct {
		name  string
		big   bool
		opts  func(t *testing.T, dir string) verify.Options
		edit  func(t *testing.T, dir string)
		where []string // substrings of Failure.Where
		what  []string // substrings of Failure.What
	}{
		{
			name: "entry in a sealed bundle",
			edit: func(t *testing.T, dir string) {
				off, n := entryOffset(t, path(dir, "log/tile/entries/003"), 5)
				flip(t, path(dir, "log/tile/entries/003"), off+2+int64(n)-3)
			},
			where: []string{"entry 773 in ", "log/tile/entries/003"},
			what:  []string{"leaf hash", "hash 5 of ", "log/tile/0/003"},
		},
		{
			name: "entry in the staged bundle",
			edit: func(t *testing.T, dir string) {
				off, _ := entryOffset(t, path(dir, staged), 10)
				flip(t, path(dir, staged), off+2)
			},
			where: []string{"entry 2826 in ", staged},
			what:  []string{"leaf hash", "hash 10 of ", hashes},
		},
		{
			name:  "entry length prefix in a sealed bundle",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/entries/002"), 0) },
			where: []string{"entry 512 in ", "log/tile/entries/002"},
		},
		{
			name:  "level-0 tile",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/0/004"), 7*32+31) },
			where: []string{"entry 1031 in ", "log/tile/entries/004"},
			what:  []string{"hash 7 of ", "log/tile/0/004"},
		},
		{
			name:  "staged hashes",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, hashes), 0) },
			where: []string{"entry 2816 in ", staged},
			what:  []string{"hash 0 of ", hashes},
		},
		{
			name:  "level-1 tile",
			big:   true,
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/1/000"), 3*32) },
			where: []string{"log/tile/1/000"},
			what:  []string{"hash 3 is", "rebuilding it from the entries of", "log/tile/entries/003"},
		},
		{
			name:  "level-2 partial tile",
			big:   true,
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/2/000.p/1"), 5) },
			where: []string{"log/tile/2/000.p/1"},
			what:  []string{"hash 0 is", "log/tile/1/000"},
		},
		{
			name:  "partial bundle",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/entries/011.p/187"), -1) },
			where: []string{"log/tile/entries/011.p/187"},
			what:  []string{"differs from entry 3002 of ", staged},
		},
		{
			name:  "partial level-0 tile",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/0/011.p/187"), 40) },
			where: []string{"log/tile/0/011.p/187"},
			what:  []string{"hash 1 is", "entry 2817's leaf hash is"},
		},
		{
			name:  "partial level-1 tile",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/tile/1/000.p/11"), 10*32) },
			where: []string{"log/tile/1/000.p/11"},
			what:  []string{"hash 10 is", "log/tile/entries/010"},
		},
		{
			name:  "checkpoint",
			edit:  func(t *testing.T, dir string) { flip(t, path(dir, "log/checkpoint"), 10) },
			where: []string{"log/checkpoint"},
			what:  []string{"signature"},
		},
		{
			name: "history record",
			edit: func(t *testing.T, dir string) {
				notes := readHistory(t, dir)
				flip(t, path(dir, history), int64(8+len(notes[0])+8+10))
			},
			where: []string{history, "record 2 "},
			what:  []string{"CRC-32C"},
		},
		{
			name: "history record with its checksum fixed",
			edit: func(t *testing.T, dir string) {
				notes := readHistory(t, dir)
				notes[1][len(notes[1])-5] ^= 1
				writeHistory(t, dir, notes)
			},
			where: []string{history, "record 2 of "},
			what:  []string{"signature"},
		},
		{
			name: "large body",
			edit: func(t *testing.T, dir string) {
				flip(t, largeFile(t, dir), 1000)
			},
			where: []string{"log/large/"},
			what:  []string{"SHA-256", "the body was altered"},
		},
		{
			name:  "large body truncated",
			edit:  func(t *testing.T, dir string) { resize(t, largeFile(t, dir), -1) },
			where: []string{"log/large/"},
			what:  []string{"truncated"},
		},
		{
			name:  "large body deleted",
			edit:  func(t *testing.T, dir string) { remove(t, largeFile(t, dir)) },
			where: []string{"log/large/"},
			what:  []string{"missing"},
		},
		{
			name:  "newest bundle deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, staged)) },
			where: []string{"entries 2816 to 3002"},
			what:  []string{"missing", "covers 3003 entries, but only 2816 are stored", "deleted"},
		},
		{
			name:  "newest entries deleted",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, staged), -30) },
			where: []string{"entries 3002 to 3002"},
			what:  []string{"covers 3003 entries, but only 3002 are stored", staged},
		},
		{
			name:  "newest hashes deleted",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, hashes), -32) },
			where: []string{"entries 3002 to 3002"},
			what:  []string{"covers 3003 entries, but only 3002 are stored"},
		},
		{
			name:  "staged hashes deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, hashes)) },
			where: []string{"entries 2816 to 3002"},
			what:  []string{"covers 3003 entries, but only 2816 are stored", hashes + " is missing"},
		},
		{
			name: "staged entry length altered",
			edit: func(t *testing.T, dir string) {
				off, _ := entryOffset(t, path(dir, staged), 100)
				flip(t, path(dir, staged), off)
			},
			where: []string{"entry 2916 in ", staged},
			what:  []string{"leaf hash", "hash 100 of ", hashes},
		},
		{
			name:  "sealed bundle deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, "log/tile/entries/010")) },
			where: []string{"log/tile/entries/010"},
			what:  []string{"missing, but the later bundle", staged},
		},
		{
			name:  "middle bundle deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, "log/tile/entries/004")) },
			where: []string{"log/tile/entries/004"},
			what:  []string{"missing, but the later bundle", "log/tile/entries/005"},
		},
		{
			name:  "level-0 tile deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, "log/tile/0/004")) },
			where: []string{"log/tile/0/004"},
			what:  []string{"missing"},
		},
		{
			name:  "level-1 tile deleted",
			big:   true,
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, "log/tile/1/000")) },
			where: []string{"log/tile/1/000"},
			what:  []string{"missing"},
		},
		{
			name:  "sealed bundle truncated",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/entries/010"), -1) },
			where: []string{"entry 2815 in ", "log/tile/entries/010"},
			what:  []string{"truncated"},
		},
		{
			name:  "sealed bundle cut at an entry",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/entries/010"), -(2 + 61)) },
			where: []string{"entry 2815 in ", "log/tile/entries/010"},
			what:  []string{"truncated", "after 255 of its 256 entries"},
		},
		{
			name:  "sealed bundle extended",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/entries/010"), 3) },
			where: []string{"log/tile/entries/010"},
			what:  []string{"3 extra bytes"},
		},
		{
			name:  "level-0 tile truncated",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/0/002"), -32) },
			where: []string{"log/tile/0/002"},
			what:  []string{"8160 bytes, want 8192: truncated"},
		},
		{
			name:  "level-0 tile extended",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/0/002"), 32) },
			where: []string{"log/tile/0/002"},
			what:  []string{"extra bytes"},
		},
		{
			name:  "level-1 tile truncated",
			big:   true,
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/1/000"), -1) },
			where: []string{"log/tile/1/000"},
			what:  []string{"truncated"},
		},
		{
			name:  "partial bundle truncated",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/entries/011.p/187"), -1) },
			where: []string{"log/tile/entries/011.p/187"},
			what:  []string{"truncated"},
		},
		{
			name:  "partial level-0 tile truncated",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/0/011.p/187"), -32) },
			where: []string{"log/tile/0/011.p/187"},
			what:  []string{"truncated"},
		},
		{
			name:  "partial level-1 tile extended",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/tile/1/000.p/11"), 1) },
			where: []string{"log/tile/1/000.p/11"},
			what:  []string{"extra bytes"},
		},
		{
			name:  "checkpoint truncated",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, "log/checkpoint"), -20) },
			where: []string{"log/checkpoint"},
		},
		{
			name:  "checkpoint deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, "log/checkpoint")) },
			where: []string{"log/checkpoint"},
			what:  []string{"missing"},
		},
		{
			name:  "history truncated inside a record",
			edit:  func(t *testing.T, dir string) { resize(t, path(dir, history), -10) },
			where: []string{history, "record 6 "},
			what:  []string{"truncated"},
		},
		{
			name:  "history deleted",
			edit:  func(t *testing.T, dir string) { remove(t, path(dir, history)) },
			where: []string{history},
			what:  []string{"missing"},
		},
		{
			name: "older checkpoint put back",
			edit: func(t *testing.T, dir string) {
				notes := readHistory(t, dir)
				if err := os.WriteFile(path(dir, "log/checkpoint"), notes[2], 0o644); err != nil {
					t.Fatal(err)
				}
			},
			where: []string{"log/checkpoint"},
			what:  []string{"older checkpoint was put back", "record 3)", "size 3003 (record 6)"},
		},
		{
			name: "newest history record dropped",
			edit: func(t *testing.T, dir string) {
				notes := readHistory(t, dir)
				writeHistory(t, dir, notes[:len(notes)-1])
			},
			where: []string{"log/checkpoint"},
			what:  []string{"size 3003 that is not in ", "newest is of size", "(record 5)", "truncated"},
		},
		{
			name: "rolled back to an older checkpoint",
			edit: func(t *testing.T, dir string) {
				notes := readHistory(t, dir)
				writeHistory(t, dir, notes[:len(notes)-1])
				if err := os.WriteFile(path(dir, "log/checkpoint"), notes[len(notes)-2], 0o644); err != nil {
					t.Fatal(err)
				}
			},
			where: []string{"to 3002"},
			what:  []string{"entries are not covered by the newest checkpoint", "older checkpoint was put back", "start trail to recover"},
		},
		{
			name: "uncovered entry",
			edit: func(t *testing.T, dir string) {
				appendEntry(t, dir, []byte("sneaked in"))
			},
			where: []string{"entries 3003 to 3003"},
			what:  []string{"1 entry is not covered by the newest checkpoint (size 3003)"},
		},
		{
			name: "torn tail",
			edit: func(t *testing.T, dir string) {
				f, err := os.OpenFile(path(dir, staged), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte{0, 200, 'x'})
				f.Close()
			},
			where: []string{staged},
			what:  []string{"torn tail of 3 bytes", "start trail to recover"},
		},
		{
			name: "torn entry",
			edit: func(t *testing.T, dir string) {
				appendEntry(t, dir, []byte("half written"))
				flip(t, path(dir, staged), -1)
			},
			where: []string{"entry 3003 in ", staged},
			what:  []string{"leaf hash", "beyond the newest checkpoint", "start trail to recover"},
		},
		{
			name: "verifier key replaced",
			edit: func(t *testing.T, dir string) {
				_, vkey := newKey(t, "attacker.example/log")
				if err := os.WriteFile(path(dir, "keys/log.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			where: []string{"keys/log.vkey"},
			what:  []string{"no checkpoint is signed by key attacker.example/log+", "replaced"},
		},
		{
			name: "pinned key differs",
			opts: func(t *testing.T, dir string) verify.Options {
				_, vkey := newKey(t, origin(t, dir))
				if err := os.WriteFile(path(dir, "keys/log.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return verify.Options{Key: vkey}
			},
			where: []string{"the pinned verifier key"},
			what:  []string{"no checkpoint is signed by key"},
		},
		{
			name: "key file differs from the pinned key",
			opts: func(t *testing.T, dir string) verify.Options {
				k, err := ledger.LoadOrCreateKeys(dir)
				if err != nil {
					t.Fatal(err)
				}
				_, vkey := newKey(t, origin(t, dir))
				if err := os.WriteFile(path(dir, "keys/log.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return verify.Options{Key: k.VerifierKey}
			},
			where: []string{"keys/log.vkey"},
			what:  []string{"not the pinned key", "replaced"},
		},
		{
			name: "newest checkpoint re-signed by another key",
			edit: func(t *testing.T, dir string) {
				signer, _ := newKey(t, origin(t, dir))
				notes := readHistory(t, dir)
				text, _, _ := strings.Cut(string(notes[len(notes)-1]), "\n\n")
				signed, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
				if err != nil {
					t.Fatal(err)
				}
				notes[len(notes)-1] = signed
				writeHistory(t, dir, notes)
				os.WriteFile(path(dir, "log/checkpoint"), signed, 0o644)
			},
			where: []string{history, "record 6 of 6"},
			what:  []string{"not signed by the verifier key"},
		},
		{
			name: "fork: two checkpoints of one size",
			edit: func(t *testing.T, dir string) {
				k := signingKey(t, dir)
				notes := readHistory(t, dir)
				last := notes[len(notes)-1]
				text, _, _ := strings.Cut(string(last), "\n\n")
				c, _ := c2sp.ParseCheckpoint([]byte(text + "\n"))
				c.Hash[0] ^= 1
				signed, err := note.Sign(&note.Note{Text: string(c.Format())}, k)
				if err != nil {
					t.Fatal(err)
				}
				notes = append(notes, signed)
				writeHistory(t, dir, notes)
				os.WriteFile(path(dir, "log/checkpoint"), signed, 0o644)
			},
			where: []string{"checkpoint of size 3003 (record 7 of 7"},
			what:  []string{"SECURITY ERROR", "record 6 has the same size and a different root hash"},
		},
		{
			name: "re-signed root over other data",
			edit: func(t *testing.T, dir string) {
				k := signingKey(t, dir)
				notes := readHistory(t, dir)
				text, _, _ := strings.Cut(string(notes[2]), "\n\n")
				c, _ := c2sp.ParseCheckpoint([]byte(text + "\n"))
				c.Hash[0] ^= 1
				signed, err := note.Sign(&note.Note{Text: string(c.Format())}, k)
				if err != nil {
					t.Fatal(err)
				}
				notes[2] = signed
				writeHistory(t, dir, notes)
			},
			where: []string{"(record 3 of 6 in "},
			what:  []string{"root hash", "but the stored entries give"},
		},
		{
			name:  "stray full tile",
			edit:  func(t *testing.T, dir string) { copyFile(t, path(dir, "log/tile/0/003"), path(dir, "log/tile/0/012")) },
			where: []string{"log/tile/0/012"},
			what:  []string{"beyond the 3003 stored entries"},
		},
		{
			name: "stray partial tile",
			edit: func(t *testing.T, dir string) {
				os.MkdirAll(path(dir, "log/tile/0/012.p"), 0o755)
				copyFile(t, path(dir, "log/tile/0/011.p/187"), path(dir, "log/tile/0/012.p/187"))
			},
			where: []string{"log/tile/0/012.p/187"},
			what:  []string{"beyond the 3003 stored entries"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dir string
			if tc.big {
				if testing.Short() {
					t.Skip("needs the big log")
				}
				dir, _ = big(t)
			} else {
				dir, _ = small(t)
			}
			var opts verify.Options
			if tc.opts != nil {
				opts = tc.opts(t, dir)
			}
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			_, err := verify.Dir(t.Context(), dir, opts)
			var f *verify.Failure
			if !errors.As(err, &f) {
				t.Fatalf("Dir = %v, want a *Failure", err)
			}
			for _, s := range tc.where {
				if !strings.Contains(filepath.ToSlash(f.Where), s) {
					t.Errorf("Where = %q, want it to contain %q", f.Where, s)
				}
			}
			for _, s := range tc.what {
				if !strings.Contains(filepath.ToSlash(f.What), s) {
					t.Errorf("What = %q, want it to contain %q", f.What, s)
				}
			}
			if strings.Contains(f.Error(), "\n") {
				t.Errorf("Error() = %q, want one line", f.Error())
			}
			t.Logf("Error() = %s", f)
		})
	}
}

func largeFile(t *testing.T, dir string) string {
	t.Helper()
	des, err := os.ReadDir(path(dir, "log/large"))
	if err != nil || len(des) == 0 {
		t.Fatalf("no large bodies: %v", err)
	}
	return path(dir, "log/large/"+des[0].Name())
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func signingKey(t *testing.T, dir string) note.Signer {
	t.Helper()
	k, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k.Signer
}

// appendEntry appends an entry and its hash to the staged bundle, as a
// commit does, without a checkpoint.
func appendEntry(t *testing.T, dir string, e []byte) {
	t.Helper()
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"state/staging/entries-000000000011", c2sp.AppendEntry(nil, e)},
		{"state/staging/hashes-000000000011", leafHash(e)},
	} {
		fh, err := os.OpenFile(path(dir, f.name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(f.data); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
}

func leafHash(e []byte) []byte {
	h := tlog.RecordHash(e)
	return h[:]
}
