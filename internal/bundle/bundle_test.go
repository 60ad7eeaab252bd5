package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
)

// testLog makes a closed log in a new directory with n entries made by
// leaf, appended in batches of batch with a checkpoint after each, and
// returns the directory and the verifier key.
func testLog(t testing.TB, n, batch int, leaf func(i int) []byte) (string, string) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; {
		var b [][]byte
		for ; i < n && len(b) < batch; i++ {
			b = append(b, leaf(i))
		}
		if _, err := l.Append(ctx, b...); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, keys.VerifierKey
}

// base is the received time of entry 0 of envelopeLeaf logs.
var base = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// envelopeLeaf is a trail envelope received i seconds after base, and
// entry 7 of every 100 is over 64 KiB.
func envelopeLeaf(i int) []byte {
	pad := ""
	if i%100 == 7 {
		pad = strings.Repeat("x", 70000)
	}
	return fmt.Appendf(nil, `{"received":"%s","source":"t","via":"json","event":{"action":"a%d","pad":"%s"}}`,
		base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i, pad)
}

func plainLeaf(i int) []byte { return fmt.Appendf(nil, `{"i":%d}`, i) }

func export(t testing.TB, src Source, key string, opts ExportOptions) ([]byte, *ExportReport) {
	t.Helper()
	opts.VerifierKey = key
	var buf bytes.Buffer
	rep, err := Export(context.Background(), src, &buf, opts)
	if err != nil {
		t.Fatalf("Export(%+v) = %v", opts, err)
	}
	return buf.Bytes(), rep
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{1, 255, 256, 257, 300, 512, 65536, 70000} {
		dir, key := testLog(t, size, 1000, plainLeaf)
		src := Dir{Root: dir}
		s := int64(size)
		for _, r := range [][2]int64{{0, s - 1}, {0, 0}, {s - 1, s - 1}, {s / 2, s / 2}, {s / 3, 2 * s / 3}, {max(s-300, 0), s - 1}} {
			t.Run(fmt.Sprintf("%d/%d-%d", size, r[0], r[1]), func(t *testing.T) {
				b, erep := export(t, src, key, ExportOptions{From: r[0], To: r[1]})
				if erep.From != r[0] || erep.To != r[1] || erep.TreeSize != s || erep.Entries != r[1]-r[0]+1 || erep.Bytes != int64(len(b)) {
					t.Errorf("Export report = %+v, want entries %d to %d of %d in %d bytes", erep, r[0], r[1], s, len(b))
				}
				rep, err := Verify(context.Background(), bytes.NewReader(b), key, VerifyOptions{})
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				if rep.From != r[0] || rep.To != r[1] || rep.TreeSize != s || rep.Entries != r[1]-r[0]+1 || rep.Bytes != int64(len(b)) {
					t.Errorf("Verify report = %+v, want entries %d to %d of %d in %d bytes", rep, r[0], r[1], s, len(b))
				}
				again, _ := export(t, src, key, ExportOptions{From: r[0], To: r[1]})
				if !bytes.Equal(b, again) {
					t.Errorf("two exports of one range differ")
				}
			})
		}
	}
}

