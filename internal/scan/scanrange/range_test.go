//go:build linux

package scanrange

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/scan"
	"github.com/trailaudit/trail/internal/servertest"
)

func TestMain(m *testing.M) {
	if code, done := inNamespace(); done {
		if code < 0 { // killed by a signal
			code = 1
		}
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// certs are the range's leaf certificates, by name.
type certs map[string]leaf

// endpoint is one server of the range, its configuration and what a scan
// must find there.
type endpoint struct {
	name string
	// start starts the server and returns what to scan: HOST:PORT or an
	// https:// URL.
	start func(t *testing.T, c certs, dir string) string
	want  want
}

// want is what a scan of an endpoint must report. Protocols and grade
// are always compared; the rest when set.
type want struct {
	protocols []string            // accepted, as scan names them
	suites    map[string][]string // per protocol, the accepted suites; in order when orders says "server"
	orders    map[string]string   // per protocol, Protocol.Order
	grade     string              // Grade.Letter
	ignoring  string              // Grade.IgnoringTrust, for T and M
	caps      []string            // each a part of some cap's reason
	// check makes further assertions.
	check func(t *testing.T, r *scan.Report)
}

func openssl(cert string, args ...string) func(t *testing.T, c certs, dir string) string {
	return func(t *testing.T, c certs, dir string) string { return startOpenSSL(t, c[cert], false, args) }
}

func gnutls(cert, priority string) func(t *testing.T, c certs, dir string) string {
	return func(t *testing.T, c certs, dir string) string { return startGnuTLS(t, c[cert], priority) }
}

func nginx(cert string, leafOnly bool, directives string) func(t *testing.T, c certs, dir string) string {
	return func(t *testing.T, c certs, dir string) string {
		port := freePort(t)
		startNginx(t, []nginxServer{{port: port, leaf: c[cert], leafOnly: leafOnly, directives: directives}})
		return "https://127.0.0.1:" + port
	}
}

const (
	tls10 = "TLS 1.0"
	tls11 = "TLS 1.1"
	tls12 = "TLS 1.2"
	tls13 = "TLS 1.3"
)

var tls13Default = []string{"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}

// rangeEndpoints is the range. Every openssl s_server runs at
// @SECLEVEL=0 so that OpenSSL 3 lets it serve what it otherwise refuses.
// docs/scan.md lists the endpoints and why some weaknesses have none.
var rangeEndpoints = []endpoint{
	{
		name:  "tls10-only",
		start: openssl("rsa2048", "-tls1", "-cipher", "ECDHE-RSA-AES128-SHA:AES128-SHA:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls10},
			suites:    map[string][]string{tls10: {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"}},
			grade:     "C",
			caps:      []string{"neither TLS 1.2 nor TLS 1.3", "TLS 1.0 or TLS 1.1", "no AEAD"},
		},
	},
	{
		name:  "tls11-only",
		start: openssl("rsa2048", "-tls1_1", "-cipher", "ECDHE-RSA-AES256-SHA:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls11},
			suites:    map[string][]string{tls11: {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"}},
			grade:     "C",
			caps:      []string{"neither TLS 1.2 nor TLS 1.3", "TLS 1.0 or TLS 1.1"},
		},
	},
	{
		name:  "all-versions",
		start: openssl("rsa2048", "-min_protocol", "TLSv1", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls10, tls11, tls12, tls13},
			suites: map[string][]string{
				tls10: {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"},
				tls11: {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"},
				tls12: {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
				tls13: tls13Default,
			},
			grade: "B",
			caps:  []string{"TLS 1.0 or TLS 1.1"},
		},
	},
	{
		name:  "rsa-kx-only",
		start: openssl("rsa2048", "-no_tls1_3", "-cipher", "kRSA+AESGCM:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384"}},
			grade:     "B",
			caps:      []string{"no forward-secret suite"},
		},
	},
	{
		name: "dhe-1024",
		start: func(t *testing.T, c certs, dir string) string {
			return startOpenSSL(t, c["rsa2048"], false, []string{"-no_tls1_3", "-dhparam", dhParams(t, dir, 1024), "-cipher", "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"})
		},
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"}},
			grade:     "B",
			caps:      []string{"DH parameters of 1024 bits", "key exchange strength under 2048 bits: 1024-bit DH"},
			check: func(t *testing.T, r *scan.Report) {
				if r.DHBits != 1024 {
					t.Errorf("DH bits = %d, want 1024", r.DHBits)
				}
			},
		},
	},
	{
		name:  "null",
		start: openssl("rsa2048", "-tls1_2", "-cipher", "eNULL:!aNULL:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			grade:     "F",
			caps:      []string{"suites without encryption"},
			check: func(t *testing.T, r *scan.Report) {
				for _, s := range suitesOf(r, tls12) {
					if !strings.Contains(s, "NULL") {
						t.Errorf("suite %s accepted, want NULL suites only", s)
					}
				}
			},
		},
	},
	{
		name:  "anon-dh",
		start: openssl("rsa2048", "-tls1_2", "-cipher", "ADH-AES128-GCM-SHA256:ADH-AES256-SHA:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_DH_anon_WITH_AES_128_GCM_SHA256", "TLS_DH_anon_WITH_AES_256_CBC_SHA"}},
			grade:     "F",
			caps:      []string{"anonymous suites"},
		},
	},
	{
		name:  "cbc-only",
		start: openssl("rsa2048", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"}},
			grade:     "B",
			caps:      []string{"no AEAD suite"},
		},
	},
	{
		name:  "rc4",
		start: gnutls("rsa2048", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+ARCFOUR-128:+AES-128-GCM:-KX-ALL:+RSA:+ECDHE-RSA"),
		want: want{
			protocols: []string{tls12},
			suites: map[string][]string{tls12: {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
				"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_SHA"}},
			grade: "C",
			caps:  []string{"RC4 is accepted"},
		},
	},
	{
		name:  "3des",
		start: gnutls("rsa2048", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+3DES-CBC:+AES-128-GCM:-KX-ALL:+ECDHE-RSA"),
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}},
			grade:     "C",
			caps:      []string{"64-bit block cipher"},
		},
	},
	{
		name: "weak-server-order",
		start: nginx("rsa2048", false, `    ssl_protocols TLSv1.2;
    ssl_ciphers AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384:@SECLEVEL=0;
    ssl_prefer_server_ciphers on;`),
		want: want{
			protocols: []string{tls12},
			suites:    map[string][]string{tls12: {"TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}},
			orders:    map[string]string{tls12: "server"},
			grade:     "A-",
			caps:      []string{"suites without forward secrecy"},
		},
	},
	{
		name:  "p384-only",
		start: openssl("rsa2048", "-groups", "P-384", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12, tls13},
			suites:    map[string][]string{tls12: {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}, tls13: tls13Default},
			grade:     "A+",
			check:     groupsAre([]string{"secp384r1"}, []string{"secp384r1"}),
		},
	},
	{
		name:  "ffdhe-only-tls13",
		start: openssl("rsa2048", "-tls1_3", "-groups", "ffdhe2048:ffdhe3072"),
		want: want{
			protocols: []string{tls13},
			suites:    map[string][]string{tls13: tls13Default},
			grade:     "T",
			ignoring:  "A+",
			caps:      []string{"the certificate could not be read"},
			check:     groupsAre([]string{"ffdhe2048", "ffdhe3072"}, nil),
		},
	},
	{
		name:  "rsa-1024",
		start: openssl("rsa1024", "-no_tls1_3", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			grade:     "B",
			caps:      []string{"key exchange strength under 2048 bits: the certificate's 1024-bit RSA key"},
		},
	},
	{
		name:  "rsa-512",
		start: openssl("rsa512", "-no_tls1_3", "-cipher", "AES128-GCM-SHA256:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12},
			grade:     "F",
			caps:      []string{"the certificate key is 512-bit RSA"},
		},
	},
	{
		name:  "sha1-signature",
		start: openssl("sha1", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"),
		want: want{
			protocols: []string{tls12, tls13},
			grade:     "T",
			ignoring:  "A+",
			caps:      []string{"signed with SHA-1", "not trusted"},
			check: func(t *testing.T, r *scan.Report) {
				if c := r.Certificate; c == nil || c.ChainNote != "" {
					t.Errorf("certificate = %+v, want no note on the chain (nothing is missing)", c)
				}
			},
		},
	},
	{
		name:  "expired",
		start: openssl("expired", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
		want:  want{protocols: []string{tls12, tls13}, grade: "T", ignoring: "A+", caps: []string{"has expired"}},
	},
	{
		name:  "not-yet-valid",
		start: openssl("notyet", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
		want:  want{protocols: []string{tls12, tls13}, grade: "T", ignoring: "A+", caps: []string{"not yet valid"}},
	},
	{
		name:  "wrong-host",
		start: openssl("wronghost", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
		want:  want{protocols: []string{tls12, tls13}, grade: "M", ignoring: "A+", caps: []string{"does not match"}},
	},
	{
		name:  "self-signed",
		start: openssl("selfsigned", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
		want: want{
			protocols: []string{tls12, tls13},
			grade:     "T",
			ignoring:  "A+",
			caps:      []string{"not trusted"},
			check: func(t *testing.T, r *scan.Report) {
				if c := r.Certificate; c == nil || !c.Chain[0].SelfSigned || c.ChainNote != "" {
					t.Errorf("certificate = %+v, want a self-signed leaf and no note on a missing intermediate", c)
				}
			},
		},
	},
	{
		name: "incomplete-chain",
		start: nginx("rsa2048", true, `    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256;`),
		want: want{
			protocols: []string{tls12, tls13},
			grade:     "T",
			ignoring:  "A", // no HSTS
			caps:      []string{"not trusted"},
			check: func(t *testing.T, r *scan.Report) {
				if c := r.Certificate; c == nil || !strings.Contains(c.ChainNote, "intermediate may be missing") {
					t.Errorf("certificate = %+v, want a note on a missing intermediate", c)
				}
			},
		},
	},
	{
		name: "hardened",
		start: nginx("ecdsa", false, `    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_prefer_server_ciphers off;
    add_header Strict-Transport-Security "max-age=63072000" always;`),
		want: want{
			protocols: []string{tls12, tls13},
			suites: map[string][]string{
				tls12: {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
				tls13: tls13Default,
			},
			grade: "A+",
			check: func(t *testing.T, r *scan.Report) {
				groupsAre([]string{"x25519", "secp256r1", "secp384r1"}, []string{"x25519", "secp256r1", "secp384r1"})(t, r)
				for _, m := range r.Mozilla {
					if m.Profile == "intermediate" && !m.Compliant {
						t.Errorf("Mozilla intermediate deviations: %v", m.Deviations)
					}
				}
			},
		},
	},
	{
		name: "trail",
		start: func(t *testing.T, c certs, dir string) string {
			srv := servertest.Start(t, servertest.Options{})
			copyPEM(t, srv.PKI.CACertificate(), dir+"/trail-ca.crt")
			return srv.URL
		},
		want: want{
			protocols: []string{tls12, tls13},
			grade:     "A+",
			check: func(t *testing.T, r *scan.Report) {
				if r.HSTS.Checked != scan.Yes || r.HSTS.MaxAge < 63072000 {
					t.Errorf("HSTS = %+v, want two years", r.HSTS)
				}
			},
		},
	},
}

func copyPEM(t *testing.T, cert *x509.Certificate, path string) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func groupsAre(tls13Groups, tls12Groups []string) func(t *testing.T, r *scan.Report) {
	return func(t *testing.T, r *scan.Report) {
		t.Helper()
		var g13, g12 []string
		for _, g := range r.Groups {
			if g.TLS13 == scan.Yes {
				g13 = append(g13, g.Name)
			}
			if g.TLS12 == scan.Yes {
				g12 = append(g12, g.Name)
			}
		}
		if !slices.Equal(g13, tls13Groups) || !slices.Equal(g12, tls12Groups) {
			t.Errorf("groups: TLS 1.3 %v, TLS 1.2 %v; want %v and %v", g13, g12, tls13Groups, tls12Groups)
		}
	}
}

func suitesOf(r *scan.Report, protocol string) []string {
	var names []string
	for _, p := range r.Protocols {
		if p.Name == protocol {
			for _, s := range p.Suites {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

// needRange skips the test (fails it when CI is set) if the range cannot
// be built here.
func needRange(t *testing.T) {
	t.Helper()
	problem := ""
	if os.Getenv(netnsEnv) == "" {
		problem = "the scan range needs a private network namespace: run as root with unshare(1) and ip(8)"
	}
	for _, cmd := range []string{"openssl", "nginx", "gnutls-serv"} {
		if _, err := exec.LookPath(cmd); err != nil && problem == "" {
			problem = cmd + " is not installed (Debian: openssl, nginx, gnutls-bin; scripts/test installs them)"
		}
	}
	if problem == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(problem)
	}
	t.Skip(problem)
}

// rangeSetup is the built range: addresses to scan and the trust.
type rangeSetup struct {
	targets map[string]string // endpoint name → HOST:PORT or URL
	roots   []*x509.Certificate
	dir     string
}

func buildRange(t *testing.T) *rangeSetup {
	t.Helper()
	start := time.Now()
	p := newPKI(t)
	now := time.Now()
	specs := map[string]leafOpts{
		"rsa2048":    {key: "rsa:2048"},
		"rsa1024":    {key: "rsa:1024"},
		"rsa512":     {key: "rsa:512"},
		"ecdsa":      {key: "ec:P-256"},
		"sha1":       {key: "rsa:2048", md: "sha1"},
		"expired":    {key: "rsa:2048", start: now.AddDate(-1, 0, 0), end: now.AddDate(0, 0, -30)},
		"notyet":     {key: "rsa:2048", start: now.AddDate(0, 0, 30), end: now.AddDate(0, 0, 120)},
		"wronghost":  {key: "rsa:2048", san: "DNS:elsewhere.example"},
		"selfsigned": {key: "rsa:2048", selfSigned: true},
	}
	c := certs{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, o := range specs {
		wg.Go(func() {
			l := p.issue(t, name, o)
			mu.Lock()
			c[name] = l
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	rootPEM, err := os.ReadFile(p.root)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(rootPEM)
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rs := &rangeSetup{targets: map[string]string{}, roots: []*x509.Certificate{root}, dir: p.dir}
	for _, e := range rangeEndpoints {
		rs.targets[e.name] = e.start(t, c, p.dir)
	}
	trailCA, err := os.ReadFile(p.dir + "/trail-ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = pem.Decode(trailCA)
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rs.roots = append(rs.roots, ca)
	t.Logf("range of %d endpoints built in %v", len(rangeEndpoints), time.Since(start).Round(time.Millisecond))
	return rs
}

func (rs *rangeSetup) scan(t *testing.T, name string) *scan.Report {
	t.Helper()
	tg, err := scan.ParseTarget(rs.targets[name])
	if err != nil {
		t.Fatal(err)
	}
	r := scan.Scan(t.Context(), tg, scan.Options{Timeout: 10 * time.Second, Roots: rs.roots, NoSystemRoots: true})
	r.Target = rs.targets[name]
	return r
}

// TestRange builds the range, scans every endpoint (one alone, then all
// at once, as trail scan does with several endpoints) and checks each
// report against the table; then, unless -short, compares with
// testssl.sh.
func TestRange(t *testing.T) {
	needRange(t)
	rs := buildRange(t)

	start := time.Now()
	hardened := rs.scan(t, "hardened")
	t.Logf("figure: scan of the hardened endpoint (nginx) alone: %v, %d probes", time.Since(start).Round(time.Millisecond), hardened.Probes)

	reports := map[string]*scan.Report{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start = time.Now()
	for _, e := range rangeEndpoints {
		wg.Go(func() {
			r := rs.scan(t, e.name)
			mu.Lock()
			reports[e.name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("figure: scan of all %d endpoints in parallel: %v", len(rangeEndpoints), time.Since(start).Round(time.Millisecond))

	for _, e := range rangeEndpoints {
		t.Run(e.name, func(t *testing.T) { checkReport(t, reports[e.name], e.want) })
	}

	t.Run("testssl", func(t *testing.T) { compareTestssl(t, rs, reports) })
}

func checkReport(t *testing.T, r *scan.Report, w want) {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("scan of %s: %s", r.Target, r.Error)
	}
	var accepted []string
	for _, p := range r.Protocols {
		switch p.Supported {
		case scan.Yes:
			accepted = append(accepted, p.Name)
		case scan.No:
		default:
			t.Errorf("%s: %s (%s)", p.Name, p.Supported, p.Detail)
		}
		if p.Incomplete != "" {
			t.Errorf("%s suites incomplete: %s", p.Name, p.Incomplete)
		}
	}
	if !slices.Equal(accepted, w.protocols) {
		t.Errorf("protocols = %v, want %v", accepted, w.protocols)
	}
	for proto, want := range w.suites {
		got := suitesOf(r, proto)
		if w.orders[proto] != "server" {
			got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s suites = %v, want %v", proto, got, want)
		}
	}
	for proto, want := range w.orders {
		for _, p := range r.Protocols {
			if p.Name == proto && p.Order != want {
				t.Errorf("%s order = %q, want %q", proto, p.Order, want)
			}
		}
	}
	g := r.Grade
	if g.Letter != w.grade || g.IgnoringTrust != w.ignoring {
		t.Errorf("grade = %s (ignoring trust %q), want %s (%q); caps %v; warnings %v", g.Letter, g.IgnoringTrust, w.grade, w.ignoring, g.Caps, g.Warnings)
	}
	for _, c := range w.caps {
		if !slices.ContainsFunc(g.Caps, func(cp scan.Cap) bool { return strings.Contains(cp.Reason, c) }) {
			t.Errorf("no cap mentioning %q in %v", c, g.Caps)
		}
	}
	if w.check != nil {
		w.check(t, r)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("report: %s", summary(r))
	}
}

func summary(r *scan.Report) string {
	var b strings.Builder
	for _, p := range r.Protocols {
		if p.Supported == scan.Yes {
			b.WriteString(p.Name + " [" + p.Order + "]: " + strings.Join(suitesOf(r, p.Name), " ") + "; ")
		}
	}
	for _, g := range r.Groups {
		if g.TLS12 == scan.Yes || g.TLS13 == scan.Yes {
			b.WriteString("group " + g.Name + " 1.3=" + string(g.TLS13) + " 1.2=" + string(g.TLS12) + "; ")
		}
	}
	if c := r.Certificate; c != nil {
		b.WriteString("cert source " + c.Source + " trust " + c.TrustError + " note " + c.ChainNote + "; ")
	}
	for _, c := range r.Checks {
		b.WriteString(c.ID + "=" + string(c.Result) + " (" + c.Detail + "); ")
	}
	b.WriteString("grade " + r.Grade.Letter + " (" + r.Grade.IgnoringTrust + ")")
	for _, c := range r.Grade.Caps {
		b.WriteString("; cap " + c.Max + ": " + c.Reason)
	}
	for _, w := range r.Grade.Warnings {
		b.WriteString("; warning: " + w)
	}
	return b.String()
}
