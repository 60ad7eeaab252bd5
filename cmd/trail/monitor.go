package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/alert"
	"github.com/trailaudit/trail/internal/scan"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// monitorConfig is trail serve's TLS monitoring (docs/scan.md,
// "Monitoring in trail serve"): endpoints rescanned on a schedule, and
// every certificate the server knows of watched for expiry.
type monitorConfig struct {
	// Endpoints are scanned at start and every Every: HOST:PORT or
	// https:// URLs, as trail scan takes them.
	Endpoints []string `yaml:"endpoints"`
	// Self scans the server's own listeners (API, ops, syslog) at start.
	// Default false.
	Self bool `yaml:"self"`
	// Every is the time between two scans of Endpoints. Default 24h.
	Every time.Duration `yaml:"every"`
	// CAFiles are PEM CA certificates trusted for the scanned endpoints
	// besides the system roots (the server's own CA always is).
	CAFiles []string `yaml:"ca_files"`
	// MinGrade raises an alert when an endpoint grades below it. Default
	// "A". A grade lower than the endpoint's previous one always alerts.
	MinGrade string `yaml:"min_grade"`
	// Profile is the Mozilla profile, intermediate (default) or modern,
	// whose deviations are findings; a deviation not seen in the
	// endpoint's previous scan alerts.
	Profile string `yaml:"profile"`
	// ExpiryDays raises an alert when a certificate expires within this
	// many days. Default 30.
	ExpiryDays int `yaml:"expiry_days"`
	// CheckEvery is the time between two certificate expiry checks.
	// Default 1h.
	CheckEvery time.Duration `yaml:"check_every"`
}

func (c *monitorConfig) check() error {
	for _, e := range c.Endpoints {
		if _, err := scan.ParseTarget(e); err != nil {
			return fmt.Errorf("monitor.endpoints: %q: %v", e, err)
		}
	}
	switch {
	case c.Every < 0 || c.CheckEvery < 0:
		return fmt.Errorf("monitor.every and monitor.check_every must not be negative")
	case c.MinGrade != "" && !scan.ValidGrade(c.MinGrade):
		return fmt.Errorf("monitor.min_grade %q: not a grade (A+, A, A-, B, C, D, E, F)", c.MinGrade)
	case c.Profile != "" && c.Profile != "intermediate" && c.Profile != "modern":
		return fmt.Errorf("monitor.profile %q: intermediate or modern", c.Profile)
	case c.ExpiryDays < 0:
		return fmt.Errorf("monitor.expiry_days must not be negative")
	}
	return nil
}

// watchedCert is a certificate the monitor watches for expiry.
type watchedCert struct {
	What     string // "server certificate", "client certificate alice (writer)", ...
	Subject  string
	Serial   string
	NotAfter time.Time
}

// monitor runs the scans and the expiry checks.
type monitor struct {
	cfg    monitorConfig
	srv    *server.Server
	alerts *alert.Manager
	log    *slog.Logger
	opts   scan.Options
	self   []string             // the server's own listeners
	certs  func() []watchedCert // the server's own certificates
	now    func() time.Time

	mu    sync.Mutex
	last  map[string]*scan.Report // previous report by target
	leafs map[string]watchedCert  // scanned endpoints' leaf certificates
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startMonitor starts monitoring; stop with monitor.close.
func startMonitor(cfg monitorConfig, srv *server.Server, am *alert.Manager, self []string, roots []*x509.Certificate, certs func() []watchedCert, logger *slog.Logger) (*monitor, error) {
	if cfg.Every == 0 {
		cfg.Every = 24 * time.Hour
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = time.Hour
	}
	if cfg.MinGrade == "" {
		cfg.MinGrade = "A"
	}
	if cfg.Profile == "" {
		cfg.Profile = "intermediate"
	}
	if cfg.ExpiryDays == 0 {
		cfg.ExpiryDays = 30
	}
	for _, f := range cfg.CAFiles {
		cs, err := readCAFile(f)
		if err != nil {
			return nil, fmt.Errorf("monitor.ca_files: %w", err)
		}
		roots = append(roots, cs...)
	}
	m := &monitor{
		cfg: cfg, srv: srv, alerts: am, log: logger, self: self, certs: certs, now: time.Now,
		opts:  scan.Options{Roots: roots, Logger: logger},
		last:  make(map[string]*scan.Report),
		leafs: make(map[string]watchedCert),
		stop:  make(chan struct{}),
	}
	m.wg.Add(1)
	go m.run()
	return m, nil
}

func (m *monitor) close() {
	close(m.stop)
	m.wg.Wait()
}

func (m *monitor) run() {
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-m.stop; cancel() }()
	first := slices.Clone(m.cfg.Endpoints)
	if m.cfg.Self {
		first = append(first, m.self...)
	}
	m.scanAll(ctx, first)
	m.checkExpiry(ctx)
	scanT := time.NewTicker(m.cfg.Every)
	defer scanT.Stop()
	certT := time.NewTicker(m.cfg.CheckEvery)
	defer certT.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-scanT.C:
			m.scanAll(ctx, m.cfg.Endpoints)
			m.checkExpiry(ctx)
		case <-certT.C:
			m.checkExpiry(ctx)
		}
	}
}