// TestLarge exports entries over 64 KiB, whose bodies come in the bundle.
func TestLarge(t *testing.T) {
	dir, key := testLog(t, 300, 50, envelopeLeaf)
	b, erep := export(t, Dir{Root: dir}, key, ExportOptions{From: 5, To: 210})
	if erep.Large != 3 {
		t.Errorf("Export: %d large entries, want 3 (7, 107, 207)", erep.Large)
	}
	rep, err := Verify(context.Background(), bytes.NewReader(b), key, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Large != 3 || !rep.FirstReceived.Equal(base.Add(5*time.Second)) || !rep.LastReceived.Equal(base.Add(210*time.Second)) {
		t.Errorf("Verify = %d large, received %v to %v; want 3, %v to %v", rep.Large, rep.FirstReceived, rep.LastReceived,
			base.Add(5*time.Second), base.Add(210*time.Second))
	}
	// A body missing from the directory is an export error.
	ents, _ := os.ReadDir(filepath.Join(dir, "log", "large"))
	if err := os.Remove(filepath.Join(dir, "log", "large", ents[0].Name())); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(context.Background(), Dir{Root: dir}, &bytes.Buffer{}, ExportOptions{VerifierKey: key, To: -1}); err == nil {
		t.Errorf("Export with a large body missing succeeded")
	}
}

// smallBundle is a bundle with a bit of everything: a partial and a full
// level-0 tile, an upper tile, entries in two C2SP bundles.
func smallBundle(t testing.TB) ([]byte, string) {
	dir, key := testLog(t, 300, 100, plainLeaf)
	b, _ := export(t, Dir{Root: dir}, key, ExportOptions{From: 250, To: 260})
	return b, key
}

// TestEveryByte flips each byte of a small bundle (a different bit in
// each byte of a run of 8): every one must fail, with a Failure naming a
// place.
func TestEveryByte(t *testing.T) {
	b, key := smallBundle(t)
	t.Logf("bundle of %d bytes", len(b))
	where := map[string]int{}
	for i := 0; i < len(b); i += flipStride {
		c := bytes.Clone(b)
		c[i] ^= 1 << (i % 8)
		_, err := Verify(context.Background(), bytes.NewReader(c), key, VerifyOptions{})
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("byte %d flipped: Verify = %v, want a *Failure", i, err)
		}
		w, _, _ := strings.Cut(f.Where, " (")
		if strings.HasPrefix(w, "bundle byte") {
			w = "bundle byte"
		}
		where[w]++
	}
	t.Logf("failures by place: %v", where)
	for _, want := range []string{"bundle byte", ManifestName, CheckpointName, "tile/0/000", "entry 255", "entry 250"} {
		if where[want] == 0 {
			t.Errorf("no flip failed at %q", want)
		}
	}
	// Truncated anywhere, or with anything appended.
	for n := 0; n < len(b); n += 100 {
		if _, err := Verify(context.Background(), bytes.NewReader(b[:n]), key, VerifyOptions{}); err == nil {
			t.Fatalf("bundle cut to %d bytes verified", n)
		}
	}
	if _, err := Verify(context.Background(), bytes.NewReader(append(bytes.Clone(b), 0)), key, VerifyOptions{}); err == nil {
		t.Fatalf("bundle with a byte appended verified")
	}
}

func TestFailures(t *testing.T) {
	b, key := smallBundle(t)
	ctx := context.Background()
	_, otherKey := testLog(t, 1, 1, plainLeaf)
	_, err := Verify(ctx, bytes.NewReader(b), otherKey, VerifyOptions{})
	if f := (*Failure)(nil); !errors.As(err, &f) || f.Where != ManifestName || !strings.Contains(f.What, "the key given is of") {
		t.Errorf("Verify with another log's key = %v, want a failure of the manifest naming the keys", err)
	}

	// An entry altered: its index is named.
	i := bytes.Index(b, []byte(`{"i":255}`))
	c := bytes.Clone(b)
	c[i+5] = '6'
	_, err = Verify(ctx, bytes.NewReader(c), key, VerifyOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "entry 255 (entries/000, entry 6 of it): its hash is ") {
		t.Errorf("Verify with entry 255 altered = %v", err)
	}
	if _, err := Verify(ctx, bytes.NewReader(b), "", VerifyOptions{}); !errors.Is(err, ErrNoKey) {
		t.Errorf("Verify without a key = %v, want ErrNoKey", err)
	}
}

