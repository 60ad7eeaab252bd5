package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/alert"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/witness/witnesstest"
)

// The tamper suite (issue 6): for each attack, a real trail serve process
// takes events, the attack is made on its files, and each defence is
// asked whether it sees it:
//
//   - self: the server's own self-verification (an alert fired: /healthz
//     turns 503 naming the place, the webhook receives it, the log records
//     it), or the server refusing to start on the damaged directory;
//   - verify -data: trail verify of the directory, offline, after a stop;
//   - verify -server: trail verify -server with the trusted state a client
//     saved before the attack;
//   - witness: a C2SP witness (internal/witness over mutual TLS on
//     127.0.0.1) that the server sends every checkpoint to, which refuses
//     a checkpoint that does not extend what it cosigned, and records the
//     refusal.
//
// docs/tamper.md has the table this test prints.

type defence int

const (
	bySelf defence = iota
	byVerifyData
	byVerifyServer
	byWitness
	defences
)

var defenceNames = [defences]string{"self-verification", "trail verify -data", "trail verify -server (trusted state)", "witness"}

// tamperRig is one server under attack and the evidence collected.
type tamperRig struct {
	t       *testing.T
	dir     string // the data directory being served
	cfg     string // the serve config file
	ops     string // the ops listener's address
	state   string // the client's trusted state file
	vkey    string
	srv     *procServer
	hook    *alertReceiver
	opsHTTP *http.Client
	witness *witnesstest.Witness
	origin  string
}

// alertReceiver is the alert webhook: HTTPS on 127.0.0.1, checking each
// signature.
type alertReceiver struct {
	secret []byte
	mu     sync.Mutex
	alerts []alert.Alert
	bad    int
}

func (a *alertReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get(alert.TimestampHeader), 10, 64)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !alert.CheckSignature(a.secret, ts, body, r.Header.Get(alert.SignatureHeader)) {
		a.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var msg struct {
		Alert alert.Alert `json:"alert"`
	}
	json.Unmarshal(body, &msg)
	a.alerts = append(a.alerts, msg.Alert)
}

func (a *alertReceiver) got() []alert.Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]alert.Alert(nil), a.alerts...)
}

func newTamperRig(t *testing.T) *tamperRig {
	t.Helper()
	work := t.TempDir()
	r := &tamperRig{t: t, dir: filepath.Join(work, "data"), cfg: filepath.Join(work, "trail.yaml"), state: filepath.Join(work, "trusted")}
	r.hook = &alertReceiver{secret: []byte("tamper-suite-webhook-secret")}
	hs := httptest.NewTLSServer(r.hook)
	t.Cleanup(hs.Close)
	caFile := filepath.Join(work, "hook-ca.pem")
	secretFile := filepath.Join(work, "hook-secret")
	writeTestFile(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}))
	writeTestFile(t, secretFile, r.hook.secret)
	// The log's keys exist before its first start, so that the witness
	// can be told its verifier key.
	keys, err := ledger.LoadOrCreateKeys(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.origin = keys.Verifier.Name()
	r.witness = witnesstest.Start(t, keys.VerifierKey)
	writeTestFile(t, r.cfg, fmt.Appendf(nil, `checkpoint_interval: 50ms
self_check:
  every: 300ms
  rate: -1
alerts:
  webhooks:
    - url: %s/alerts
      secret_file: %s
      ca_file: %s
witnesses:
  - name: w1
    url: %s
    key: %s
    ca_file: %s
    cert_file: %s
    key_file: %s
`, hs.URL, secretFile, caFile, r.witness.URL, r.witness.VerifierKey(), r.witness.CAFile, r.witness.CertFile, r.witness.KeyFile))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.ops = ln.Addr().String()
	ln.Close()
	return r
}

func writeTestFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// start starts trail serve on r.dir.
func (r *tamperRig) start() {
	r.t.Helper()
	r.adopt(startProcServer(r.t, r.dir, "-config", r.cfg, "-ops-listen", r.ops))
}