// scanAll scans targets one after the other (each scan is itself
// parallel), records each result and each finding, and alerts.
func (m *monitor) scanAll(ctx context.Context, targets []string) {
	for _, target := range targets {
		if ctx.Err() != nil {
			return
		}
		t, err := scan.ParseTarget(target)
		if err != nil {
			continue // checked at start
		}
		r := scan.Scan(ctx, t, m.opts)
		r.Target = target
		if ctx.Err() != nil {
			return
		}
		m.record(ctx, r)
	}
}

// finding is one thing a scan found wrong.
type finding struct {
	Kind string `json:"kind"` // error, cap, warning, deviation, certificate
	Text string `json:"finding"`
}

// findings lists what r found wrong, against the monitor's profile.
func (m *monitor) findings(r *scan.Report) []finding {
	var fs []finding
	if r.Error != "" {
		fs = append(fs, finding{"error", r.Error})
	}
	for _, c := range r.Grade.Caps {
		fs = append(fs, finding{"cap", c.Max + ": " + c.Reason})
	}
	for _, w := range r.Grade.Warnings {
		fs = append(fs, finding{"warning", w})
	}
	for _, c := range r.Mozilla {
		if c.Profile != m.cfg.Profile {
			continue
		}
		for _, d := range c.Deviations {
			fs = append(fs, finding{"deviation", "Mozilla " + c.Profile + ": " + d})
		}
	}
	return fs
}

// record appends the scan and each of its findings to the log, and
// raises the alerts it calls for.
func (m *monitor) record(ctx context.Context, r *scan.Report) {
	res := event.Resource{Type: "endpoint", ID: r.Target}
	var summary map[string]any
	if b, err := scanEvent(r, nil); err == nil {
		var e struct {
			Details map[string]any `json:"details"`
		}
		json.Unmarshal(b, &e)
		summary = e.Details
	}
	if _, err := m.srv.Audit(ctx, tlsconf.Identity{}, "tls.scan", res, summary); err != nil {
		m.log.Error("couldn't record a scan", "endpoint", r.Target, "err", err)
	}
	fs := m.findings(r)
	for _, f := range fs {
		if _, err := m.srv.Audit(ctx, tlsconf.Identity{}, "tls.finding", res, map[string]any{"kind": f.Kind, "finding": f.Text, "grade": r.Grade.Letter}); err != nil {
			m.log.Error("couldn't record a finding", "endpoint", r.Target, "err", err)
		}
	}
	m.log.Info("scanned", "endpoint", r.Target, "grade", r.Grade.Letter, "findings", len(fs), "seconds", r.Seconds)

	m.mu.Lock()
	prev := m.last[r.Target]
	m.last[r.Target] = r
	if c := r.Certificate; c != nil && len(c.Chain) > 0 {
		leaf := c.Chain[0]
		m.leafs[r.Target] = watchedCert{What: "certificate of " + r.Target, Subject: leaf.Subject, Serial: leaf.SHA256, NotAfter: leaf.NotAfter}
	}
	m.mu.Unlock()

	switch {
	case r.Error != "":
		m.alerts.Raise(alert.Alert{Kind: "scan.failed", Severity: alert.Warning, Where: r.Target,
			Summary: fmt.Sprintf("TLS scan of %s failed: %s", r.Target, r.Error)})
		return
	case prev != nil && prev.Error == "" && gradeRank(r.Grade.Letter) < gradeRank(prev.Grade.Letter):
		m.alerts.Raise(alert.Alert{Kind: "scan.grade", Severity: alert.Warning, Where: r.Target,
			Summary: fmt.Sprintf("TLS grade of %s dropped from %s to %s", r.Target, prev.Grade.Letter, r.Grade.Letter),
			Details: map[string]any{"previous": prev.Grade.Letter, "grade": r.Grade.Letter, "caps": r.Grade.Caps}})
	case !scan.MeetsGrade(r.Grade.Letter, m.cfg.MinGrade):
		m.alerts.Raise(alert.Alert{Kind: "scan.grade", Severity: alert.Warning, Where: r.Target,
			Summary: fmt.Sprintf("TLS grade of %s is %s, below %s", r.Target, r.Grade.Letter, m.cfg.MinGrade),
			Details: map[string]any{"grade": r.Grade.Letter, "caps": r.Grade.Caps}})
	}
	var before []finding
	if prev != nil {
		before = m.findings(prev)
	}
	for _, f := range fs {
		if f.Kind == "deviation" && !slices.Contains(before, f) {
			m.alerts.Raise(alert.Alert{Kind: "scan.deviation", Severity: alert.Warning, Where: r.Target + " " + f.Text,
				Summary: fmt.Sprintf("%s deviates from %s", r.Target, f.Text)})
		}
	}
}