// TestMissingWithJournal: a bundle missing from a data directory whose
// journal holds commits (a log open, or not closed) is reported with what to
// do after a power failure.
func TestMissingWithJournal(t *testing.T) {
	dir, key := testLog(t, 300, 100, plainLeaf)
	// Bundle 1's 44 entries, as a power failure could lose them had they
	// been in the journal alone: its staging file, and the partial bundle
	// the checkpoint published.
	for _, p := range []string{"state/staging/entries-000000000001", "log/tile/entries/001.p"} {
		if err := os.RemoveAll(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			t.Fatal(err)
		}
	}
	export := func() error {
		_, err := Export(context.Background(), Dir{Root: dir}, &bytes.Buffer{}, ExportOptions{VerifierKey: key, From: 0, To: 299})
		return err
	}
	if err := export(); err == nil || !strings.Contains(err.Error(), "tile/entries/001.p/44 is missing from the data directory") || strings.Contains(err.Error(), "journal") {
		t.Fatalf("Export from a closed log missing bundle 1 = %v, want the bundle named and no word of the journal", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state", "journal"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := export(); err == nil || !strings.Contains(err.Error(), "state/journal holds commits") {
		t.Fatalf("Export with commits in the journal = %v, want a word about replaying them", err)
	}
}

func TestRangeErrors(t *testing.T) {
	dir, key := testLog(t, 10, 10, plainLeaf)
	for _, r := range [][2]int64{{0, 10}, {5, 4}, {-1, 3}} {
		_, err := Export(context.Background(), Dir{Root: dir}, &bytes.Buffer{}, ExportOptions{VerifierKey: key, From: r[0], To: r[1]})
		if !errors.Is(err, ErrRange) {
			t.Errorf("Export(%d to %d) = %v, want ErrRange", r[0], r[1], err)
		}
	}
}

// TestFindRange compares FindRange with a scan, on a log whose received
// times jitter by up to 20 s.
func TestFindRange(t *testing.T) {
	const n = 3000
	rng := rand.New(rand.NewPCG(1, 2))
	times := make([]time.Time, n)
	for i := range times {
		times[i] = base.Add(time.Duration(i)*time.Second + time.Duration(rng.IntN(20000))*time.Millisecond)
	}
	dir, key := testLog(t, n, 500, func(i int) []byte {
		return fmt.Appendf(nil, `{"received":"%s","source":"t","via":"json","event":{}}`, times[i].Format(time.RFC3339Nano))
	})
	_ = key
	src := Dir{Root: dir}
	for k := 0; k < 200; k++ {
		since := base.Add(time.Duration(rng.IntN(n+100)-50) * time.Second)
		until := since.Add(time.Duration(rng.IntN(600)+1) * time.Second)
		if k%10 == 0 {
			since = time.Time{}
		}
		if k%10 == 1 {
			until = time.Time{}
		}
		wantFrom, wantTo := int64(-1), int64(-1)
		for i, tm := range times {
			if wantFrom < 0 && (since.IsZero() || !tm.Before(since)) {
				wantFrom = int64(i)
			}
			if until.IsZero() || tm.Before(until) {
				wantTo = int64(i)
			}
		}
		from, to, err := FindRange(context.Background(), src, n, since, until, time.Minute)
		if wantFrom < 0 || wantTo < wantFrom {
			if !errors.Is(err, ErrRange) {
				t.Errorf("FindRange(%v, %v) = %d, %d, %v; want ErrRange", since, until, from, to, err)
			}
			continue
		}
		if err != nil || from != wantFrom || to != wantTo {
			t.Errorf("FindRange(%v, %v) = %d, %d, %v; want %d, %d", since, until, from, to, err, wantFrom, wantTo)
		}
	}
}

func TestReceipt(t *testing.T) {
	dir, key := testLog(t, 300, 100, envelopeLeaf)
	ctx := context.Background()
	for _, i := range []int64{0, 7, 255, 256, 299} {
		r, err := MakeReceipt(ctx, Dir{Root: dir}, key, i)
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyReceipt(r.Proof, key, r.Body, Witnesses{})
		if err != nil {
			t.Fatalf("VerifyReceipt(receipt of %d) = %v", i, err)
		}
		if got.Index != i || !bytes.Equal(got.Leaf, envelopeLeaf(int(i))) && r.Body == nil || got.TreeSize != 300 {
			t.Errorf("VerifyReceipt(receipt of %d) = index %d, leaf %.60q, size %d", i, got.Index, got.Leaf, got.TreeSize)
		}
		if i == 7 && (r.Body == nil || !bytes.Equal(r.Body, envelopeLeaf(7))) {
			t.Errorf("receipt of large entry 7: body %.60q", r.Body)
		}
	}
	if _, err := MakeReceipt(ctx, Dir{Root: dir}, key, 300); !errors.Is(err, ErrRange) {
		t.Errorf("MakeReceipt(300) = %v, want ErrRange", err)
	}

	// Every byte of a receipt matters, but those of the extra line's base64
	// padding bits, which Strict decoding refuses too.
	r, _ := MakeReceipt(ctx, Dir{Root: dir}, key, 42)
	for i := range r.Proof {
		c := bytes.Clone(r.Proof)
		c[i] ^= 1 << (i % 8)
		if _, err := VerifyReceipt(c, key, nil, Witnesses{}); err == nil {
			t.Fatalf("receipt with byte %d flipped (%q) verified", i, r.Proof[max(i-10, 0):i+1])
		}
	}
	body := bytes.Clone(envelopeLeaf(7))
	body[100] ^= 1
	r, _ = MakeReceipt(ctx, Dir{Root: dir}, key, 7)
	if _, err := VerifyReceipt(r.Proof, key, body, Witnesses{}); err == nil || !strings.Contains(err.Error(), "the body was altered") {
		t.Errorf("VerifyReceipt with an altered body = %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	// A tiny bundle: the fuzzer minimizes every input it finds
	// interesting, at a cost that grows with its size.
	dir, key := testLog(f, 3, 3, plainLeaf)
	b, _ := export(f, Dir{Root: dir}, key, ExportOptions{From: 1, To: 1})
	f.Add(b)
	f.Add(b[:1024])
	f.Fuzz(func(t *testing.T, in []byte) {
		_, err := Verify(context.Background(), bytes.NewReader(in), key, VerifyOptions{})
		if err == nil && !bytes.Equal(in, b) {
			t.Fatalf("a bundle other than the one exported verified")
		}
		if err != nil && len(err.Error()) == 0 {
			t.Fatalf("empty error")
		}
	})
}

func FuzzVerifyReceipt(f *testing.F) {
	dir, key := testLog(f, 20, 20, plainLeaf)
	r, err := MakeReceipt(context.Background(), Dir{Root: dir}, key, 13)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.Proof)
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := VerifyReceipt(in, key, nil, Witnesses{})
		if err == nil && (got.Index != 13 || !bytes.Equal(got.Leaf, plainLeaf(13))) {
			t.Fatalf("a receipt of entry %d, leaf %q, verified", got.Index, got.Leaf)
		}
	})
}

