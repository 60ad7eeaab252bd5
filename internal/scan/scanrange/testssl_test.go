//go:build linux

package scanrange

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/scan"
	"github.com/trailaudit/trail/internal/testssl"
)

// disagreement is a known difference between trail scan and testssl.sh.
type disagreement struct {
	why string
	// intermittent is set when testssl.sh finds the item in some runs
	// and not in others: it need not occur in every run.
	intermittent bool
}

// gnutlsSockets explains the suites only testssl.sh's bash socket code can
// find: it misses them in some runs.
const gnutlsSockets = "gnutls-serv accepts it (trail finds it in every run, and gnutls-cli offering only that " +
	"cipher negotiates it). testssl.sh's openssl (Debian's OpenSSL 3) has neither RC4 nor 3DES suites at any " +
	"security level, so only its own socket code can find them, and on the loaded test machine it missed " +
	"3DES in one run and RC4 in another, each found in the other run"

// disagreements are where trail scan and testssl.sh differ on the range,
// each with why. docs/scan.md has the same table in the same words: keep
// the two in step. The test fails on a disagreement not listed here, and
// on one listed here, not intermittent, that no longer occurs.
var disagreements = map[string]disagreement{
	"3des: TLS 1.2 TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA only in trail scan": {gnutlsSockets, true},
	"rc4: TLS 1.2 TLS_ECDHE_RSA_WITH_RC4_128_SHA only in trail scan":       {gnutlsSockets, true},
	"rc4: TLS 1.2 TLS_RSA_WITH_RC4_128_SHA only in trail scan":             {gnutlsSockets, true},
}

const legacyOpenSSLConf = `openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = ALL:COMPLEMENTOFALL:@SECLEVEL=0
MinProtocol = TLSv1
`

// testsslParallel is how many testssl.sh runs go at once. Each is a
// bash script that forks openssl and its own socket helpers hundreds of
// times: more at once only queues them for the CPU and, on a loaded
// machine, risks testssl.sh's own timeouts.
const testsslParallel = 6

// testsslSuiteParallel is how many go at once in a run of the whole suite,
// where other packages' tests share the two cores: starved of CPU,
// testssl.sh times out and reports a protocol "not offered".
const testsslSuiteParallel = 3

// testsslProtocols maps testssl.sh's protocol ids to scan's names.
var testsslProtocols = map[string]string{
	"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": tls10, "TLS1_1": tls11, "TLS1_2": tls12, "TLS1_3": tls13,
}

// testsslCipherProtocols maps the protocol part of -E's cipher ids
// ("cipher-tls1_2_xc02b") to scan's names.
var testsslCipherProtocols = map[string]string{
	"ssl3": "SSLv3", "tls1": tls10, "tls1_1": tls11, "tls1_2": tls12, "tls1_3": tls13,
}

// found is what one scanner found at an endpoint: accepted protocols, and
// accepted suites per protocol.
type found struct {
	protocols map[string]bool
	suites    map[string]map[uint16]bool
}

func foundByScan(r *scan.Report) found {
	f := found{protocols: map[string]bool{}, suites: map[string]map[uint16]bool{}}
	for _, p := range r.Protocols {
		if p.Supported != scan.Yes {
			continue
		}
		f.protocols[p.Name] = true
		f.suites[p.Name] = map[uint16]bool{}
		for _, s := range p.Suites {
			f.suites[p.Name][s.ID] = true
		}
	}
	return f
}

// foundByTestssl reads testssl.sh's -p -E findings. A protocol finding
// that is neither "offered" nor "not offered" (a check that did not
// complete) is returned as a problem.
func foundByTestssl(findings []testssl.Finding) (found, []string) {
	f := found{protocols: map[string]bool{}, suites: map[string]map[uint16]bool{}}
	var problems []string
	for _, fd := range findings {
		if name, ok := testsslProtocols[fd.ID]; ok {
			switch {
			case strings.HasPrefix(fd.Finding, "offered"):
				f.protocols[name] = true
			// "not offered", "not offered and downgraded to a weaker
			// protocol", "TLSv1.1 is not offered, and downgraded ..."
			case strings.Contains(fd.Finding, "not offered"):
			default:
				problems = append(problems, fmt.Sprintf("testssl.sh on %s: %q", name, fd.Finding))
			}
			continue
		}
		rest, ok := strings.CutPrefix(fd.ID, "cipher-")
		if !ok {
			continue
		}
		proto, hex, ok := strings.Cut(rest, "_x")
		name, known := testsslCipherProtocols[proto]
		id, err := strconv.ParseUint(hex, 16, 16)
		if !ok || !known || err != nil {
			problems = append(problems, fmt.Sprintf("testssl.sh finding %s: unknown cipher id", fd.ID))
			continue
		}
		if f.suites[name] == nil {
			f.suites[name] = map[uint16]bool{}
		}
		f.suites[name][uint16(id)] = true
	}
	return f, problems
}

