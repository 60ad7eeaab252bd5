package main

// Tests against trail serve running as a real separate process: the test
// binary, which TestMain runs as "trail" when it is called by that name
// (testscript puts it on $PATH).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// procServer is a trail serve process.
type procServer struct {
	cmd  *exec.Cmd
	url  string
	out  *servertest.Buffer
	done chan struct{} // closed once the process has exited
}

// startProcServer starts trail serve on the data directory dir, on a free port
// of 127.0.0.1, and returns once it listens: when its serve.json names it.
// Flags in extra come after (and so override) the defaults.
func startProcServer(t *testing.T, dir string, extra ...string) *procServer {
	t.Helper()
	p, refused := launchProcServer(t, dir, extra...)
	if refused != "" {
		t.Fatalf("trail serve exited before listening (%v):\n%s", p.cmd.ProcessState, refused)
	}
	return p
}

// launchProcServer is startProcServer, but a server that exits before it
// listens is not a failure: refused is its output.
func launchProcServer(t *testing.T, dir string, extra ...string) (p *procServer, refused string) {
	t.Helper()
	trail, err := exec.LookPath("trail")
	if err != nil {
		t.Fatalf("the test binary is not on $PATH as trail (see TestMain): %v", err)
	}
	info := filepath.Join(dir, serveInfoFile)
	os.Remove(info) // a killed server leaves its own behind
	p = &procServer{out: new(servertest.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(trail, append([]string{"serve", "-data", dir, "-listen", "127.0.0.1:0", "-ops-listen", "off", "-syslog-listen", "off"}, extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })

	deadline := time.Now().Add(20 * time.Second)
	for {
		var si serveInfo
		if b, err := os.ReadFile(info); err == nil && json.Unmarshal(b, &si) == nil && si.PID == p.cmd.Process.Pid {
			p.url = si.URL
			return p, ""
		}
		select {
		case <-p.done:
			return p, p.out.String()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("trail serve did not write %s within 20 s:\n%s", info, p.out)
		}
	}
}

// kill sends SIGKILL (on Windows, TerminateProcess) and waits for the
// process to be gone.
func (p *procServer) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("trail serve (pid %d) still running 10 s after SIGKILL", p.cmd.Process.Pid)
	}
}

// procAdminClient returns an HTTP/2 client with the admin certificate that
// trail serve made in dir.
func procAdminClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	pki := filepath.Join(dir, "pki")
	tc, err := bench.ClientTLS(filepath.Join(pki, tlsconf.CACertFile), filepath.Join(pki, adminCertFile), filepath.Join(pki, adminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// ackedLeaf is what the server acknowledged for one event: the leaf hash, and the
// resource id that names the event the test sent.
type ackedLeaf struct {
	hash tlog.Hash
	id   string
}

// ackLog is every acknowledgement of a test, by index.
type ackLog struct {
	mu    sync.Mutex
	byIdx map[int64]ackedLeaf
	dups  []string
}

func (a *ackLog) add(index int64, hash []byte, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.byIdx[index]; ok {
		a.dups = append(a.dups, fmt.Sprintf("index %d acknowledged for %s and for %s", index, prev.id, id))
		return
	}
	var h tlog.Hash
	copy(h[:], hash)
	a.byIdx[index] = ackedLeaf{h, id}
}

// appendUntilKilled runs clients that append distinct events until stop is
// closed, each one request at a time: even-numbered clients one event per
// request, odd-numbered ones batches of 2 to 40. A request that fails before
// stopping is a test failure; after it (the server was killed), an expected
// loss, not acknowledged.
func appendUntilKilled(t *testing.T, c *http.Client, url string, round, clients int, acks *ackLog, stopping *atomic.Bool, stop <-chan struct{}, count, lost *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				n := 1
				if w%2 == 1 {
					n = 2 + rng.IntN(39)
				}
				ids := make([]string, n)
				var body bytes.Buffer
				if n > 1 {
					body.WriteByte('[')
				}
				for k := range ids {
					ids[k] = fmt.Sprintf("r%d-c%d-s%d-e%d", round, w, seq, k)
					if k > 0 {
						body.WriteByte(',')
					}
					fmt.Fprintf(&body, `{"time":"2026-03-04T05:06:07.%03dZ","actor":{"id":"client-%d","type":"service"},"action":"test.append","resource":{"type":"probe","id":%q},"details":{"n":%d}}`,
						seq%1000, w, ids[k], n)
				}
				if n > 1 {
					body.WriteByte(']')
				}
				entries, err := postForAck(c, url, body.Bytes())
				if err != nil {
					if !stopping.Load() {
						t.Errorf("client %d, request %d before the kill: %v", w, seq, err)
					}
					lost.Add(1)
					return
				}
				if len(entries) != n {
					t.Errorf("client %d: %d entries acknowledged for %d events", w, len(entries), n)
					return
				}
				for k, e := range entries {
					acks.add(e.Index, e.LeafHash, ids[k])
				}
				count.Add(int64(n))
			}
		})
	}
	return &wg
}

