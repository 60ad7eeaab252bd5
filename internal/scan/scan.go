// Package scan grades the TLS configuration of an endpoint: the protocols
// and cipher suites it accepts (including those Go's crypto/tls cannot
// speak, found by a small prober that writes ClientHellos and reads the
// ServerHello or alert itself), its key exchange groups and DH parameter
// sizes, its certificate chain, HSTS, and the classic checks (secure
// renegotiation, compression, fallback SCSV, Heartbleed). It grades the
// result after the Qualys SSL Labs rating guide and lists deviations from
// Mozilla's Server Side TLS 6.0 profiles. docs/scan.md states the rules.
//
// The prober never completes a handshake: each probe is one connection,
// one hello, one answer, then close. Every probe has a deadline; a
// timeout is reported as a timeout, never as "not supported".
package scan

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures Scan.
type Options struct {
	// Timeout bounds each probe: connecting, sending the hello and reading
	// the answer. Default 5s.
	Timeout time.Duration
	// Parallel is the number of probe connections one endpoint may have
	// open at once. Default 8.
	Parallel int
	// Roots are trusted in addition to the system roots.
	Roots []*x509.Certificate
	// NoSystemRoots trusts only Roots.
	NoSystemRoots bool
	// Now is the clock for certificate validity. Default time.Now.
	Now func() time.Time
	// Logger receives debug output on each phase. Default: discard.
	Logger *slog.Logger
}

// Status is the outcome of one probe or check.
type Status string

const (
	Yes        Status = "yes"
	No         Status = "no"
	Timeout    Status = "timeout"
	Failed     Status = "error"
	NotChecked Status = "not checked"
	NotApplic  Status = "n/a"
)

// Target is an endpoint to scan.
type Target struct {
	Host string // a DNS name or an IP address, without brackets
	Port string
	// HTTPS is true when the target was given as an https:// URL.
	HTTPS bool
}

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// ServerName returns the SNI name to send: the host, unless it is an IP
// address (RFC 6066 forbids IP addresses in SNI).
func (t Target) ServerName() string {
	if net.ParseIP(t.Host) != nil {
		return ""
	}
	return t.Host
}

// ParseTarget parses HOST, HOST:PORT, [IPv6]:PORT or an https:// URL. The
// port defaults to 443.
func ParseTarget(s string) (Target, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Target{}, fmt.Errorf("bad URL %q: %v", s, err)
		}
		if u.Scheme != "https" {
			return Target{}, fmt.Errorf("bad URL %q: only https:// URLs can be scanned", s)
		}
		t := Target{Host: u.Hostname(), Port: u.Port(), HTTPS: true}
		if t.Port == "" {
			t.Port = "443"
		}
		return t, checkTarget(s, t)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), "443"
	}
	t := Target{Host: host, Port: port}
	return t, checkTarget(s, t)
}

func checkTarget(s string, t Target) error {
	if t.Host == "" || strings.ContainsAny(t.Host, " /[]") {
		return fmt.Errorf("bad endpoint %q: want HOST:PORT or https://HOST[:PORT]", s)
	}
	if n, err := strconv.Atoi(t.Port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad endpoint %q: port %q is not a number from 1 to 65535", s, t.Port)
	}
	return nil
}

// Report is the result of scanning one endpoint. Its JSON form is the
// stable schema documented in docs/scan.md.
type Report struct {
	Target     string    `json:"target"`
	Address    string    `json:"address"`
	ServerName string    `json:"server_name,omitempty"`
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	Probes     int64     `json:"probes"`
	// Error is set when the endpoint could not be scanned at all
	// (unreachable, not TLS); the rest of the report is then empty.
	Error string `json:"error,omitempty"`

	Protocols []Protocol `json:"protocols"`
	// Groups lists each key exchange group probed, per protocol.
	Groups []GroupSupport `json:"groups,omitempty"`
	// PreferredGroup is the group the server picks among all offered in
	// TLS 1.3.
	PreferredGroup string `json:"preferred_group,omitempty"`
	// DHBits is the size of the server's DHE prime, 0 if no DHE suite is
	// accepted.
	DHBits      int          `json:"dh_bits,omitempty"`
	Certificate *Certificate `json:"certificate,omitempty"`
	HSTS        HSTS         `json:"hsts"`
	Checks      []Check      `json:"checks"`
	Grade       Grade        `json:"grade"`
	Mozilla     []Compliance `json:"mozilla,omitempty"`

	// certErr is why crypto/tls could not handshake, for a report with
	// no certificate.
	certErr string
}

// Protocol is one protocol version and what the server accepts in it.
type Protocol struct {
	Name      string `json:"name"`
	Version   uint16 `json:"version"`
	Supported Status `json:"supported"`
	// Detail says how the server refused, or what went wrong.
	Detail string `json:"detail,omitempty"`
	// Suites are the accepted suites, in the server's preference order
	// when Order is "server", else in the order probed.
	Suites []Suite `json:"suites,omitempty"`
	// SSL2Ciphers are the SSL 2.0 cipher kinds the server offered.
	SSL2Ciphers []string `json:"ssl2_ciphers,omitempty"`
	// Order is "server" when the server enforces its own suite order,
	// "client" when it follows the client's, "mixed" when neither holds
	// (a server that follows the client only for some suites), or ""
	// with fewer than two suites.
	Order string `json:"order,omitempty"`
	// Incomplete says why the suite list may be incomplete (a timeout
	// during enumeration).
	Incomplete string `json:"incomplete,omitempty"`
}

