package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/token"
)

const serveHelp = `Usage: trail serve [-data DIR] [-listen ADDR] [-profile intermediate|modern]

Serves the log in DIR over TLS with client certificates. On first run it
creates DIR, the log's signing key, a private CA and server certificate in
DIR/pki, and an admin client certificate for the local CLI
(DIR/pki/admin.crt and admin.key). It prints the URL, the CA fingerprint,
the verifier key and curl lines to try. SIGINT or SIGTERM stops it after
in-flight requests and signs a last checkpoint.

Example:
  trail serve -data ./trail-data -listen 127.0.0.1:8443

Flags:
`

// Admin client certificate files, in the PKI directory.
const (
	adminCertFile = "admin.crt"
	adminKeyFile  = "admin.key"
)

// shutdownTimeout bounds how long in-flight requests may take after a
// signal.
const shutdownTimeout = 30 * time.Second

func init() { commands["serve"] = runServe }

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr, serveHelp)
	dir := fs.String("data", "trail-data", "the data `directory`")
	listen := fs.String("listen", "127.0.0.1:8443", "the `address` to listen on")
	profileName := fs.String("profile", "intermediate", "the TLS `profile`: intermediate (TLS 1.2 and 1.3) or modern (TLS 1.3 only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	profile, err := tlsconf.ParseProfile(*profileName)
	if err != nil {
		return usageError{err.Error()}
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usageError{fmt.Sprintf("bad -listen %q: %v", *listen, err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("couldn't create data directory: %w", err)
	}
	keys, err := ledger.LoadOrCreateKeys(*dir)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(*dir, "pki")
	pkiCfg := tlsconf.PKIConfig{Dir: pkiDir, Name: keys.Verifier.Name(), Logger: logger}
	if ip := net.ParseIP(host); host != "" && host != "localhost" && (ip == nil || !ip.IsUnspecified() && !ip.IsLoopback()) {
		pkiCfg.ExtraNames = []string{host}
	}
	pki, err := tlsconf.OpenPKI(pkiCfg)
	if err != nil {
		return err
	}
	if err := ensureAdminCert(pki, pkiDir); err != nil {
		return err
	}
	tlsConfig, err := tlsconf.ServerConfig(profile, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		return err
	}
	revoked, err := tlsconf.NewRevocationList(tlsconf.RevocationConfig{File: filepath.Join(pkiDir, tlsconf.RevokedFile), Logger: logger})
	if err != nil {
		return err
	}
	tokens, err := token.Open(filepath.Join(pkiDir, token.File), logger)
	if err != nil {
		return err
	}

	store, err := storagefs.Open(*dir, logger)
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, Logger: logger})
	if err != nil {
		store.Close()
		return err
	}
	srv, err := server.New(server.Config{
		Log:       l,
		LogDir:    filepath.Join(*dir, "log"),
		ClientCAs: pki.CAPool(),
		Revoked:   revoked.Revoked, // trail cert revoke, without a restart
		Tokens:    tokens,
		Logger:    logger,
	})
	if err != nil {
		return errors.Join(err, l.Close())
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return errors.Join(err, l.Close())
	}
	hs := server.NewHTTPServer(*listen, srv, server.TLSConfig(tlsConfig), logger)
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	url := serverURL(ln.Addr().String(), host)
	if err := writeServeInfo(*dir, serveInfo{URL: url, CAFingerprint: pki.CAFingerprint(), VerifierKey: keys.VerifierKey, PID: os.Getpid()}); err != nil {
		logger.Warn("couldn't write "+serveInfoFile+"; client commands need -server", "err", err)
	}
	defer os.Remove(filepath.Join(*dir, serveInfoFile))
	printBanner(stdout, *dir, url, pki, keys)

	select {
	case err = <-served: // failed before any signal
	case <-ctx.Done():
		logger.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		err = hs.Shutdown(sctx)
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	// Appends still in flight after a timed-out Shutdown either commit
	// before Close returns or get ErrClosed; none is acknowledged and lost.
	if cerr := l.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("couldn't close log: %w", cerr))
	} else {
		logger.Info("stopped; last checkpoint signed", "size", l.Size())
	}
	return err
}

// ensureAdminCert creates the admin client certificate for the local CLI
// once: the key (0600) and the certificate, each created exclusively, never
// overwritten.
func ensureAdminCert(pki *tlsconf.PKI, pkiDir string) error {
	certPath, keyPath := filepath.Join(pkiDir, adminCertFile), filepath.Join(pkiDir, adminKeyFile)
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		return nil
	case cerr == nil:
		return fmt.Errorf("%s is missing; move %s away to have both created again", keyPath, certPath)
	case kerr == nil:
		return fmt.Errorf("%s is missing; move %s away to have both created again", certPath, keyPath)
	case !errors.Is(cerr, fs.ErrNotExist):
		return cerr
	case !errors.Is(kerr, fs.ErrNotExist):
		return kerr
	}
	certPEM, keyPEM, err := pki.IssueClient("admin", tlsconf.RoleAdmin)
	if err != nil {
		return err
	}
	if err := createFile(keyPath, keyPEM); err != nil {
		return fmt.Errorf("couldn't create admin key: %w", err)
	}
	if err := createFile(certPath, certPEM); err != nil {
		return fmt.Errorf("couldn't create admin certificate: %w", err)
	}
	return nil
}

// createFile writes a new file of mode 0600, failing if it exists, and
// syncs it.
func createFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// serveInfoFile, in the data directory, tells client commands on the
// server's machine where the running server is. It is written once the
// server listens and removed when it stops.
const serveInfoFile = "serve.json"

// serveInfo is the content of serveInfoFile.
type serveInfo struct {
	URL           string `json:"url"`
	CAFingerprint string `json:"ca_fingerprint"`
	VerifierKey   string `json:"verifier_key"`
	PID           int    `json:"pid"`
}

func writeServeInfo(dir string, info serveInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, serveInfoFile), append(b, '\n'), 0o644)
}

// serverURL is the URL clients use for the listener at addr, which was asked
// for as host: a wildcard listener is reached as localhost.
func serverURL(addr, host string) string {
	_, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}

func printBanner(w io.Writer, dir, url string, pki *tlsconf.PKI, keys *ledger.Keys) {
	pkiDir := filepath.Join(dir, "pki")
	tlsArgs := fmt.Sprintf("--cacert %s --cert %s --key %s",
		shellQuote(filepath.Join(pkiDir, tlsconf.CACertFile)),
		shellQuote(filepath.Join(pkiDir, adminCertFile)),
		shellQuote(filepath.Join(pkiDir, adminKeyFile)))
	ev := fmt.Sprintf(`{"time":"%s","actor":{"id":"alice"},"action":"login"}`, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, `trail is serving %s
  data directory  %s
  CA fingerprint  SHA256 %s
  verifier key    %s

Append an event:
  curl %s -H 'Content-Type: application/json' -d '%s' %s/v1/events

Read it back with its inclusion proof, and the signed checkpoint:
  curl %s %s/v1/events/0
  curl %s %s/checkpoint
`, url, dir, pki.CAFingerprint(), keys.VerifierKey, tlsArgs, ev, url, tlsArgs, url, tlsArgs, url)
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@+=,", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