// TestPlan checks, for many tree sizes and ranges, what Verify relies on:
// the parent of every full level-0 tile, and every partial level-0 tile of
// the range, are in the head.
func TestPlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := []int64{1, 2, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 65792, 16777216, 16777217}
	for range 200 {
		sizes = append(sizes, 1+rng.Int64N(1<<26))
	}
	for _, size := range sizes {
		for range 5 {
			from := rng.Int64N(size)
			to := from + rng.Int64N(min(size-from, 5000))
			p, err := makePlan(size, from, to)
			if err != nil {
				t.Fatalf("makePlan(%d, %d, %d) = %v", size, from, to, err)
			}
			head := map[[2]int64]int{}
			for _, tl := range p.head {
				head[[2]int64{int64(tl.L), tl.N}] = tl.W
			}
			for n := p.first; n <= p.last; n++ {
				if p.fullLevel0(n) {
					if _, ok := head[[2]int64{1, n / 256}]; !ok {
						t.Fatalf("makePlan(%d, %d, %d): no parent of tile 0/%d", size, from, to, n)
					}
				} else if w := head[[2]int64{0, n}]; w != p.width(n) {
					t.Fatalf("makePlan(%d, %d, %d): partial tile 0/%d of width %d, want %d", size, from, to, n, w, p.width(n))
				}
			}
		}
	}
}

// TestEveryByteLarge flips a dense sample of the bytes of a bundle holding
// a large entry's 70 KB body: every 31st byte.
func TestEveryByteLarge(t *testing.T) {
	dir, key := testLog(t, 10, 10, envelopeLeaf)
	b, rep := export(t, Dir{Root: dir}, key, ExportOptions{From: 6, To: 8})
	if rep.Large != 1 {
		t.Fatalf("export holds %d large entries, want 1", rep.Large)
	}
	for i := 0; i < len(b); i += 31 * flipStride {
		c := bytes.Clone(b)
		c[i] ^= 1 << (i % 8)
		_, err := Verify(context.Background(), bytes.NewReader(c), key, VerifyOptions{})
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("byte %d of %d flipped: Verify = %v, want a *Failure", i, len(b), err)
		}
	}
}