// differences lists, as "ENDPOINT: ITEM only in SCANNER", what one of
// the two found that the other did not.
func differences(endpoint string, trail, ts found) []string {
	var out []string
	for _, p := range []string{"SSLv2", "SSLv3", tls10, tls11, tls12, tls13} {
		switch {
		case trail.protocols[p] && !ts.protocols[p]:
			out = append(out, fmt.Sprintf("%s: %s only in trail scan", endpoint, p))
		case !trail.protocols[p] && ts.protocols[p]:
			out = append(out, fmt.Sprintf("%s: %s only in testssl.sh", endpoint, p))
		}
		for id := range trail.suites[p] {
			if !ts.suites[p][id] {
				out = append(out, fmt.Sprintf("%s: %s %s only in trail scan", endpoint, p, scan.LookupSuite(id).Name))
			}
		}
		for id := range ts.suites[p] {
			if !trail.suites[p][id] {
				out = append(out, fmt.Sprintf("%s: %s %s only in testssl.sh", endpoint, p, scan.LookupSuite(id).Name))
			}
		}
	}
	slices.Sort(out)
	return out
}

// testsslEnv extends the live comparison to every endpoint of the range
// and records what testssl.sh found there in recordedPath. By default the
// suite runs testssl.sh on testsslSuite and one turn of rotation's only:
// testssl.sh is a bash script
// that forks some 2,900 processes for -p -E on the simplest endpoint, 30-34
// CPU-seconds each, so the whole range takes some 11 minutes of the 2-core
// test machine, more than scripts/test's budget allows beside the rest of
// the suite. The other endpoints are compared with the recording.
const testsslEnv = "TRAIL_SCANRANGE_TESTSSL"

// recordedPath holds testssl.sh's findings on every endpoint, from the
// last run with testsslEnv set.
const recordedPath = "testdata/testssl-recorded.json"

// recording is recordedPath's content.
type recording struct {
	Comment   string                      `json:"comment"`
	Testssl   string                      `json:"testssl"` // its version
	Recorded  string                      `json:"recorded"`
	Endpoints map[string]recordedEndpoint `json:"endpoints"`
}

// recordedEndpoint is what testssl.sh found at one endpoint: protocols as
// scan names them, and per protocol the suites, each "c02b NAME".
type recordedEndpoint struct {
	Protocols []string            `json:"protocols"`
	Suites    map[string][]string `json:"suites"`
}

func recordFound(f found) recordedEndpoint {
	r := recordedEndpoint{Suites: map[string][]string{}}
	for p := range f.protocols {
		r.Protocols = append(r.Protocols, p)
	}
	slices.Sort(r.Protocols)
	for p, ids := range f.suites {
		var list []string
		for id := range ids {
			list = append(list, fmt.Sprintf("%04x %s", id, scan.LookupSuite(id).Name))
		}
		slices.Sort(list)
		r.Suites[p] = list
	}
	return r
}

func (r recordedEndpoint) found() (found, error) {
	f := found{protocols: map[string]bool{}, suites: map[string]map[uint16]bool{}}
	for _, p := range r.Protocols {
		f.protocols[p] = true
	}
	for p, list := range r.Suites {
		f.suites[p] = map[uint16]bool{}
		for _, s := range list {
			hex, _, _ := strings.Cut(s, " ")
			id, err := strconv.ParseUint(hex, 16, 16)
			if err != nil {
				return found{}, fmt.Errorf("suite %q: %v", s, err)
			}
			f.suites[p][uint16(id)] = true
		}
	}
	return f, nil
}

// found returns testssl.sh's recorded findings at the endpoint.
func (r *recording) found(name string) (found, error) {
	re, ok := r.Endpoints[name]
	if !ok {
		return found{}, fmt.Errorf("%s: no testssl.sh findings recorded in %s; record them with %s=1", name, recordedPath, testsslEnv)
	}
	f, err := re.found()
	if err != nil {
		return found{}, fmt.Errorf("%s: %s: %v", name, recordedPath, err)
	}
	return f, nil
}

