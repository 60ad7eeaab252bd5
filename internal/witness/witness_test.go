package witness_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/witness"
	"github.com/trailaudit/trail/internal/witness/cosig"
	"github.com/trailaudit/trail/internal/witness/witnesstest"
)

// testLog is a real log in a directory.
type testLog struct {
	*ledger.Log
	dir  string
	keys *ledger.Keys
}

func openLog(t *testing.T, dir string, onCP func(*ledger.Checkpoint)) *testLog {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1, OnCheckpoint: onCP})
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{Log: l, dir: dir, keys: keys}
	t.Cleanup(func() { l.Close() })
	return tl
}

// grow appends n entries tagged tag and signs a checkpoint.
func (l *testLog) grow(t *testing.T, n int, tag string) *ledger.Checkpoint {
	t.Helper()
	var batch [][]byte
	for i := range n {
		batch = append(batch, fmt.Appendf(nil, `{"tag":%q,"i":%d}`, tag, i))
	}
	if _, err := l.Append(t.Context(), batch...); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func request(t *testing.T, l *testLog, old int64, cp *ledger.Checkpoint) []byte {
	t.Helper()
	r := witness.Request{OldSize: old, Checkpoint: cp.Note}
	if old > 0 && old < cp.Size {
		p, err := l.ProveConsistency(t.Context(), old, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		r.Proof = p
	}
	return r.Format()
}

// TestAddCheckpoint follows c2sp.org/tlog-witness: each status code, the
// 409 body and content type, and a cosignature/v1 line that verifies.
func TestAddCheckpoint(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	w := witnesstest.Start(t, l.keys.VerifierKey)
	v, err := cosig.NewVerifier(w.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cp10 := l.grow(t, 10, "a")

	// First contact: old 0, no proof.
	status, body := w.Post(t, request(t, l, 0, cp10))
	if status != 200 {
		t.Fatalf("first add-checkpoint: %d %s, want 200", status, body)
	}
	if !bytes.HasPrefix(body, []byte("— "+w.Name()+" ")) || !bytes.HasSuffix(body, []byte("\n")) {
		t.Fatalf("cosignature body = %q, want one signature line by %s", body, w.Name())
	}
	sigs, err := cosig.Verify(append(bytes.Clone(cp10.Note), body...), []*cosig.Verifier{v})
	if err != nil || len(sigs) != 1 {
		t.Fatalf("cosig.Verify = %v, %v; want one cosignature", sigs, err)
	}
	if d := time.Since(sigs[0].Time); d < -time.Second || d > time.Minute {
		t.Errorf("cosignature time %v, want about now", sigs[0].Time)
	}
	// The log's parser ignores the cosignature (note.Open skips unknown
	// signers).
	if _, err := l.ParseCheckpoint(append(bytes.Clone(cp10.Note), body...)); err != nil {
		t.Errorf("ledger.ParseCheckpoint of the cosigned checkpoint: %v", err)
	}

	cp25 := l.grow(t, 15, "a")
	// Stale old size: 409 with the witness's size.
	if status, body := w.Post(t, request(t, l, 0, cp25)); status != 409 || string(body) != "10\n" {
		t.Errorf("old 0 after cosigning 10: %d %q, want 409 \"10\\n\"", status, body)
	}
	// A bad proof: 422.
	bad := witness.Request{OldSize: 10, Checkpoint: cp25.Note}
	p, _ := l.ProveConsistency(t.Context(), 10, 25)
	bad.Proof = append(tlog.TreeProof(nil), p...)
	bad.Proof[0][0] ^= 1
	if status, body := w.Post(t, bad.Format()); status != 422 {
		t.Errorf("bad proof: %d %s, want 422", status, body)
	}
	// old > size: 400.
	if status, body := w.Post(t, witness.Request{OldSize: 30, Checkpoint: cp25.Note}.Format()); status != 400 {
		t.Errorf("old size past the checkpoint: %d %s, want 400", status, body)
	}
	// The right proof: 200.
	if status, body := w.Post(t, request(t, l, 10, cp25)); status != 200 {
		t.Fatalf("good proof: %d %s, want 200", status, body)
	}
	// The same checkpoint again: 200.
	if status, body := w.Post(t, request(t, l, 25, cp25)); status != 200 {
		t.Errorf("same checkpoint again: %d %s, want 200", status, body)
	}

	// Unknown origin: 404. A checkpoint not signed by the log's key: 403.
	other := openLog(t, t.TempDir(), nil)
	if status, body := w.Post(t, request(t, other, 0, other.grow(t, 1, "x"))); status != 404 {
		t.Errorf("unknown origin: %d %s, want 404", status, body)
	}
	skey, _, _ := note.GenerateKey(nil, l.Origin())
	forger, _ := note.NewSigner(skey)
	text, _, _ := bytes.Cut(cp25.Note, []byte("\n\n"))
	forged, _ := note.Sign(&note.Note{Text: string(text) + "\n"}, forger)
	if status, body := w.Post(t, witness.Request{OldSize: 25, Checkpoint: forged}.Format()); status != 403 {
		t.Errorf("checkpoint signed by another key of the same name: %d %s, want 403", status, body)
	}
	tampered := bytes.Replace(bytes.Clone(cp25.Note), []byte("\n25\n"), []byte("\n26\n"), 1)
	if status, body := w.Post(t, witness.Request{OldSize: 25, Checkpoint: tampered}.Format()); status != 403 {
		t.Errorf("altered checkpoint: %d %s, want 403", status, body)
	}
	// Malformed: 400.
	for _, b := range []string{"", "old 01\n\n" + string(cp25.Note), "old 25\n" + string(cp25.Note), "old 25\nnot base64\n\n" + string(cp25.Note)} {
		if status, body := w.Post(t, []byte(b)); status != 400 {
			t.Errorf("malformed %.30q: %d %s, want 400", b, status, body)
		}
	}
	if n := w.RefusalCount(l.Origin(), "inconsistent"); n != 1 {
		t.Errorf("trail_witness_refusals_total{reason=inconsistent} = %v, want 1", n)
	}
	if n := w.RefusalCount("", "unknown_origin"); n != 1 {
		t.Errorf("trail_witness_refusals_total{reason=unknown_origin} = %v, want 1", n)
	}
}

// TestForkAndRollbackRefused offers the witness a fork made with the log's
// own key (a copy of the data directory grown with other entries) and an
// older checkpoint, across a restart of the witness: both are refused, and
// each refusal is visible in the refusals file with the evidence, in the
// metric, and survives in the state.
func TestForkAndRollbackRefused(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	w := witnesstest.Start(t, l.keys.VerifierKey)
	cp10 := l.grow(t, 10, "a")
	if status, body := w.Post(t, request(t, l, 0, cp10)); status != 200 {
		t.Fatalf("add-checkpoint: %d %s", status, body)
	}
	l.Close()
	forkDir := t.TempDir()
	if out, err := exec.Command("cp", "-r", dir+"/.", forkDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	l = openLog(t, dir, nil)
	f := openLog(t, forkDir, nil)
	cp20 := l.grow(t, 10, "real")
	fork20 := f.grow(t, 10, "forged")
	fork30 := f.grow(t, 10, "forged")
	if cp20.Hash == fork20.Hash {
		t.Fatal("the fork has the real log's root")
	}
	if status, body := w.Post(t, request(t, l, 10, cp20)); status != 200 {
		t.Fatalf("real checkpoint: %d %s", status, body)
	}

	w.Restart(t)

	// Same size, other root: 409.
	if status, body := w.Post(t, request(t, f, 20, fork20)); status != 409 || string(body) != "20\n" {
		t.Errorf("fork of the same size: %d %q, want 409 \"20\\n\"", status, body)
	}
	// Larger, proof from 20 in the forked tree: it cannot check against the
	// real root.
	if status, body := w.Post(t, request(t, f, 20, fork30)); status != 422 {
		t.Errorf("fork of a larger size: %d %s, want 422", status, body)
	}
	// An older checkpoint: a rollback.
	if status, body := w.Post(t, request(t, l, 0, cp10)); status != 409 || string(body) != "20\n" {
		t.Errorf("rollback: %d %q, want 409 \"20\\n\"", status, body)
	}
	rs := w.Refusals(t)
	var reasons []string
	for _, r := range rs {
		reasons = append(reasons, r.Reason)
		if r.Origin != l.Origin() || !strings.Contains(r.Cosigned, "\n20\n") || r.Offered == "" {
			t.Errorf("refusal %+v lacks the evidence", r)
		}
	}
	if got, want := strings.Join(reasons, ","), "fork,inconsistent,rollback"; got != want {
		t.Errorf("refusal reasons = %s, want %s", got, want)
	}
	// The evidence is two checkpoints signed by the log's key.
	for _, r := range rs {
		for _, n := range []string{r.Cosigned, r.Offered} {
			if _, err := l.ParseCheckpoint([]byte(n)); err != nil {
				t.Errorf("refusal %s: a note does not verify with the log's key: %v", r.Reason, err)
			}
		}
	}
	for _, reason := range []string{"fork", "inconsistent", "rollback"} {
		if n := w.RefusalCount(l.Origin(), reason); n != 1 {
			t.Errorf("trail_witness_refusals_total{reason=%s} = %v, want 1", reason, n)
		}
	}
	// The witness still follows the real log.
	cp40 := l.grow(t, 20, "real")
	if status, body := w.Post(t, request(t, l, 20, cp40)); status != 200 {
		t.Errorf("real log after the refusals: %d %s", status, body)
	}
	// Its state is the newest cosigned checkpoint.
	if got := w.Latest(l.Origin()); !bytes.Equal(got, cp40.Note) {
		t.Errorf("Latest = %q, want the checkpoint of size 40", got)
	}
}

// TestStateSurvivesRestart: a witness restarted on its directory still
// refuses a fork of what it cosigned before the restart.
func TestStateSurvivesRestart(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	w := witnesstest.Start(t, l.keys.VerifierKey)
	cp := l.grow(t, 5, "a")
	if status, body := w.Post(t, request(t, l, 0, cp)); status != 200 {
		t.Fatalf("add-checkpoint: %d %s", status, body)
	}
	vkey := w.VerifierKey()
	w.Restart(t)
	if w.VerifierKey() != vkey {
		t.Errorf("restart changed the witness key: %s, then %s", vkey, w.VerifierKey())
	}
	if status, body := w.Post(t, request(t, l, 0, cp)); status != 409 || string(body) != "5\n" {
		t.Errorf("after restart, old 0: %d %q, want 409 \"5\\n\"", status, body)
	}
	// The key file is 0600.
	fi, err := os.Stat(filepath.Join(w.Dir, witness.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("witness key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// A state file edited behind the witness's back stops it from starting.
	state := filepath.Join(w.Dir, "logs", witnessStateName(l.Origin()))
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 1
	os.WriteFile(state, b, 0o644)
	if _, err := witness.New(witness.Config{Dir: w.Dir, Logs: []string{l.keys.VerifierKey}}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("New with an altered state file: %v, want an error", err)
	}
}

func witnessStateName(origin string) string {
	return strings.NewReplacer("/", "%2F").Replace(origin)
}

// checkpointText parses the body of a signed checkpoint.
func checkpointText(t *testing.T, b []byte) c2sp.Checkpoint {
	t.Helper()
	text, _, _ := bytes.Cut(b, []byte("\n\n"))
	c, err := c2sp.ParseCheckpoint(text[: len(text)+1 : len(text)+1])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOperatorRewrite is the operator's attack: the whole log rebuilt with
// one entry changed and signed again with the log's own key. Whatever size
// the rebuilt log has, the witness refuses its checkpoint.
func TestOperatorRewrite(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	w := witnesstest.Start(t, l.keys.VerifierKey)
	for range 3 {
		if status, body := w.Submit(t, l, l.grow(t, 10, "real").Note); status != 200 {
			t.Fatalf("real checkpoint: %d %s", status, body)
		}
	}
	// The rebuilt log: same keys, entries 0-29 but one changed.
	rebuilt := t.TempDir()
	os.MkdirAll(filepath.Join(rebuilt, "keys"), 0o700)
	for _, f := range []string{ledger.SigningKeyFile, ledger.VerifierKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(rebuilt, f), b, 0o600)
	}
	r := openLog(t, rebuilt, nil)
	r.grow(t, 10, "real")
	r.grow(t, 10, "rewritten")
	same := r.grow(t, 10, "real")
	if status, body := w.Submit(t, r, same.Note); status != 409 {
		t.Errorf("rewritten log at the cosigned size: %d %s, want 409", status, body)
	}
	larger := r.grow(t, 5, "real")
	if status, body := w.Submit(t, r, larger.Note); status != 422 {
		t.Errorf("rewritten log grown past the cosigned size: %d %s, want 422", status, body)
	}
	if got := len(w.Refusals(t)); got != 2 {
		t.Errorf("%d refusals recorded, want 2", got)
	}
}