// GroupSupport says whether the server accepts a group in TLS 1.3 (through
// a HelloRetryRequest) and in TLS 1.2 (with ECDHE suites).
type GroupSupport struct {
	Name  string `json:"name"`
	ID    uint16 `json:"id"`
	TLS13 Status `json:"tls13"`
	TLS12 Status `json:"tls12"`
}

// Check is one of the classic checks a grade depends on.
type Check struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Result answers Title: yes or no; or not checked, n/a, timeout or
	// error when there is no answer.
	Result Status `json:"result"`
	// OK is true when the answer is the good one (or n/a).
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// HSTS is the Strict-Transport-Security header of an HTTPS endpoint.
type HSTS struct {
	Checked Status `json:"checked"` // yes, or why not: not checked, timeout, error
	Detail  string `json:"detail,omitempty"`
	Status  int    `json:"http_status,omitempty"`
	Header  string `json:"header,omitempty"`
	// MaxAge is in seconds; -1 when the header is absent or malformed.
	MaxAge            int64 `json:"max_age"`
	IncludeSubDomains bool  `json:"include_subdomains,omitempty"`
	Preload           bool  `json:"preload,omitempty"`
}

// Scan scans one endpoint. It returns a report in every case; the
// report's Error says when the endpoint could not be scanned.
func Scan(ctx context.Context, t Target, opts Options) *Report {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &scanner{
		t:    t,
		opts: opts,
		log:  opts.Logger.With("endpoint", t.Addr()),
		p:    &prober{addr: t.Addr(), timeout: opts.Timeout, sem: make(chan struct{}, opts.Parallel)},
		rep:  &Report{Address: t.Addr(), ServerName: t.ServerName(), Started: opts.Now().UTC()},
	}
	start := time.Now()
	s.run(ctx)
	s.rep.Seconds = time.Since(start).Seconds()
	s.rep.Probes = s.p.count.Load()
	if ctx.Err() != nil && s.rep.Error == "" {
		s.rep.Error = "scan cancelled: " + ctx.Err().Error()
	}
	return s.rep
}

// scanner holds one endpoint's scan in progress.
type scanner struct {
	t    Target
	opts Options
	log  *slog.Logger
	p    *prober
	rep  *Report

	mu sync.Mutex
	// certDER is the chain from a raw Certificate message, for servers
	// crypto/tls cannot handshake with.
	certDER [][]byte
}

// parallel runs fs concurrently and waits for all.
func parallel(fs ...func()) {
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Go(f)
	}
	wg.Wait()
}

func (s *scanner) run(ctx context.Context) {
	var hs *handshake
	parallel(
		func() { s.protocols(ctx) },
		func() { hs = s.handshake(ctx) },
	)
	if err := s.reachable(); err != nil {
		s.rep.Error = err.Error()
		s.rep.Protocols = nil
		return
	}
	parallel(
		func() { s.suites(ctx) },
		func() { s.tls13Suites(ctx) },
		func() { s.tls13Groups(ctx) },
	)
	// These use the suites found above.
	parallel(
		func() { s.tls12Groups(ctx) },
		func() { s.dhParams(ctx) },
		func() { s.checks(ctx) },
	)
	s.rep.Certificate = s.certificate(hs)
	if hs != nil && hs.err != nil {
		s.rep.certErr = hs.err.Error()
	}
	s.rep.HSTS = s.hsts(hs)
	s.rep.Grade = grade(s.rep, s.t)
	s.rep.Mozilla = mozilla(s.rep)
}

// reachable returns an error if no protocol probe got an answer that is
// TLS: the endpoint is down, or speaks something else.
func (s *scanner) reachable() error {
	var problems []string
	for _, p := range s.rep.Protocols {
		switch p.Supported {
		case Yes:
			return nil
		case Failed, Timeout:
			problems = append(problems, p.Name+": "+p.Detail)
		}
	}
	if len(problems) == len(s.rep.Protocols) && len(problems) > 0 {
		// The same connection error for every version: say it once.
		return errors.New(strings.TrimPrefix(problems[0], s.rep.Protocols[0].Name+": "))
	}
	if len(problems) > 0 {
		return errors.New("no SSL or TLS version is accepted; " + strings.Join(problems, "; "))
	}
	return errors.New("no SSL or TLS version is accepted")
}

// protocol returns the report entry for version v.
func (s *scanner) protocol(v uint16) *Protocol {
	for i := range s.rep.Protocols {
		if s.rep.Protocols[i].Version == v {
			return &s.rep.Protocols[i]
		}
	}
	return nil
}

// supported returns the versions the server accepts, highest first.
func (s *scanner) supported() []uint16 {
	var vs []uint16
	for i := len(s.rep.Protocols) - 1; i >= 0; i-- {
		if s.rep.Protocols[i].Supported == Yes {
			vs = append(vs, s.rep.Protocols[i].Version)
		}
	}
	return vs
}

// statusOf turns a probe error into a status and a detail line.
func statusOf(err error) (Status, string) {
	if errors.Is(err, ErrTimeout) {
		return Timeout, err.Error()
	}
	return Failed, err.Error()
}