func readRecording() (*recording, error) {
	b, err := os.ReadFile(recordedPath)
	if err != nil {
		return nil, err
	}
	var r recording
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %v", recordedPath, err)
	}
	return &r, nil
}

// testsslSuite are the endpoints compared in every run of the suite: the
// hardened one (whose testssl.sh time the issue asks for beside trail
// scan's), a legacy protocol only testssl.sh's SECLEVEL=0 openssl can
// reach, and a server-enforced order.
var testsslSuite = []string{"hardened", "tls10-only", "weak-server-order"}

// testsslRotating is how many more endpoints each run of the suite runs
// testssl.sh on besides testsslSuite, in turns, so that consecutive runs
// go round the whole range and check that the recording still holds.
const testsslRotating = 3

// turnEnv names the turn to run (by default, the hours since 1970 modulo
// the number of turns), so that a run can be repeated.
const turnEnv = "TRAIL_SCANRANGE_TURN"

// rotation returns this run's turn, how many turns go round the range,
// and the turn's endpoints.
func rotation() (turn, turns int, names []string) {
	var others []string
	for _, e := range rangeEndpoints {
		if !slices.Contains(testsslSuite, e.name) {
			others = append(others, e.name)
		}
	}
	turns = (len(others) + testsslRotating - 1) / testsslRotating
	turn = int(time.Now().Unix() / 3600 % int64(turns))
	if v, err := strconv.Atoi(os.Getenv(turnEnv)); err == nil && v >= 0 {
		turn = v % turns
	}
	lo := turn * testsslRotating
	return turn, turns, others[lo:min(lo+testsslRotating, len(others))]
}

// testsslVersion is the installed testssl.sh's Debian version, or
// "unknown".
func testsslVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "testssl.sh").Output()
	if err != nil || len(out) == 0 {
		return "unknown"
	}
	return string(out)
}

// drift lists where testssl.sh's findings of this run (now) differ from
// its recorded ones (rec) at the endpoint, leaving out the suites it finds
// only in some runs (intermittent disagreements).
func drift(endpoint string, rec, now found) []string {
	var out []string
	for _, d := range differences(endpoint, rec, now) {
		key := strings.Replace(d, " only in testssl.sh", " only in trail scan", 1)
		if disagreements[key].intermittent {
			continue
		}
		d = strings.Replace(d, " only in trail scan", " in the recording, not found by testssl.sh now", 1)
		d = strings.Replace(d, " only in testssl.sh", " found by testssl.sh now, not in the recording", 1)
		out = append(out, d)
	}
	return out
}

