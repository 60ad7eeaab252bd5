package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/event"

	"github.com/trailaudit/trail/internal/alert"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/index"
	"github.com/trailaudit/trail/internal/ingest/generic"
	"github.com/trailaudit/trail/internal/ingest/k8s"
	"github.com/trailaudit/trail/internal/ingest/otlp"
	"github.com/trailaudit/trail/internal/ingest/syslog"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/token"
)

const serveHelp = `Usage: trail serve [-config FILE] [-data DIR] [-listen ADDR] [-ops-listen ADDR] [-syslog-listen ADDR]
                   [-profile intermediate|modern] [-tls-cert FILE -tls-key FILE] [-names LIST]

Serves the log in DIR over TLS only. On first run it creates DIR, the log's
signing key, a private CA and server certificate in DIR/pki, and an admin
client certificate for the local CLI (DIR/pki/admin.crt and admin.key). It
prints the URL, the CA fingerprint, the verifier key and curl lines to try.

Settings come from the YAML file given with -config (see docs/config.md);
flags override it. /healthz and /metrics are served on -ops-listen, over TLS
with the server certificate; syslog over TLS (RFC 5425) on -syslog-listen. SIGHUP re-reads operator certificate files and
the revocation list at once (they are also picked up when they change).
SIGINT or SIGTERM stops accepting requests, finishes those in flight, signs
a last checkpoint and exits.

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

// stamperCloseTimeout bounds how long a stop waits to time-stamp the last
// checkpoints; what is left is stamped at the next start.
const stamperCloseTimeout = 10 * time.Second

func init() { commands["serve"] = runServe }

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr, serveHelp)
	configFile := fs.String("config", "", "the YAML configuration `file` (default: none, built-in defaults)")
	def := defaultServeConfig()
	dir := fs.String("data", def.Data, "the data `directory`")
	listen := fs.String("listen", def.Listen, "the `address` of the API")
	opsListen := fs.String("ops-listen", def.OpsListen, "the `address` of /healthz and /metrics, or off")
	syslogListen := fs.String("syslog-listen", def.SyslogListen, "the `address` of the syslog over TLS (RFC 5425) listener, or off")
	profileName := fs.String("profile", def.TLS.Profile, "the TLS `profile`: intermediate (TLS 1.2 and 1.3) or modern (TLS 1.3 only)")
	certFile := fs.String("tls-cert", "", "an operator's server certificate chain `file` (PEM), instead of the generated one")
	keyFile := fs.String("tls-key", "", "the `file` of -tls-cert's private key (PEM)")
	names := fs.String("names", "", "extra DNS names or IP addresses, comma-separated, for the generated server certificate")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file`, for finding where the time goes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := def
	if *configFile != "" {
		var err error
		if cfg, err = loadServeConfig(*configFile); err != nil {
			return err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data":
			cfg.Data = *dir
		case "listen":
			cfg.Listen = *listen
		case "ops-listen":
			cfg.OpsListen = *opsListen
		case "syslog-listen":
			cfg.SyslogListen = *syslogListen
		case "profile":
			cfg.TLS.Profile = *profileName
		case "tls-cert":
			cfg.TLS.CertFile = *certFile
		case "tls-key":
			cfg.TLS.KeyFile = *keyFile
		case "names":
			cfg.TLS.Names = strings.Split(*names, ",")
		}
	})
	if err := cfg.check("(flags)"); err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "config (flags): ")}
	}
	profile, _ := tlsconf.ParseProfile(cfg.TLS.Profile)
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return usageError{fmt.Sprintf("bad listen address %q: %v", cfg.Listen, err)}
	}
	if cfg.OpsListen != "off" {
		if _, _, err := net.SplitHostPort(cfg.OpsListen); err != nil {
			return usageError{fmt.Sprintf("bad ops listen address %q: %v (or off)", cfg.OpsListen, err)}
		}
	}
	if cfg.SyslogListen != "off" {
		if _, _, err := net.SplitHostPort(cfg.SyslogListen); err != nil {
			return usageError{fmt.Sprintf("bad syslog listen address %q: %v (or off)", cfg.SyslogListen, err)}
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	data := cfg.Data
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("couldn't create data directory: %w", err)
	}
	keys, err := ledger.LoadOrCreateKeys(data)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(data, "pki")
	pkiCfg := tlsconf.PKIConfig{Dir: pkiDir, Name: keys.Verifier.Name(), Logger: logger, ExtraNames: cfg.TLS.Names}
	if ip := net.ParseIP(host); host != "" && host != "localhost" && (ip == nil || !ip.IsUnspecified() && !ip.IsLoopback()) {
		pkiCfg.ExtraNames = append(pkiCfg.ExtraNames, host)
	}
	pki, err := tlsconf.OpenPKI(pkiCfg)
	if err != nil {
		return err
	}
	if err := ensureAdminCert(pki, pkiDir); err != nil {
		return err
	}
	var certs tlsconf.CertSource = tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}
	var reloader *tlsconf.Reloader
	if cfg.TLS.CertFile != "" {
		if reloader, err = tlsconf.NewReloader(tlsconf.ReloaderConfig{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, Logger: logger}); err != nil {
			return err
		}
		certs = reloader
	}
	tlsConfig, err := tlsconf.ServerConfig(profile, certs, pki.CAPool())
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

	store, err := storagefs.Open(data, logger)
	if err != nil {
		return err
	}
	// Each new checkpoint goes to whoever wants it: witnesses (docs/witness.md).
	// Every hook must return at once; checkpoints are not signed meanwhile.
	var alertsReady atomic.Pointer[alert.Manager] // set once the manager exists, below
	witnesses, err := newWitnessSender(&cfg, data, keys, &alertsReady, logger)
	if err != nil {
		store.Close()
		return err
	}
	stamper, err := newStamper(&cfg.Timestamp, data, logger) // RFC 3161 time evidence (docs/timestamps.md)
	if err != nil {
		store.Close()
		return err
	}
	onCheckpoint := func(cp *ledger.Checkpoint) {
		if witnesses != nil {
			witnesses.Offer(cp)
		}
		if stamper != nil {
			stamper.Add(cp.Size, cp.Note)
		}
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, Logger: logger, CheckpointInterval: cfg.CheckpointInterval, OnCheckpoint: onCheckpoint})
	if err != nil {
		store.Close()
		return err
	}
	if witnesses != nil {
		witnesses.Offer(l.Latest()) // the newest, if the log did not grow at open
		witnesses.Start(l)
		defer witnesses.Close() // at return, after l.Close; the last checkpoint is offered again at the next start
	}
	if stamper != nil {
		if cp := l.Latest(); cp != nil {
			stamper.Add(cp.Size, cp.Note) // skipped if stamped before the last stop
		}
		stamper.Start()
		defer func() { // after l.Close, whose last checkpoint it tries to stamp
			ctx, cancel := context.WithTimeout(context.Background(), stamperCloseTimeout)
			defer cancel()
			stamper.Close(ctx)
		}()
	}
	scfg := cfg.serverConfig()
	scfg.Log, scfg.LogDir, scfg.Logger = l, filepath.Join(data, "log"), logger
	scfg.ClientCAs = pki.CAPool()
	scfg.Revoked = revoked.Revoked // trail cert revoke, without a restart
	scfg.Tokens = tokens
	if witnesses != nil {
		scfg.Checkpoint = witnesses.Checkpoint
	}
	var wt *watch // set before serving; /healthz lists its critical alerts
	scfg.Health = func() []string { return wt.health() }
	srv, err := server.New(scfg)
	if err != nil {
		return errors.Join(err, l.Close())
	}
	registerCertExpiry(srv, certs)
	if witnesses != nil {
		srv.Registry().MustRegister(witnesses.Collectors()...)
	}
	if stamper != nil {
		if err := stamper.Register(srv.Registry()); err != nil {
			return errors.Join(err, l.Close())
		}
	}
	// The producers' own protocols, beside the native API (docs/producers).
	k8s.Register(srv, logger)
	otlp.Register(srv, logger)
	generic.Register(srv, logger)
	// The search index follows the log; it is derived data (docs/search.md).
	var searchIndex *index.Index
	if cfg.Search.Enabled {
		if searchIndex, err = index.Open(ctx, index.Options{Dir: filepath.Join(data, index.DirName), Source: l, Logger: logger}); err != nil {
			return errors.Join(fmt.Errorf("search index: %w", err), l.Close())
		}
		index.Register(srv, l, searchIndex, logger)
		searchIndex.Start()
		defer searchIndex.Close() // on early returns; closed before the log below
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return errors.Join(err, l.Close())
	}
	var opsLn net.Listener
	if cfg.OpsListen != "off" {
		if opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			ln.Close()
			return errors.Join(fmt.Errorf("ops listener: %w", err), l.Close())
		}
	}
	var syslogLn *syslog.Listener
	if cfg.SyslogListen != "off" {
		syslogLn, err = syslog.Listen(syslog.Config{
			Addr:           cfg.SyslogListen,
			TLS:            tlsConfig, // the same profile and certificate source as the API
			ClientCAs:      pki.CAPool(),
			Revoked:        revoked.Revoked,
			Ingester:       srv,
			Log:            l, // recalls senders' last sequenceId
			MaxMessageSize: cfg.SyslogMaxMessageSize,
			Registerer:     srv.Registry(),
			Logger:         logger,
		})
		if err != nil {
			ln.Close()
			if opsLn != nil {
				opsLn.Close()
			}
			return errors.Join(fmt.Errorf("syslog listener: %w", err), l.Close())
		}
	}
	// Alerts and self-verification (docs/alerts.md, docs/tamper.md), and
	// TLS monitoring: scans (the first as soon as the listeners serve) and
	// certificate expiry (docs/scan.md).
	self := []string{ln.Addr().String()}
	if opsLn != nil {
		self = append(self, opsLn.Addr().String())
	}
	if syslogLn != nil {
		self = append(self, syslogLn.Addr().String())
	}
	var mon *monitor
	am, err := newAlerts(&cfg, srv, l.Origin(), logger)
	if err == nil {
		alertsReady.Store(am)
		wt, err = startWatch(&cfg, am, store, l, keys, logger)
	}
	if err == nil {
		mon, err = startMonitor(cfg.Monitor, srv, am, self, []*x509.Certificate{pki.CACertificate()},
			ownCertificates(pki, certs, pkiDir, revoked.Revoked, logger), logger)
		if err != nil {
			wt.stop()
		}
	}
	if err != nil {
		ln.Close()
		if opsLn != nil {
			opsLn.Close()
		}
		if syslogLn != nil {
			syslogLn.Shutdown(context.Background())
		}
		return errors.Join(err, l.Close())
	}
	started := map[string]any{"listen": ln.Addr().String(), "profile": cfg.TLS.Profile, "version": version(), "log_size": l.Size()}
	if syslogLn != nil {
		started["syslog_listen"] = syslogLn.Addr().String()
	}
	if _, err := srv.Audit(ctx, tlsconf.Identity{}, "trail.server.start", event.Resource{Type: "trail.server", ID: l.Origin()}, started); err != nil {
		ln.Close()
		if opsLn != nil {
			opsLn.Close()
		}
		if syslogLn != nil {
			syslogLn.Shutdown(context.Background())
		}
		mon.close()
		wt.stop()
		return errors.Join(err, l.Close())
	}

	hs := server.NewHTTPServer(cfg.Listen, srv, server.TLSConfig(tlsConfig), logger)
	served := make(chan error, 3)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	var ops *http.Server
	if opsLn != nil {
		// The ops endpoints authenticate nobody and serve no event data:
		// TLS with the server certificate, no client certificate asked.
		opsTLS := tlsConfig.Clone()
		opsTLS.ClientAuth, opsTLS.ClientCAs = tls.NoClientCert, nil
		ops = server.NewHTTPServer(cfg.OpsListen, srv.OpsHandler(), opsTLS, logger)
		go func() { served <- ops.ServeTLS(opsLn, "", "") }()
	}
	if syslogLn != nil {
		go func() { served <- syslogLn.Serve() }()
	}
	url := serverURL(ln.Addr().String(), host)
	if err := writeServeInfo(data, serveInfo{URL: url, CAFingerprint: pki.CAFingerprint(), VerifierKey: keys.VerifierKey, PID: os.Getpid()}); err != nil {
		logger.Warn("couldn't write "+serveInfoFile+"; client commands need -server", "err", err)
	}
	defer os.Remove(filepath.Join(data, serveInfoFile))
	printBanner(stdout, data, url, pki, keys, l.Size())
	if opsLn != nil {
		fmt.Fprintf(stdout, "\nHealth and metrics: https://%s/healthz and /metrics\n", opsLn.Addr())
	}
	if syslogLn != nil {
		fmt.Fprintf(stdout, "\nSyslog over TLS (RFC 5425): %s, with a writer certificate (docs/producers/syslog.md)\n", syslogLn.Addr())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case err = <-served: // a listener failed before any signal
			done = true
		case <-hup:
			logger.Info("SIGHUP: re-reading certificate files and the revocation list")
			if reloader != nil {
				reloader.Reload() // failures are logged; the old pair stays
			}
			revoked.Reload()
		case <-ctx.Done():
			done = true
		}
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	serr := hs.Shutdown(sctx)
	if syslogLn != nil {
		// Appends what senders sent, before the log closes.
		serr = errors.Join(serr, syslogLn.Shutdown(sctx))
	}
	if ops != nil {
		serr = errors.Join(serr, ops.Shutdown(sctx))
	}
	cancel()
	err = errors.Join(err, serr)
	// The checks read the store, which closes with the log; alerts
	// append to the log.
	mon.close()
	wt.stop()
	stopped := map[string]any{"log_size": l.Size()}
	if _, aerr := srv.Audit(context.Background(), tlsconf.Identity{}, "trail.server.stop", event.Resource{Type: "trail.server", ID: l.Origin()}, stopped); aerr != nil {
		err = errors.Join(err, aerr)
	}
	if searchIndex != nil {
		// What it has not indexed yet, it indexes at the next start.
		if ierr := searchIndex.Close(); ierr != nil {
			logger.Warn("couldn't close the search index", "err", ierr)
		}
	}
	// Appends still in flight after a timed-out Shutdown either commit
	// before Close returns or get ErrClosed; none is acknowledged and lost.
	if cerr := l.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("couldn't close log: %w", cerr))
	} else {
		logger.Info("stopped; last checkpoint signed", "size", l.Size())
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, syslog.ErrListenerClosed) {
		err = nil
	}
	return err
}

// registerCertExpiry exports the server certificate's expiry as a metric,
// for alerting well before it lapses.
func registerCertExpiry(srv *server.Server, certs tlsconf.CertSource) {
	srv.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trail_server_certificate_expiry_timestamp_seconds",
		Help: "When the server certificate in use expires, as a Unix time.",
	}, func() float64 {
		c, err := certs.GetCertificate(nil)
		if err != nil || c == nil || c.Leaf == nil {
			return 0
		}
		return float64(c.Leaf.NotAfter.Unix())
	}))
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

func printBanner(w io.Writer, dir, url string, pki *tlsconf.PKI, keys *ledger.Keys, next int64) {
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

Read it back with its inclusion proof (the index is in the reply), and the
signed checkpoint:
  curl %s %s/v1/events/%d
  curl %s %s/checkpoint

Or with the trail CLI, which needs no flags on this machine:
  trail append '%s'
  trail verify -server %s
`, url, dir, pki.CAFingerprint(), keys.VerifierKey, tlsArgs, ev, url, tlsArgs, url, next, tlsArgs, url, ev, url)
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