// adopt makes p the server under test.
func (r *tamperRig) adopt(p *procServer) {
	r.t.Helper()
	r.srv = p
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(r.dir, "pki", "ca.crt"))
	if err != nil {
		r.t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	r.opsHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	vk, err := os.ReadFile(filepath.Join(r.dir, "keys", "log.vkey"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.vkey = strings.TrimSpace(string(vk))
}

// stop stops the server gracefully, as SIGTERM does.
func (r *tamperRig) stop() {
	r.t.Helper()
	r.srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.srv.done:
	case <-time.After(40 * time.Second):
		r.t.Fatalf("trail serve did not stop within 40 s:\n%s", r.srv.out)
	}
}

// appendEvents appends n events and waits for a checkpoint covering them.
func (r *tamperRig) appendEvents(first, n int) {
	r.t.Helper()
	var body bytes.Buffer
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&body, `{"time":"2026-11-29T10:00:00Z","actor":{"id":"user-%d"},"action":"tamper.test","resource":{"type":"doc","id":"d%d"}}`+"\n", i%7, i)
	}
	c := procAdminClient(r.t, r.dir)
	resp, err := c.Post(r.srv.url+"/v1/events", "application/x-ndjson", &body)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("append: %s: %s", resp.Status, b)
	}
	var reply struct {
		Entries []struct {
			Index int64 `json:"index"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &reply); err != nil || len(reply.Entries) != n {
		r.t.Fatalf("append reply %.200s: %v", b, err)
	}
	// Wait for a signed checkpoint that covers them.
	last := reply.Entries[n-1].Index
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(r.srv.url + "/checkpoint")
		if err != nil {
			r.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) == 3 {
			if size, _ := strconv.ParseInt(lines[1], 10, 64); size > last {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no checkpoint covers entry %d after 10 s: %s", last, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trust runs trail verify -server, saving the trusted state, and waits
// for the witness to have cosigned that checkpoint.
func (r *tamperRig) trust() {
	r.t.Helper()
	out, err := r.cli("verify", "-data", r.dir, "-server", r.srv.url, "-state", r.state, "-json")
	if err != nil {
		r.t.Fatalf("trail verify -server before the attack: %v\n%s", err, out)
	}
	var v struct {
		Size int64 `json:"size"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Size == 0 {
		r.t.Fatalf("trail verify -server -json: %v: %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.witnessSize() < v.Size {
		if time.Now().After(deadline) {
			r.t.Fatalf("the witness did not cosign size %d within 20 s (it has %d)", v.Size, r.witnessSize())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// witnessSize is the size of the newest checkpoint the witness cosigned.
func (r *tamperRig) witnessSize() int64 {
	b := r.witness.Latest(r.origin)
	if b == nil {
		return 0
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return 0
	}
	n, _ := strconv.ParseInt(lines[1], 10, 64)
	return n
}

// witnessRefusal waits up to wait for the witness to record a refusal and
// returns it, or "".
func (r *tamperRig) witnessRefusal(wait time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if rs := r.witness.Refusals(r.t); len(rs) > 0 {
			return fmt.Sprintf("refused (%s, HTTP %d): %s", rs[0].Reason, rs[0].Status, rs[0].Message)
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs a trail command in-process and returns its output.
func (r *tamperRig) cli(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return strings.TrimSpace(out.String()), err
}

// selfAlert waits up to wait for /healthz to turn unhealthy with an alert
// of kind (log.damage: self-verification; witness.refused: a witness's
// refusal, reported by the log) and returns what it names, once the
// webhook has received the same alert; "" if none came.
func (r *tamperRig) selfAlert(kind string, wait time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		resp, err := r.opsHTTP.Get("https://" + r.ops + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				var h struct {
					Status   string   `json:"status"`
					Problems []string `json:"problems"`
				}
				if err := json.Unmarshal(b, &h); err != nil || h.Status != "unhealthy" || len(h.Problems) == 0 {
					r.t.Errorf("/healthz 503 body %q, want status unhealthy with problems", b)
				}
				for _, p := range h.Problems {
					if strings.HasPrefix(p, kind+": ") {
						r.waitWebhook(kind, p)
						return p
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range r.hook.got() {
		if a.Kind == kind {
			r.t.Errorf("webhook got %+v but /healthz did not name it", a)
		}
	}
	return ""
}

// waitWebhook checks that the webhook received the alert /healthz named.
func (r *tamperRig) waitWebhook(kind, problem string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range r.hook.got() {
			if strings.HasSuffix(problem, a.Summary) && a.Where != "" && a.Kind == kind {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Errorf("webhook did not receive the alert %q (got %+v, %d with bad signatures)", problem, r.hook.got(), r.hook.bad)
}

// recorded reports whether the log itself holds a trail.alert event: the
// alert was appended as an event. It reads the stopped log directly, when
// the damage lets it be opened (checked).
func (r *tamperRig) recorded() (found, checked bool) {
	r.t.Helper()
	store, err := fs.Open(r.dir, nil)
	if err != nil {
		r.t.Logf("couldn't open the damaged log to look for the alert event: %v", err)
		return false, false
	}
	defer store.Close()
	size := store.Size()
	entries, err := store.ReadEntries(context.Background(), max(0, size-20), size)
	if err != nil {
		r.t.Logf("couldn't read the damaged log's last entries: %v", err)
		return false, false
	}
	for _, e := range entries {
		if bytes.Contains(e, []byte(`"action":"trail.alert"`)) {
			return true, true
		}
	}
	return false, true
}

// file returns the path of rel in the data directory.
func (r *tamperRig) file(rel string) string { return filepath.Join(r.dir, filepath.FromSlash(rel)) }

func (r *tamperRig) flip(rel string, off int64) {
	r.t.Helper()
	b, err := os.ReadFile(r.file(rel))
	if err != nil {
		r.t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x20
	// In place, as an attacker with write access edits a file.
	f, err := os.OpenFile(r.file(rel), os.O_WRONLY, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b[off:off+1], off); err != nil {
		r.t.Fatal(err)
	}
}

// expect is whether a defence must see an attack.
type expect int

const (
	no expect = iota
	yes
	maybe // depends on timing: the attacked file may be replaced first
)

// attackResult is one row of the table.
type attackResult struct {
	name   string
	caught [defences]string // what each defence said; "" = not caught
}

// TestTamperSuite runs every attack and prints which defence catches it.
// Each row's expectations are the specification of the defences: a
// defence that stops seeing an attack it should see fails the test, and
// no attack may go unseen by all.
func TestTamperSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts trail serve a dozen times")
	}
	type attack struct {
		name string
		// before runs on the running server after the events are
		// appended and trusted; it may stop and restart it.
		run  func(r *tamperRig)
		want [defences]expect
	}
	attacks := []attack{
		{"one byte of an entry (sealed bundle)", func(r *tamperRig) {
			b, _ := os.ReadFile(r.file("log/tile/entries/000"))
			r.flip("log/tile/entries/000", int64(bytes.Index(b, []byte(`"d17"`))+2))
		}, [defences]expect{yes, yes, no, no}},
		{"one byte of a hash tile", func(r *tamperRig) {
			r.flip("log/tile/0/001", 32*9+3)
		}, [defences]expect{yes, yes, no, no}},
		{"one byte of the checkpoint history", func(r *tamperRig) {
			r.flip("state/checkpoints", 120)
		}, [defences]expect{yes, yes, no, no}},
		{"one byte of the published checkpoint", func(r *tamperRig) {
			r.flip("log/checkpoint", -10) // inside the signature
		}, [defences]expect{yes, maybe, maybe, no}}, // the next checkpoint replaces the file
		{"tail of an entry bundle truncated", func(r *tamperRig) {
			p := r.file("log/tile/entries/001")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-300)
		}, [defences]expect{yes, yes, no, no}},
		{"a hash tile deleted", func(r *tamperRig) {
			os.Remove(r.file("log/tile/0/000"))
		}, [defences]expect{yes, yes, no, no}},
		{"entries removed from the end (server stopped)", func(r *tamperRig) {
			r.stop()
			n := removeLastEntries(r, 10)
			r.t.Logf("removed the last %d entries from the staging files", n)
		}, [defences]expect{yes, yes, no, no}},
		{"an older data directory put back (rollback)", func(r *tamperRig) {
			r.stop()
			old := r.dir + ".old"
			copyDir(r.t, r.dir, old)
			r.start()
			r.appendEvents(600, 300)
			r.trust() // the client has seen the log grow
			r.stop()
			os.RemoveAll(r.dir)
			os.Rename(old, r.dir)
		}, [defences]expect{no, no, yes, yes}},
		{"log rebuilt with one event changed, re-signed with the log's key", func(r *tamperRig) {
			r.stop()
			rebuildWithChange(r, 42)
		}, [defences]expect{no, no, yes, yes}},
	}
	var results []attackResult
	for _, a := range attacks {
		t.Run(strings.ReplaceAll(a.name, " ", "_"), func(t *testing.T) {
			r := newTamperRig(t)
			r.start()
			r.appendEvents(0, 600)
			r.trust()
			a.run(r)
			res := attackResult{name: a.name}

			// The server, running on the attacked directory (restarted
			// if the attack stopped it).
			if !exited(r.srv) {
				res.caught[bySelf] = r.selfAlert("log.damage", 8*time.Second)
				if res.caught[bySelf] != "" {
					// Alerted, it keeps serving reads, so the damage can be
					// examined.
					resp, err := procAdminClient(t, r.dir).Get(r.srv.url + "/v1/events/1")
					if err != nil {
						t.Errorf("after the alert, GET /v1/events/1: %v", err)
					} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
						t.Errorf("after the alert, GET /v1/events/1 = %s, want 200", resp.Status)
					}
				}
				res.caught[byWitness] = r.witnessRefusal(0)
			} else if err := r.tryStart(); err != "" {
				res.caught[bySelf] = "refused to start: " + err
			} else {
				res.caught[bySelf] = r.selfAlert("log.damage", 3*time.Second)
				if res.caught[byWitness] = r.witnessRefusal(5 * time.Second); res.caught[byWitness] != "" {
					// The log hears the refusal too, and alerts.
					if a := r.selfAlert("witness.refused", 10*time.Second); a == "" {
						t.Errorf("the witness refused, but the log raised no witness.refused alert")
					} else {
						res.caught[byWitness] += "; the log alerted: " + a
					}
				}
			}
			if r.srv != nil && !exited(r.srv) {
				if out, err := r.cli("verify", "-data", r.dir, "-server", r.srv.url, "-state", r.state); err != nil {
					res.caught[byVerifyServer] = firstLine(out)
				} else {
					t.Logf("trail verify -server passed:\n%s", out)
				}
				r.stop()
			}
			if out, err := r.cli("verify", "-data", r.dir, "-key", r.vkey); err != nil {
				res.caught[byVerifyData] = firstLine(out)
			}
			if alerted := res.caught[bySelf] != "" && !strings.HasPrefix(res.caught[bySelf], "refused"); alerted {
				if found, checked := r.recorded(); checked && !found {
					t.Errorf("the alert was not appended to the log as a trail.alert event")
				}
			}
			any := false
			for d := range defences {
				got := res.caught[d] != ""
				any = any || got
				if a.want[d] != maybe && got != (a.want[d] == yes) {
					t.Errorf("%s: caught=%v, want %v (%q)", defenceNames[d], got, a.want[d], res.caught[d])
				}
				t.Logf("%-40s %v %s", defenceNames[d], got, res.caught[d])
			}
			if !any {
				t.Errorf("no defence caught %q", a.name)
			}
			results = append(results, res)
		})
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n| attack | %s |\n|---|---|---|---|---|\n", strings.Join(defenceNames[:], " | "))
	for _, res := range results {
		fmt.Fprintf(&tbl, "| %s |", res.name)
		for _, c := range res.caught {
			if c == "" {
				tbl.WriteString(" — |")
			} else {
				fmt.Fprintf(&tbl, " **caught**: %s |", strings.ReplaceAll(c, "|", "/"))
			}
		}
		tbl.WriteString("\n")
	}
	t.Log(tbl.String())
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimPrefix(s, "trail: ")
}

func exited(p *procServer) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tryStart starts the server on the attacked directory and returns why it
// refused, or "" once it serves.
func (r *tamperRig) tryStart() string {
	r.t.Helper()
	p, refused := launchProcServer(r.t, r.dir, "-config", r.cfg, "-ops-listen", r.ops)
	if refused != "" {
		lines := strings.Split(strings.TrimSpace(refused), "\n")
		return strings.TrimPrefix(lines[len(lines)-1], "trail: ")
	}
	r.adopt(p)
	return ""
}

// removeLastEntries cuts the last n entries from the staging files of the
// stopped log, leaving a well-formed shorter log behind, and returns n.
func removeLastEntries(r *tamperRig, n int) int {
	r.t.Helper()
	// The bundle being filled follows the sealed ones; the other staging
	// files are spares made ahead.
	sealed, _ := filepath.Glob(r.file("log/tile/entries/[0-9][0-9][0-9]"))
	matches := []string{r.file(fmt.Sprintf("state/staging/entries-%012d", len(sealed)))}
	eb, err := os.ReadFile(matches[0])
	if err != nil || len(eb) == 0 {
		r.t.Fatalf("staging bundle: %v (%d bytes)", err, len(eb))
	}
	hashes := strings.Replace(matches[0], "entries-", "hashes-", 1)
	hb, _ := os.ReadFile(hashes)
	var offs []int
	for off := 0; off < len(eb); {
		offs = append(offs, off)
		off += 2 + (int(eb[off])<<8 | int(eb[off+1]))
	}
	n = min(n, len(offs)-1)
	keep := len(offs) - n
	if err := os.Truncate(matches[0], int64(offs[keep])); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Truncate(hashes, int64(min(len(hb), keep*32))); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
}

// rebuildWithChange is the operator's attack: a new log with the same
// signing key, the same entries except entry index altered, in place of
// the old one. Every file is consistent and every signature valid.
func rebuildWithChange(r *tamperRig, index int64) {
	r.t.Helper()
	ctx := context.Background()
	keys, err := ledger.LoadOrCreateKeys(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	store, err := fs.Open(r.dir, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	entries, err := store.ReadEntries(ctx, 0, store.Size())
	store.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	entries[index] = bytes.Replace(entries[index], []byte(`"tamper.test"`), []byte(`"tamper.TEST"`), 1)

	forged := r.dir + ".forged"
	os.MkdirAll(forged, 0o700)
	copyDir(r.t, filepath.Join(r.dir, "keys"), filepath.Join(forged, "keys"))
	copyDir(r.t, filepath.Join(r.dir, "pki"), filepath.Join(forged, "pki"))
	fstore, err := fs.Open(forged, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: fstore, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := l.Append(ctx, entries...); err != nil {
		r.t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		r.t.Fatal(err)
	}
	os.RemoveAll(r.dir)
	if err := os.Rename(forged, r.dir); err != nil {
		r.t.Fatal(err)
	}
}