// compareTestssl runs testssl.sh -p -E (protocols, and each protocol's
// suites) on the endpoints and compares with trail scan's reports.
func compareTestssl(t *testing.T, rs *rangeSetup, reports map[string]*scan.Report) {
	if testing.Short() {
		t.Skip("testssl.sh takes minutes; not with -short")
	}
	rec, recErr := readRecording()
	installed := testsslVersion()
	var names []string
	switch {
	case os.Getenv(testsslEnv) != "":
		// The hardened endpoint first, so that its time is measured
		// with the fewest runs beside it.
		names = []string{"hardened"}
		for _, e := range rangeEndpoints {
			if e.name != "hardened" {
				names = append(names, e.name)
			}
		}
	case recErr != nil:
		t.Fatalf("%v (record it with %s=1)", recErr, testsslEnv)
	default:
		if rec.Testssl != installed {
			// Running it on all 23 here would take the suite past its
			// budget; the live ones below check the recording.
			t.Logf("NOTE: %s was recorded with testssl.sh %s, this machine has %s; record again with %s=1",
				recordedPath, rec.Testssl, installed, testsslEnv)
		}
		turn, turns, rotating := rotation()
		names = append(slices.Clone(testsslSuite), rotating...)
		t.Logf("comparing %d of the %d endpoints with testssl.sh run now: %s, and this run's turn (%d of %d; %s=%d runs it again) %s; set %s=1 (and go test -timeout 60m) for all",
			len(names), len(rangeEndpoints), strings.Join(testsslSuite, ", "), turn, turns, turnEnv, turn, strings.Join(rotating, ", "), testsslEnv)
	}
	cmd, err := testssl.Command()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()

	// testssl.sh first connects with the openssl command, which at
	// OpenSSL 3's default security level cannot reach the range's
	// legacy endpoints (TLS 1.0 only, NULL, anonymous, 1024-bit DH), and
	// it then stops ("Your OpenSSL cannot connect"). It clears
	// OPENSSL_CONF itself, so it is given an openssl that sets it: a
	// wrapper with a configuration at SECLEVEL=0 from TLS 1.0 up.
	ossl := filepath.Join(t.TempDir(), "openssl")
	conf := ossl + ".cnf"
	if err := os.WriteFile(conf, []byte(legacyOpenSSLConf), 0o600); err != nil {
		t.Fatal(err)
	}
	opensslPath, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nOPENSSL_CONF=%s exec %s \"$@\"\n", conf, opensslPath)
	if err := os.WriteFile(ossl, []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}

	type result struct {
		scan *testssl.Scan
		err  error
	}
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	parallel := testsslParallel
	if os.Getenv(testsslEnv) == "" {
		parallel = testsslSuiteParallel // beside the rest of the suite
	}
	sem := make(chan struct{}, parallel)
	start := time.Now()
	for _, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			target := strings.TrimPrefix(rs.targets[name], "https://")
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Error(err)
				return
			}
			s, err := testssl.Run(ctx, target, testssl.Options{
				Command: cmd,
				Dir:     dir,
				Args: []string{
					"--nodns", "none",
					"--openssl", ossl,
					// Go on where testssl.sh's own first
					// connection heuristics would stop the scan
					// (an s_server that answers its sockets late);
					// what it then finds is compared like the rest.
					"--warnings", "off",
					"--connect-timeout", "10",
					"--openssl-timeout", "10",
					"-p", "-E",
				},
			})
			mu.Lock()
			results[name] = result{s, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("figure: testssl.sh -p -E on %d endpoints, %d at a time: %v", len(names), min(len(names), parallel), time.Since(start).Round(time.Second))
	if r := results["hardened"]; r.scan != nil {
		t.Logf("figure: testssl.sh -p -E on the hardened endpoint: %v", r.scan.Elapsed.Round(time.Second))
	}

	var seen []string
	compared := map[string]bool{}
	live := map[string]recordedEndpoint{}
	for _, name := range names {
		r := results[name]
		if r.err != nil {
			if r.scan != nil {
				t.Errorf("%s: %v; testssl.sh said:\n%s", name, r.err, r.scan.Report)
			} else {
				t.Errorf("%s: %v", name, r.err)
			}
			continue
		}
		ts, problems := foundByTestssl(r.scan.Findings)
		for _, p := range problems {
			t.Errorf("%s: %s", name, p)
		}
		live[name] = recordFound(ts)
		compared[name] = true
		seen = append(seen, differences(name, foundByScan(reports[name]), ts)...)
	}

	if os.Getenv(testsslEnv) != "" {
		if !t.Failed() {
			writeRecording(t, live)
		}
	} else {
		// Where testssl.sh ran now, it must still find what it
		// recorded: else the recording the other endpoints are
		// compared with is stale.
		for name, l := range live {
			re, err := rec.found(name)
			if err != nil {
				t.Error(err)
				continue
			}
			lf, _ := l.found()
			for _, d := range drift(name, re, lf) {
				t.Errorf("%s (record again with %s=1)", d, testsslEnv)
			}
		}
		// The endpoints testssl.sh did not run on now: trail scan's
		// findings of this run against testssl.sh's recorded ones.
		for _, e := range rangeEndpoints {
			if compared[e.name] {
				continue
			}
			ts, err := rec.found(e.name)
			if err != nil {
				t.Error(err)
				continue
			}
			compared[e.name] = true
			seen = append(seen, differences(e.name, foundByScan(reports[e.name]), ts)...)
		}
		t.Logf("compared %d endpoints with testssl.sh run now and %d with its findings recorded on %s (testssl.sh %s)",
			len(live), len(compared)-len(live), rec.Recorded, rec.Testssl)
	}
	for _, d := range seen {
		if _, ok := disagreements[d]; !ok {
			t.Errorf("disagreement not explained in docs/scan.md: %s", d)
		} else {
			t.Logf("known disagreement: %s", d)
		}
	}
	for d, why := range disagreements {
		name, _, _ := strings.Cut(d, ":")
		if compared[name] && !why.intermittent && !slices.Contains(seen, d) {
			t.Errorf("listed disagreement no longer seen; remove it here and in docs/scan.md: %s", d)
		}
	}
}