// gradeRank orders grades, A+ highest; M and T below every letter.
func gradeRank(g string) int {
	order := []string{"T", "M", "F", "E", "D", "C", "B", "A-", "A", "A+"}
	return slices.Index(order, g)
}

// checkExpiry looks at every certificate the server knows of and records
// and alerts on each that expires within ExpiryDays.
func (m *monitor) checkExpiry(ctx context.Context) {
	certs := m.certs()
	m.mu.Lock()
	for _, c := range m.leafs {
		certs = append(certs, c)
	}
	m.mu.Unlock()
	now := m.now()
	horizon := now.Add(time.Duration(m.cfg.ExpiryDays) * 24 * time.Hour)
	for _, c := range certs {
		if c.NotAfter.After(horizon) {
			continue
		}
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		state := fmt.Sprintf("expires on %s, in %d days", c.NotAfter.UTC().Format(time.DateOnly), days)
		sev := alert.Warning
		if !c.NotAfter.After(now) {
			state = "expired on " + c.NotAfter.UTC().Format(time.DateOnly)
			sev = alert.Critical
		} else if days < 7 {
			sev = alert.Critical
		}
		details := map[string]any{"what": c.What, "subject": c.Subject, "serial": c.Serial, "not_after": c.NotAfter.UTC(), "days_left": days}
		if _, err := m.srv.Audit(ctx, tlsconf.Identity{}, "certificate.expiry", event.Resource{Type: "certificate", ID: c.Serial}, details); err != nil {
			m.log.Error("couldn't record a certificate finding", "certificate", c.Subject, "err", err)
		}
		m.alerts.Raise(alert.Alert{Kind: "certificate.expiry", Severity: sev, Where: c.What + " (" + c.Subject + ")",
			Summary: fmt.Sprintf("%s %s %s", c.What, c.Subject, state), Details: details})
	}
}

// ownCertificates lists the certificates trail serve knows of: its CA, its
// server certificate, the admin certificate and every client certificate
// trail cert issued and did not revoke.
func ownCertificates(pki *tlsconf.PKI, certs tlsconf.CertSource, pkiDir string, revoked func(*big.Int) bool, logger *slog.Logger) func() []watchedCert {
	return func() []watchedCert {
		out := []watchedCert{certInfo("the CA certificate", pki.CACertificate())}
		if c, err := certs.GetCertificate(nil); err == nil && c != nil && c.Leaf != nil {
			out = append(out, certInfo("the server certificate", c.Leaf))
		}
		if b, err := os.ReadFile(filepath.Join(pkiDir, adminCertFile)); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
					out = append(out, certInfo("the admin client certificate", c))
				}
			}
		}
		issued, err := readIssued(pkiDir)
		if err != nil {
			logger.Warn("certificate watch: couldn't read the issued certificates", "err", err)
		}
		for _, ic := range issued {
			serial, ok := new(big.Int).SetString(ic.Serial, 16)
			if ok && revoked != nil && revoked(serial) {
				continue
			}
			out = append(out, watchedCert{What: fmt.Sprintf("client certificate %s (%s)", ic.Name, ic.Role), Subject: "CN=" + ic.Name, Serial: ic.Serial, NotAfter: ic.NotAfter})
		}
		return out
	}
}

func certInfo(what string, c *x509.Certificate) watchedCert {
	return watchedCert{What: what, Subject: c.Subject.String(), Serial: strings.ToLower(c.SerialNumber.Text(16)), NotAfter: c.NotAfter}
}
