package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/verify"
)

// timestampConfig is the timestamp block of trail serve's configuration:
// each new checkpoint is time-stamped by an RFC 3161 time-stamping
// authority, and the token stored in DIR/state/timestamps
// (docs/timestamps.md).
type timestampConfig struct {
	// URL is the TSA's https:// address. Default: none, no time-stamps.
	URL string `yaml:"url"`
	// CAFile is the PEM file of the TSA's CA, which the certificate that
	// signs each time-stamp must chain to. Required with url.
	CAFile string `yaml:"ca_file"`
	// TLSCAFile, if set, is the PEM CA bundle that verifies the TSA's
	// HTTPS server, instead of the system roots.
	TLSCAFile string `yaml:"tls_ca_file"`
	// Timeout bounds one request to the TSA. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Every, if set, spaces stamps at least this far apart: then only the
	// newest checkpoint signed meanwhile is stamped, which covers the
	// entries of those skipped. Default 0: every checkpoint.
	Every time.Duration `yaml:"every"`
}

// check validates the block; the files are read by newStamper.
func (c *timestampConfig) check() error {
	if c.URL == "" {
		if c.CAFile != "" || c.TLSCAFile != "" || c.Timeout != 0 || c.Every != 0 {
			return fmt.Errorf("timestamp.url is missing: the other timestamp settings do nothing without it")
		}
		return nil
	}
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("timestamp.url %q: want an https:// URL", c.URL)
	}
	if c.CAFile == "" {
		return fmt.Errorf("timestamp.ca_file is required with timestamp.url: the TSA's CA, to check its time-stamps")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timestamp.timeout must not be negative")
	}
	if c.Every < 0 {
		return fmt.Errorf("timestamp.every must not be negative")
	}
	return nil
}

// newStamper returns the time-stamper the configuration asks for, not yet
// started, or nil if it asks for none.
func newStamper(c *timestampConfig, data string, logger *slog.Logger) (*tsa.Stamper, error) {
	if c.URL == "" {
		return nil, nil
	}
	roots, err := readPool(c.CAFile, "timestamp.ca_file")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		if tr.TLSClientConfig.RootCAs, err = readPool(c.TLSCAFile, "timestamp.tls_ca_file"); err != nil {
			return nil, err
		}
	}
	return tsa.NewStamper(tsa.StamperConfig{
		Client:  &tsa.Client{URL: c.URL, Roots: roots, HTTPClient: &http.Client{Transport: tr}},
		Dir:     filepath.Join(data, filepath.FromSlash(tsa.Dir)),
		Timeout: c.Timeout,
		Every:   c.Every,
		Logger:  logger.With("component", "timestamp"),
	})
}

// readPool reads a PEM file of CA certificates.
func readPool(path, key string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", key, path)
	}
	return pool, nil
}

// jsonTime is the time_evidence of trail verify -json.
type jsonTime struct {
	Stamped      int64      `json:"stamped"`
	First        *time.Time `json:"first,omitempty"`
	Last         *time.Time `json:"last,omitempty"`
	LastSize     int64      `json:"last_size"`
	LastSizeTime *time.Time `json:"last_size_time,omitempty"`
	ChainChecked bool       `json:"chain_checked"`
}

// printTimeEvidence prints trail verify's line on the RFC 3161 time-stamps.
func printTimeEvidence(stdout, stderr io.Writer, tm verify.TimeEvidence, checkpoints int64, caFile string) {
	if tm.Stamped == 0 {
		fmt.Fprintf(stdout, "time       no checkpoint of %d is time-stamped\n", checkpoints)
		return
	}
	fmt.Fprintf(stdout, "time       %d of %d checkpoints time-stamped (RFC 3161), from %s to %s; the %d entries of the newest stamped one existed by %s\n",
		tm.Stamped, checkpoints, tm.First.Format(time.RFC3339), tm.Last.Format(time.RFC3339), tm.LastSize, tm.LastSizeTime.Format(time.RFC3339))
	if tm.ChainChecked {
		fmt.Fprintf(stdout, "           every time-stamp is signed by a TSA that %s vouches for\n", caFile)
	} else {
		fmt.Fprintf(stderr, "trail: note: the time-stamps' signatures were checked, not who signed them; pass the TSA's CA with -tsa-ca to check that\n")
	}
}
