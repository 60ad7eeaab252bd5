package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/scan"
)

const scanHelp = `Usage: trail scan [-json] [-min-grade G] [-profile P] [-cafile FILE]... ENDPOINT...

Grades the TLS configuration of each ENDPOINT (HOST:PORT, HOST for port
443, or an https:// URL): the protocols from SSLv2 to TLS 1.3, every cipher
suite accepted in each and the server's order, key exchange groups and DH
parameter sizes, the certificate chain (trust, name, dates, key, signature,
order, completeness, OCSP stapling, SCTs), HSTS for HTTPS endpoints, and
secure renegotiation, compression, TLS_FALLBACK_SCSV and Heartbleed. The
grade follows the SSL Labs rating guide; compliance with Mozilla's
intermediate and modern profiles is listed as deviations. The rules are in
docs/scan.md.

Endpoints are scanned concurrently; each probe is bounded by -timeout, and
a timeout is reported as a timeout, never as "not supported".

With -record, the results are also appended to a trail log, one event
(action tls.scan) per endpoint, as tamper-evident evidence; -cafile is the
trust for the scanned endpoints, -cacert the trust for the log's server.

Exit status: 0 when every endpoint was scanned and meets -min-grade and
-profile; 1 when one is unreachable, is not TLS, grades below -min-grade
(M and T grades are below every grade) or deviates from -profile; 2 for
a usage error.

Examples:
  trail scan example.com
  trail scan https://logs.internal:8443 10.0.0.5:6514
  trail scan -cafile trail-data/pki/ca.crt -min-grade A localhost:8443
  trail scan -json -profile intermediate localhost:8443
  trail scan -record -cafile trail-data/pki/ca.crt localhost:8443
` + clientHelp + `
Flags:
`

func init() { commands["scan"] = runScan }

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scan", stderr, scanHelp)
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	minGrade := fs.String("min-grade", "", "exit 1 if an endpoint grades below `GRADE` (A+, A, A-, B, C, D, E, F)")
	profile := fs.String("profile", "", "exit 1 if an endpoint deviates from Mozilla's `PROFILE`: intermediate or modern")
	var cafiles stringList
	fs.Var(&cafiles, "cafile", "trust the CA certificates in `FILE` (PEM) besides the system roots; repeatable")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each probe (connect, hello, answer)")
	conc := fs.Int("c", 4, "endpoints scanned at once")
	record := fs.Bool("record", false, "append each endpoint's result to a trail log as an event (see Connection)")
	cf := addClientFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"scan: no endpoint given (run \"trail scan -h\")"}
	}
	if *minGrade != "" && !scan.ValidGrade(*minGrade) {
		return usageError{fmt.Sprintf("-min-grade %q: want one of A+, A, A-, B, C, D, E, F", *minGrade)}
	}
	if *profile != "" && *profile != "intermediate" && *profile != "modern" {
		return usageError{fmt.Sprintf("-profile %q: want intermediate or modern", *profile)}
	}
	if *timeout <= 0 {
		return usageError{"-timeout must be positive"}
	}
	if *conc < 1 {
		return usageError{"-c must be at least 1"}
	}
	if err := cf.check(); err != nil {
		return err
	}
	var targets []scan.Target
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") {
			return usageError{fmt.Sprintf("scan: flag %s after an endpoint: put flags first", a)}
		}
		t, err := scan.ParseTarget(a)
		if err != nil {
			return usageError{err.Error()}
		}
		targets = append(targets, t)
	}
	opts := scan.Options{Timeout: *timeout}
	for _, f := range cafiles {
		certs, err := readCAFile(f)
		if err != nil {
			return err
		}
		opts.Roots = append(opts.Roots, certs...)
	}

	reports := make([]*scan.Report, len(targets))
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			reports[i] = scan.Scan(ctx, t, opts)
			reports[i].Target = fs.Arg(i)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	var failures []string
	for _, r := range reports {
		switch {
		case r.Error != "":
			failures = append(failures, fmt.Sprintf("%s: %s", r.Target, r.Error))
		case *minGrade != "" && !scan.MeetsGrade(r.Grade.Letter, *minGrade):
			failures = append(failures, fmt.Sprintf("%s: grade %s is below -min-grade %s", r.Target, r.Grade.Letter, *minGrade))
		}
		if *profile != "" && r.Error == "" {
			for _, c := range r.Mozilla {
				if c.Profile == *profile && !c.Compliant {
					failures = append(failures, fmt.Sprintf("%s: %d deviation(s) from Mozilla %s", r.Target, len(c.Deviations), *profile))
				}
			}
		}
	}
	var recorded []recordedScan
	var recordErr error
	if *record {
		recorded, recordErr = recordScans(ctx, cf, reports, failures)
		if recordErr != nil {
			failures = append(failures, recordErr.Error())
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Schema    int            `json:"schema"`
			OK        bool           `json:"ok"`
			Failures  []string       `json:"failures"`
			Endpoints []*scan.Report `json:"endpoints"`
			Recorded  []recordedScan `json:"recorded,omitempty"`
		}{1, len(failures) == 0, append([]string{}, failures...), reports, recorded})
	} else {
		for _, r := range recorded {
			fmt.Fprintf(stderr, "trail: recorded the scan of %s at index %d of %s\n", r.Target, r.Index, r.Log)
		}
		for i, r := range reports {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printReport(stdout, r)
		}
		for _, f := range failures {
			fmt.Fprintf(stderr, "trail: %s\n", f)
		}
	}
	if len(failures) > 0 {
		return errReported
	}
	return nil
}

