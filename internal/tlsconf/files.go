package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/trailaudit/trail/internal/durable"
)

// createFile writes data to path, which must not exist; see durable.CreateFile.
func createFile(path string, data []byte, perm os.FileMode) error {
	return durable.CreateFile(path, data, perm)
}

// moveAside renames path to a new name with a suffix that says when, never
// replacing an existing file, and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".old-" + now.UTC().Format("20060102T150405Z")
	for i := range 100 {
		aside := base
		if i > 0 {
			aside = fmt.Sprintf("%s.%d", base, i)
		}
		err := os.Link(path, aside)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("couldn't keep old %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return "", err
		}
		return aside, durable.SyncDir(filepath.Dir(path))
	}
	return "", fmt.Errorf("couldn't keep old %s: too many old copies named %s*", path, base)
}

// ClientFiles returns a client TLS configuration (TLS 1.2 or later) that
// trusts the PEM CA certificates in caFile, or the system's roots if caFile
// is empty, and, if certFile or keyFile is set, presents the certificate in
// certFile with the key in keyFile.
func ClientFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("couldn't read the CA certificate: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("couldn't load the client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