// writeRecording replaces recordedPath with testssl.sh's findings of this
// run, on every endpoint.
func writeRecording(t *testing.T, live map[string]recordedEndpoint) {
	version := testsslVersion()
	rec := recording{
		Comment: "testssl.sh -p -E on every endpoint of the range (internal/scan/scanrange). Written by " +
			testsslEnv + "=1 go test -timeout 60m -run TestRange ./internal/scan/scanrange; " +
			"the suite compares trail scan with it on the endpoints where it does not run testssl.sh.",
		Testssl:   version,
		Recorded:  time.Now().UTC().Format(time.DateOnly),
		Endpoints: live,
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordedPath, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded testssl.sh's findings on %d endpoints in %s", len(live), recordedPath)
}

// TestRecording checks the recording the suite compares most endpoints
// with: one entry per endpoint of the range, each parsing back to what it
// says, and a suite missing from it seen as a disagreement.
func TestRecording(t *testing.T) {
	rec, err := readRecording()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rangeEndpoints {
		f, err := rec.found(e.name)
		if err != nil {
			t.Error(err)
			continue
		}
		re := rec.Endpoints[e.name]
		if back := recordFound(f); !slices.Equal(back.Protocols, re.Protocols) || len(back.Suites) != len(re.Suites) {
			t.Errorf("%s: recorded %+v reads back as %+v", e.name, re, back)
		}
		if len(differences(e.name, f, f)) != 0 {
			t.Errorf("%s: differs from itself", e.name)
		}
	}
	if len(rec.Endpoints) != len(rangeEndpoints) {
		t.Errorf("%s holds %d endpoints, the range has %d", recordedPath, len(rec.Endpoints), len(rangeEndpoints))
	}
	f, err := rec.found("hardened")
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := rec.found("hardened")
	delete(ts.suites[tls13], 0x1301)
	want := []string{"hardened: TLS 1.3 TLS_AES_128_GCM_SHA256 only in trail scan"}
	if got := differences("hardened", f, ts); !slices.Equal(got, want) {
		t.Errorf("with TLS_AES_128_GCM_SHA256 removed from the recording, differences = %q, want %q", got, want)
	}
}

// TestRotation checks that the turns go round every endpoint that
// testsslSuite leaves out, each once, and that turnEnv picks the turn.
func TestRotation(t *testing.T) {
	t.Setenv(turnEnv, "0")
	_, turns, _ := rotation()
	seen := map[string]int{}
	for k := range turns {
		t.Setenv(turnEnv, strconv.Itoa(k))
		turn, _, names := rotation()
		if turn != k || len(names) == 0 || len(names) > testsslRotating {
			t.Errorf("%s=%d: turn %d with %q, want turn %d with 1 to %d endpoints", turnEnv, k, turn, names, k, testsslRotating)
		}
		t.Logf("turn %d: %s", k, strings.Join(names, ", "))
		for _, n := range names {
			seen[n]++
		}
	}
	for _, e := range rangeEndpoints {
		want := 1
		if slices.Contains(testsslSuite, e.name) {
			want = 0
		}
		if seen[e.name] != want {
			t.Errorf("%s is in %d turns, want %d", e.name, seen[e.name], want)
		}
	}
}

// TestDrift checks the comparison of testssl.sh's findings now with its
// recorded ones: a change is reported, a suite it finds only in some runs
// is not.
func TestDrift(t *testing.T) {
	rec, err := readRecording()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hardened", "rc4"} {
		f, err := rec.found(name)
		if err != nil {
			t.Fatal(err)
		}
		if d := drift(name, f, f); len(d) != 0 {
			t.Errorf("%s: drift from itself: %q", name, d)
		}
	}
	rc4, _ := rec.found("rc4")
	now, _ := rec.found("rc4")
	delete(now.suites[tls12], 0x0005) // TLS_RSA_WITH_RC4_128_SHA, found in some runs only
	if d := drift("rc4", rc4, now); len(d) != 0 {
		t.Errorf("rc4 without an intermittent suite: drift %q, want none", d)
	}
	hardened, _ := rec.found("hardened")
	now, _ = rec.found("hardened")
	delete(now.suites[tls13], 0x1301)
	want := []string{"hardened: TLS 1.3 TLS_AES_128_GCM_SHA256 in the recording, not found by testssl.sh now"}
	if d := drift("hardened", hardened, now); !slices.Equal(d, want) {
		t.Errorf("hardened without TLS_AES_128_GCM_SHA256: drift %q, want %q", d, want)
	}
	now, _ = rec.found("hardened")
	now.protocols[tls10] = true
	want = []string{"hardened: TLS 1.0 found by testssl.sh now, not in the recording"}
	if d := drift("hardened", hardened, now); !slices.Equal(d, want) {
		t.Errorf("hardened with TLS 1.0: drift %q, want %q", d, want)
	}
}