// recordedScan is where a scan's event went.
type recordedScan struct {
	Target string `json:"target"`
	Log    string `json:"log"`
	Index  int64  `json:"index"`
}

// recordScans appends one event per endpoint to the log the connection
// flags name, in one request.
func recordScans(ctx context.Context, cf *clientFlags, reports []*scan.Report, failures []string) ([]recordedScan, error) {
	c, err := cf.newClient(false)
	if err != nil {
		return nil, fmt.Errorf("couldn't record the results: %w", err)
	}
	var events []json.RawMessage
	for _, r := range reports {
		e, err := scanEvent(r, failures)
		if err != nil {
			return nil, fmt.Errorf("couldn't record the scan of %s: %w", r.Target, err)
		}
		events = append(events, e)
	}
	appended, err := c.Append(ctx, events...)
	if err != nil {
		return nil, fmt.Errorf("couldn't record the results in %s: %w", c.URL(), err)
	}
	var out []recordedScan
	for i, a := range appended {
		out = append(out, recordedScan{Target: reports[i].Target, Log: c.URL(), Index: a.Index})
	}
	return out, nil
}

// scanEvent is the audit event of one endpoint's scan: action tls.scan on
// the endpoint, outcome failure when it could not be scanned or fell short
// of -min-grade or -profile, and a summary of the report as details (the
// full report can exceed an event's 64 KiB of details).
func scanEvent(r *scan.Report, failures []string) (json.RawMessage, error) {
	d := scanSummary{Grade: r.Grade.Letter, IgnoringTrust: r.Grade.IgnoringTrust, Score: r.Grade.Score,
		Error: r.Error, Seconds: r.Seconds, Protocols: map[string][]string{}, DHBits: r.DHBits,
		HSTSMaxAge: r.HSTS.MaxAge, Checks: map[string]scan.Status{}, Mozilla: map[string][]string{}}
	for _, p := range r.Protocols {
		if p.Supported != scan.Yes {
			continue
		}
		names := []string{}
		for _, s := range p.Suites {
			names = append(names, s.Name)
		}
		names = append(names, p.SSL2Ciphers...)
		d.Protocols[p.Name] = names
	}
	for _, g := range r.Groups {
		if g.TLS13 == scan.Yes || g.TLS12 == scan.Yes {
			d.Groups = append(d.Groups, g.Name)
		}
	}
	if c := r.Certificate; c != nil && len(c.Chain) > 0 {
		d.Certificate = &certSummary{SHA256: c.Chain[0].SHA256, Subject: c.Chain[0].Subject, NotAfter: c.Chain[0].NotAfter,
			Trusted: c.Trusted, HostnameOK: c.HostnameOK}
	}
	for _, c := range r.Checks {
		d.Checks[c.ID] = c.Result
	}
	for _, c := range r.Grade.Caps {
		d.Caps = append(d.Caps, c.Max+": "+c.Reason)
	}
	d.Warnings = r.Grade.Warnings
	for _, m := range r.Mozilla {
		d.Mozilla[m.Profile] = m.Deviations
	}
	details, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	e := event.Event{
		ID:       fmt.Sprintf("scan %s %s", r.Address, r.Started.Format(time.RFC3339Nano)),
		Time:     r.Started,
		Actor:    event.Actor{ID: "trail scan", Type: "service"},
		Action:   "tls.scan",
		Resource: event.Resource{Type: "endpoint", ID: r.Target},
		Outcome:  event.Success,
		Reason:   "grade " + r.Grade.Letter,
		Details:  details,
	}
	if r.Error != "" {
		e.Reason = r.Error
	}
	for _, f := range failures {
		if strings.HasPrefix(f, r.Target+": ") {
			e.Outcome, e.Reason = event.Failure, strings.TrimPrefix(f, r.Target+": ")
			break
		}
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// scanSummary is the details of a tls.scan event.
type scanSummary struct {
	Grade         string                 `json:"grade,omitempty"`
	IgnoringTrust string                 `json:"ignoring_trust,omitempty"`
	Score         int                    `json:"score"`
	Error         string                 `json:"error,omitempty"`
	Seconds       float64                `json:"seconds"`
	Protocols     map[string][]string    `json:"protocols"`
	Groups        []string               `json:"groups,omitempty"`
	DHBits        int                    `json:"dh_bits,omitempty"`
	Certificate   *certSummary           `json:"certificate,omitempty"`
	HSTSMaxAge    int64                  `json:"hsts_max_age"`
	Checks        map[string]scan.Status `json:"checks"`
	Caps          []string               `json:"caps,omitempty"`
	Warnings      []string               `json:"warnings,omitempty"`
	Mozilla       map[string][]string    `json:"mozilla"`
}

type certSummary struct {
	SHA256     string    `json:"sha256"`
	Subject    string    `json:"subject"`
	NotAfter   time.Time `json:"not_after"`
	Trusted    bool      `json:"trusted"`
	HostnameOK bool      `json:"hostname_ok"`
}

// readCAFile reads the PEM certificates in path.
func readCAFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-cafile: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("-cafile %s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("-cafile %s: no PEM certificate in it", path)
	}
	return certs, nil
}

func yesNo(s scan.Status) string {
	switch s {
	case scan.Yes:
		return "yes"
	case scan.No:
		return "no"
	}
	return string(s)
}

// printReport writes one endpoint's report for people.
func printReport(w io.Writer, r *scan.Report) {
	fmt.Fprintf(w, "%s", r.Target)
	if r.Error != "" {
		fmt.Fprintf(w, "  NOT SCANNED: %s\n", r.Error)
		return
	}
	g := r.Grade
	fmt.Fprintf(w, "  grade %s", g.Letter)
	if g.IgnoringTrust != "" {
		fmt.Fprintf(w, " (%s if trust is ignored)", g.IgnoringTrust)
	}
	fmt.Fprintf(w, "  score %d (protocol %d, key exchange %d, cipher %d)  %.2f s, %d probes\n",
		g.Score, g.Protocol, g.KeyExchange, g.Cipher, r.Seconds, r.Probes)

	fmt.Fprintf(w, "  protocols    ")
	for i := len(r.Protocols) - 1; i >= 0; i-- {
		p := r.Protocols[i]
		fmt.Fprintf(w, "%s %s", p.Name, yesNo(p.Supported))
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
	}
	fmt.Fprintln(w)
	for i := len(r.Protocols) - 1; i >= 0; i-- {
		p := r.Protocols[i]
		if p.Supported == scan.Timeout || p.Supported == scan.Failed {
			fmt.Fprintf(w, "    %s: %s\n", p.Name, p.Detail)
		}
		if p.Supported != scan.Yes {
			continue
		}
		if len(p.SSL2Ciphers) > 0 {
			fmt.Fprintf(w, "  %s ciphers: %s\n", p.Name, strings.Join(p.SSL2Ciphers, ", "))
		}
		if len(p.Suites) == 0 {
			continue
		}
		order := ""
		switch p.Order {
		case "server":
			order = " (server's order)"
		case "client":
			order = " (follows the client's order)"
		case "mixed":
			order = " (order: server's, but follows the client for some)"
		}
		fmt.Fprintf(w, "  %s suites%s:\n", p.Name, order)
		for _, s := range p.Suites {
			var tags []string
			if s.FS {
				tags = append(tags, "FS")
			}
			if s.AEAD {
				tags = append(tags, "AEAD")
			}
			if s.Export {
				tags = append(tags, "EXPORT")
			}
			if s.Auth == "anon" {
				tags = append(tags, "ANON")
			}
			fmt.Fprintf(w, "    %-46s %-5s %-5s %-17s %3d  %s\n", s.Name, s.Kex, s.Auth, s.Cipher+"-"+s.Mode, s.Bits, strings.Join(tags, " "))
		}
		if p.Incomplete != "" {
			fmt.Fprintf(w, "    (list may be incomplete: %s)\n", p.Incomplete)
		}
	}
	var g13, g12 []string
	for _, gs := range r.Groups {
		if gs.TLS13 == scan.Yes {
			g13 = append(g13, gs.Name)
		}
		if gs.TLS12 == scan.Yes {
			g12 = append(g12, gs.Name)
		}
	}
	if len(g13) > 0 {
		fmt.Fprintf(w, "  groups       TLS 1.3: %s", strings.Join(g13, " "))
		if r.PreferredGroup != "" {
			fmt.Fprintf(w, " (preferred %s)", r.PreferredGroup)
		}
		fmt.Fprintln(w)
	}
	if len(g12) > 0 {
		fmt.Fprintf(w, "  groups       TLS 1.2 and below: %s\n", strings.Join(g12, " "))
	}
	if r.DHBits > 0 {
		fmt.Fprintf(w, "  DH params    %d bits\n", r.DHBits)
	}
	if c := r.Certificate; c != nil && len(c.Chain) > 0 {
		leaf := c.Chain[0]
		fmt.Fprintf(w, "  certificate  %s, %s %d, %s, issued by %s\n", leaf.Subject, leaf.KeyType, leaf.KeyBits, leaf.SignatureAlgorithm, leaf.Issuer)
		fmt.Fprintf(w, "               valid %s to %s (%d days left)", leaf.NotBefore.Format(time.DateOnly), leaf.NotAfter.Format(time.DateOnly), c.DaysLeft)
		if c.Expired {
			fmt.Fprint(w, ", EXPIRED")
		}
		if c.NotYetValid {
			fmt.Fprint(w, ", NOT YET VALID")
		}
		fmt.Fprintln(w)
		if c.Trusted {
			fmt.Fprint(w, "               trusted")
		} else {
			fmt.Fprintf(w, "               NOT TRUSTED: %s", c.TrustError)
		}
		if c.HostnameOK {
			fmt.Fprint(w, ", name matches")
		} else {
			fmt.Fprintf(w, ", NAME MISMATCH: %s", c.HostnameError)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "               chain of %d, in order %s, complete %s", len(c.Chain), yesNo(map[bool]scan.Status{true: scan.Yes, false: scan.No}[c.ChainInOrder]), yesNo(c.ChainComplete))
		if c.ChainNote != "" {
			fmt.Fprintf(w, " (%s)", c.ChainNote)
		}
		fmt.Fprintf(w, ", OCSP stapled %s, SCTs %s\n", yesNo(c.OCSPStapled), yesNo(c.SCTs))
		if c.WeakSignature != "" {
			fmt.Fprintf(w, "               %s\n", c.WeakSignature)
		}
	}
	switch h := r.HSTS; {
	case h.Checked == scan.Yes && h.Header != "":
		fmt.Fprintf(w, "  HSTS         %s\n", h.Header)
	case h.Checked == scan.Yes:
		fmt.Fprintf(w, "  HSTS         none (HTTP %d)\n", h.Status)
	default:
		fmt.Fprintf(w, "  HSTS         %s: %s\n", h.Checked, h.Detail)
	}
	for _, c := range r.Checks {
		mark := "ok "
		switch {
		case c.Result == scan.NotApplic:
			mark = "n/a"
		case c.Result != scan.Yes && c.Result != scan.No:
			mark = "?? "
		case !c.OK:
			mark = "BAD"
		}
		fmt.Fprintf(w, "  %s %-52s %s: %s\n", mark, c.Title, c.Result, c.Detail)
	}
	for _, c := range g.Caps {
		fmt.Fprintf(w, "  cap %-2s  %s\n", c.Max, c.Reason)
	}
	for _, wn := range g.Warnings {
		fmt.Fprintf(w, "  warning  %s\n", wn)
	}
	for _, m := range r.Mozilla {
		if m.Compliant {
			fmt.Fprintf(w, "  Mozilla %s: compliant\n", m.Profile)
			continue
		}
		fmt.Fprintf(w, "  Mozilla %s: %d deviation(s)\n", m.Profile, len(m.Deviations))
		for _, d := range m.Deviations {
			fmt.Fprintf(w, "    - %s\n", d)
		}
	}
}