type ackedEntry struct {
	Index    int64  `json:"index"`
	LeafHash []byte `json:"leaf_hash"`
}

// postForAck appends body and returns the entries of a 200 reply.
func postForAck(c *http.Client, url string, body []byte) ([]ackedEntry, error) {
	resp, err := c.Post(url+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var reply struct {
		Entries []ackedEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &reply); err != nil {
		return nil, fmt.Errorf("reply %q: %w", b, err)
	}
	return reply.Entries, nil
}

// checkAcked reads every index of want back from the server with GET
// /v1/events/{index} and checks that it holds the acknowledged leaf and the
// event that was sent.
func checkAcked(t *testing.T, c *http.Client, url string, want map[int64]ackedLeaf) {
	t.Helper()
	indices := make(chan int64)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := range indices {
				if err := checkAckedEntry(c, url, i, want[i]); err != nil {
					if failures.Add(1) <= 10 {
						t.Errorf("after restart, entry %d: %v", i, err)
					}
				}
			}
		})
	}
	for i := range want {
		indices <- i
	}
	close(indices)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d acknowledged entries are not as acknowledged after the restart", n, len(want))
	}
}

func checkAckedEntry(c *http.Client, url string, index int64, want ackedLeaf) error {
	resp, err := c.Get(fmt.Sprintf("%s/v1/events/%d", url, index))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s: %s", resp.Status, b)
	}
	var got struct {
		Index int64           `json:"index"`
		Leaf  json.RawMessage `json:"leaf"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		return err
	}
	if h := tlog.RecordHash(got.Leaf); h != want.hash || got.Index != index {
		return fmt.Errorf("index %d, leaf hash %v; acknowledged %v", got.Index, h, want.hash)
	}
	env, err := event.DecodeLeaf(got.Leaf)
	if err != nil {
		return err
	}
	if env.Event.Resource.ID != want.id {
		return fmt.Errorf("holds event %q, acknowledged for %q", env.Event.Resource.ID, want.id)
	}
	return nil
}

// TestKillUnderLoad kills trail serve with SIGKILL while clients append,
// restarts it on the same data directory, and checks that every index a
// client got a 200 for holds the same leaf and event; at the end, that the
// directory verifies.
func TestKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills trail serve several times")
	}
	const (
		rounds   = 3
		clients  = 8
		minAcked = 300 // per round, before the kill
	)
	dir := filepath.Join(t.TempDir(), "data")
	acks := &ackLog{byIdx: make(map[int64]ackedLeaf)}
	srv := startProcServer(t, dir)
	for round := range rounds {
		c := procAdminClient(t, dir)
		var (
			stopping atomic.Bool
			count    atomic.Int64
			lost     atomic.Int64 // requests in flight at the kill
			stop     = make(chan struct{})
		)
		before := len(acks.byIdx)
		wg := appendUntilKilled(t, c, srv.url, round, clients, acks, &stopping, stop, &count, &lost)
		// Kill once the round has some acknowledged entries, at a random
		// moment while requests are in flight.
		deadline := time.Now().Add(10 * time.Second)
		for count.Load() < minAcked && time.Now().Before(deadline) && !t.Failed() {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		stopping.Store(true)
		srv.kill(t)
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.Fatalf("trail serve output:\n%s", srv.out)
		}
		if got := len(acks.byIdx) - before; got < minAcked {
			t.Fatalf("round %d: %d entries acknowledged in 10 s, want at least %d", round, got, minAcked)
		}
		t.Logf("round %d: %d entries acknowledged, then SIGKILL with %d requests in flight", round, len(acks.byIdx)-before, lost.Load())

		srv = startProcServer(t, dir)
		c = procAdminClient(t, dir)
		// The entries most at risk are those acknowledged just before the
		// kill; earlier rounds' entries are checked again at the end.
		thisRound := make(map[int64]ackedLeaf)
		prefix := fmt.Sprintf("r%d-", round)
		for i, a := range acks.byIdx {
			if strings.HasPrefix(a.id, prefix) {
				thisRound[i] = a
			}
		}
		checkAcked(t, c, srv.url, thisRound)
	}
	if len(acks.dups) > 0 {
		t.Fatalf("indices acknowledged twice: %q", acks.dups)
	}
	checkAcked(t, procAdminClient(t, dir), srv.url, acks.byIdx)
	srv.kill(t)

	// Open the log as a restart would (recovery, a checkpoint over what is
	// stored), compare its leaves with the acknowledgements directly, and
	// verify the directory offline.
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks.byIdx {
		if h, err := l.LeafHash(t.Context(), i); err != nil || h != a.hash {
			t.Errorf("entry %d: leaf hash %v, %v; acknowledged %v", i, h, err, a.hash)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"verify", "-data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("trail verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
}
