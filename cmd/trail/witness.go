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
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/alert"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/witness"
	"github.com/trailaudit/trail/internal/witness/cosig"
)

const witnessHelp = `Usage: trail witness -log VKEY... -client-ca FILE... [-data WDIR] [-listen ADDR] [-ops-listen ADDR]
                     [-name NAME] [-profile intermediate|modern] [-names LIST]
       trail witness key [-data WDIR] [-name NAME]
       trail witness refusals [-data WDIR] [-json]
       trail witness config [-data WDIR]

Runs a witness (C2SP tlog-witness): it cosigns a log's checkpoint only if
the log's key signed it and it provably extends the newest checkpoint the
witness cosigned before, which it keeps in WDIR. Rollbacks and forks are
refused; each refusal is logged, counted in trail_witness_refusals_total,
and recorded with its evidence in WDIR/refusals.jsonl ("trail witness
refusals" shows them).

It serves POST /add-checkpoint over mutual TLS only: on first run it makes
its cosigning key (WDIR/witness.key, 0600) and a private CA and server
certificate (WDIR/pki). Logs are admitted by -client-ca, the CA that issued
the client certificate a log presents (a trail log's own CA is
DATA/pki/ca.crt); -log names each log by its verifier key ("trail key"
prints it), or a file holding it. /metrics and /healthz are on -ops-listen,
over TLS, without client certificates.

"trail witness key" prints the witness's verifier key (making the key if
needed), for the logs' and clients' configuration. "trail witness config"
prints the block for a log's serve configuration (witnesses:) while the
witness runs. docs/witness.md walks through the setup.

Examples:
  trail witness -data wdir -listen 127.0.0.1:7443 \
      -log "$(trail key -data trail-data)" -client-ca trail-data/pki/ca.crt
  trail witness key -data wdir
  trail witness refusals -data wdir

Flags:
`

// witnessInfoFile, in the witness directory, tells "trail witness config"
// where the running witness is.
const witnessInfoFile = "witness.json"

type witnessInfo struct {
	URL         string `json:"url"`
	VerifierKey string `json:"verifier_key"`
	CAFile      string `json:"ca_file"`
	PID         int    `json:"pid"`
}

func init() { commands["witness"] = runWitness }

// stringsFlag is a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runWitness(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "key":
			return runWitnessKey(args[1:], stdout, stderr)
		case "refusals":
			return runWitnessRefusals(args[1:], stdout, stderr)
		case "config":
			return runWitnessConfig(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("witness", stderr, witnessHelp)
	dir := fs.String("data", "trail-witness", "the witness `directory`")
	listen := fs.String("listen", "127.0.0.1:7443", "the `address` of POST /add-checkpoint")
	opsListen := fs.String("ops-listen", "127.0.0.1:9444", "the `address` of /healthz and /metrics, or off")
	name := fs.String("name", "", "the cosigner `name` of a key made on first run (default <host>/trail-witness/<random>)")
	profileName := fs.String("profile", "intermediate", "the TLS `profile`: intermediate (TLS 1.2 and 1.3) or modern (TLS 1.3 only)")
	names := fs.String("names", "", "extra DNS names or IP addresses, comma-separated, for the generated server certificate")
	var logs, clientCAs stringsFlag
	fs.Var(&logs, "log", "a log's verifier `key`, or a file holding it (repeatable; at least one)")
	fs.Var(&clientCAs, "client-ca", "a PEM `file` of the CA whose client certificates are admitted (repeatable; at least one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(logs) == 0 {
		return usageError{"no -log: give the verifier key of each log to witness (trail key prints it)"}
	}
	if len(clientCAs) == 0 {
		return usageError{"no -client-ca: give the CA of the logs' client certificates (a trail log's is DATA/pki/ca.crt)"}
	}
	profile, err := tlsconf.ParseProfile(*profileName)
	if err != nil {
		return usageError{err.Error()}
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usageError{fmt.Sprintf("bad listen address %q: %v", *listen, err)}
	}
	var vkeys []string
	for _, l := range logs {
		k := l
		if b, err := os.ReadFile(l); err == nil {
			k = strings.TrimSpace(string(b))
		}
		if _, err := note.NewVerifier(k); err != nil {
			return usageError{fmt.Sprintf("-log %q is neither a file holding a log's verifier key nor such a key (trail key prints it)", l)}
		}
		vkeys = append(vkeys, k)
	}
	pool := x509.NewCertPool()
	for _, f := range clientCAs {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("-client-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("-client-ca %s holds no PEM certificate", f)
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("couldn't create witness directory: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := witness.New(witness.Config{Dir: *dir, Name: *name, Logs: vkeys, Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	pkiCfg := tlsconf.PKIConfig{Dir: filepath.Join(*dir, "pki"), Name: w.Name(), Logger: logger}
	if *names != "" {
		pkiCfg.ExtraNames = strings.Split(*names, ",")
	}
	if ip := net.ParseIP(host); host != "" && host != "localhost" && (ip == nil || !ip.IsUnspecified() && !ip.IsLoopback()) {
		pkiCfg.ExtraNames = append(pkiCfg.ExtraNames, host)
	}
	pki, err := tlsconf.OpenPKI(pkiCfg)
	if err != nil {
		return err
	}
	certs := tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}
	tc, err := witness.TLSConfig(profile, certs, pool)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var opsLn net.Listener
	if *opsListen != "off" {
		if opsLn, err = net.Listen("tcp", *opsListen); err != nil {
			ln.Close()
			return fmt.Errorf("ops listener: %w", err)
		}
	}
	// The request bodies are small (witness.ParseRequest bounds them).
	hs := server.NewHTTPServer(*listen, w, tc, logger)
	hs.ReadTimeout, hs.WriteTimeout = 30*time.Second, 30*time.Second
	served := make(chan error, 2)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	var ops *http.Server
	if opsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, "ok\n") })
		opsTLS := tc.Clone()
		opsTLS.ClientAuth, opsTLS.ClientCAs = tls.NoClientCert, nil
		ops = server.NewHTTPServer(*opsListen, mux, opsTLS, logger)
		go func() { served <- ops.ServeTLS(opsLn, "", "") }()
	}
	url := serverURL(ln.Addr().String(), host)
	caFile, _ := filepath.Abs(filepath.Join(*dir, "pki", tlsconf.CACertFile))
	info := witnessInfo{URL: url, VerifierKey: w.VerifierKey(), CAFile: caFile, PID: os.Getpid()}
	if b, err := json.MarshalIndent(info, "", "  "); err == nil {
		if err := durable.WriteFile(filepath.Join(*dir, witnessInfoFile), append(b, '\n'), 0o644); err != nil {
			logger.Warn("couldn't write "+witnessInfoFile, "err", err)
		}
	}
	defer os.Remove(filepath.Join(*dir, witnessInfoFile))
	fmt.Fprintf(stdout, "trail witness is serving %s/add-checkpoint (mutual TLS)\n  directory       %s\n  CA fingerprint  SHA256 %s\n  verifier key    %s\n", url, *dir, pki.CAFingerprint(), w.VerifierKey())
	for _, k := range vkeys {
		fmt.Fprintf(stdout, "  log             %s\n", strings.SplitN(k, "+", 2)[0])
	}
	if opsLn != nil {
		fmt.Fprintf(stdout, "\nHealth and metrics: https://%s/healthz and /metrics\n", opsLn.Addr())
	}
	fmt.Fprintf(stdout, "\nFor each log's serve configuration, run: trail witness config -data %s\n", shellQuote(*dir))

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = errors.Join(err, hs.Shutdown(sctx))
	if ops != nil {
		err = errors.Join(err, ops.Shutdown(sctx))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func runWitnessKey(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("witness key", stderr, `Usage: trail witness key [-data WDIR] [-name NAME]

Prints the witness's verifier key, making the key on first use: configure
logs (witnesses: key) and clients (trail verify -witness) with it. It never
prints the signing key.

Flags:
`)
	dir := fs.String("data", "trail-witness", "the witness `directory`")
	name := fs.String("name", "", "the cosigner `name` of a key made now (default <host>/trail-witness/<random>)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := witness.LoadOrCreateKey(*dir, *name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.VerifierKey())
	return nil
}

func runWitnessRefusals(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("witness refusals", stderr, `Usage: trail witness refusals [-data WDIR] [-json]

Prints the checkpoints the witness refused because they do not extend the
one it had cosigned (rollback, fork, inconsistent proof), oldest first,
each with both signed checkpoints: evidence against the log, which anyone
with the log's verifier key can check. Exits 0 whether or not there are any.

Flags:
`)
	dir := fs.String("data", "trail-witness", "the witness `directory`")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, witness.KeyFile)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no witness in %s (no %s)", *dir, witness.KeyFile)
	}
	rs, err := witness.ReadRefusals(*dir)
	if err != nil {
		return err
	}
	if *asJSON {
		if rs == nil {
			rs = []witness.Refusal{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(stdout, "no refusals")
		return nil
	}
	for _, r := range rs {
		fmt.Fprintf(stdout, "%s %s %s (%d): %s\n", r.Time.Format(time.RFC3339), r.Origin, r.Reason, r.Status, r.Message)
		fmt.Fprintf(stdout, "cosigned before:\n%s\noffered:\n%s\n", indent(r.Cosigned), indent(r.Offered))
	}
	return nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ")
}

func runWitnessConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("witness config", stderr, `Usage: trail witness config [-data WDIR] [-quorum N] [-wait D]

Prints, while the witness runs, the block to add to a log's serve
configuration file so that the log sends it its checkpoints. Add cert_file
and key_file if the log should present another client certificate than its
admin one. With -quorum it adds witness_quorum: N, so that the log serves
only checkpoints with N cosignatures.

Flags:
`)
	dir := fs.String("data", "trail-witness", "the witness `directory`")
	quorum := fs.Int("quorum", 0, "add witness_quorum: `N` to the block")
	wait := fs.Duration("wait", 0, "wait up to `D` for the witness to start (for provisioning scripts)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var info witnessInfo
	for deadline := time.Now().Add(*wait); ; time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(*dir, witnessInfoFile))
		if err == nil {
			err = json.Unmarshal(b, &info)
		}
		if err == nil && !processAlive(info.PID) {
			err = fmt.Errorf("%s names process %d, which is gone", witnessInfoFile, info.PID)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no witness running from %s (no %s)", *dir, witnessInfoFile)
			}
			return err
		}
	}
	conf := struct {
		Witnesses []witnessConfig `yaml:"witnesses"`
		Quorum    int             `yaml:"witness_quorum,omitempty"`
	}{[]witnessConfig{{Name: strings.SplitN(info.VerifierKey, "+", 2)[0], URL: info.URL, Key: info.VerifierKey, CAFile: info.CAFile}}, *quorum}
	out, err := yaml.Marshal(conf)
	if err != nil {
		return err
	}
	stdout.Write(out)
	return nil
}

// processAlive reports whether process pid exists.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}

// witnessConfig is one entry of serve's witnesses: setting.
type witnessConfig struct {
	// Name labels the witness in logs and metrics. Default: its key's name.
	Name string `yaml:"name,omitempty"`
	// URL is the witness's submission prefix, https://HOST:PORT.
	URL string `yaml:"url"`
	// Key is the witness's verifier key (trail witness key).
	Key string `yaml:"key"`
	// CAFile is the PEM CA of the witness's server certificate (its
	// WDIR/pki/ca.crt). Default: the system's roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate the log presents.
	// Default: DATA/pki/admin.crt and admin.key.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
}

// checkWitnesses validates the witnesses: and witness_quorum settings.
func (c *serveConfig) checkWitnesses() error {
	if c.WitnessQuorum < 0 || c.WitnessQuorum > len(c.Witnesses) {
		return fmt.Errorf("witness_quorum %d: must be 0 to the number of witnesses, %d", c.WitnessQuorum, len(c.Witnesses))
	}
	for i, w := range c.Witnesses {
		where := fmt.Sprintf("witnesses[%d]", i)
		if w.Name != "" {
			where += " (" + w.Name + ")"
		}
		if !strings.HasPrefix(w.URL, "https://") {
			return fmt.Errorf("%s.url %q: must be https://HOST:PORT", where, w.URL)
		}
		if _, err := cosig.NewVerifier(w.Key); err != nil {
			return fmt.Errorf("%s.key: %v", where, err)
		}
		if (w.CertFile == "") != (w.KeyFile == "") {
			return fmt.Errorf("%s: cert_file and key_file go together", where)
		}
	}
	return nil
}

// cosignedCheckpointFile, in the data directory's state/, keeps the newest
// checkpoint published with its cosignatures across restarts.
const cosignedCheckpointFile = "state/cosigned-checkpoint"

// newWitnessSender returns the sender of checkpoints to the configured
// witnesses, or nil if there are none.
//
// A witness's refusal (a fork or rollback of what it cosigned) is raised
// as a critical alert through the manager alerts holds by then.
func newWitnessSender(cfg *serveConfig, data string, keys *ledger.Keys, alerts *atomic.Pointer[alert.Manager], logger *slog.Logger) (*witness.Sender, error) {
	if len(cfg.Witnesses) == 0 {
		return nil, nil
	}
	var eps []witness.Endpoint
	for _, w := range cfg.Witnesses {
		certFile, keyFile := w.CertFile, w.KeyFile
		if certFile == "" {
			certFile, keyFile = filepath.Join(data, "pki", adminCertFile), filepath.Join(data, "pki", adminKeyFile)
		}
		hc, err := witness.NewHTTPClient(w.CAFile, certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w", w.URL, err)
		}
		eps = append(eps, witness.Endpoint{Name: w.Name, URL: w.URL, VerifierKey: w.Key, HTTPClient: hc})
	}
	return witness.NewSender(witness.SenderConfig{
		Witnesses:   eps,
		Quorum:      cfg.WitnessQuorum,
		LogVerifier: keys.Verifier,
		File:        filepath.Join(data, filepath.FromSlash(cosignedCheckpointFile)),
		Logger:      logger,
		OnRefusal: func(name string, size int64, err error) {
			am := alerts.Load()
			if am == nil {
				logger.Error("ALERT witness refused a checkpoint (before alerts were ready)", "witness", name, "size", size, "err", err)
				return
			}
			am.Raise(alert.Alert{
				Kind:     "witness.refused",
				Severity: alert.Critical,
				Where:    "witness " + name,
				Summary:  fmt.Sprintf("witness %s refused the checkpoint of size %d: %v", name, size, err),
				Details:  map[string]any{"witness": name, "size": size},
			})
		},
	})
}

// witnessFlags are verify -server's witness policy flags.
type witnessFlags struct {
	keys   stringsFlag
	quorum *int
}

func addWitnessFlags(fs *flag.FlagSet) *witnessFlags {
	wf := &witnessFlags{}
	fs.Var(&wf.keys, "witness", "with -server, a witness's verifier `key`, or a file holding it, whose cosignatures count (repeatable)")
	wf.quorum = fs.Int("witness-quorum", 0, "with -server, how many of the -witness keys must have cosigned the checkpoint (default: all)")
	return wf
}

// apply sets the witness policy of cfg.
func (wf *witnessFlags) apply(cfg *client.Config) error {
	if *wf.quorum != 0 && len(wf.keys) == 0 {
		return usageError{"-witness-quorum needs -witness keys"}
	}
	for _, k := range wf.keys {
		if b, err := os.ReadFile(k); err == nil {
			k = strings.TrimSpace(string(b))
		}
		if _, err := cosig.NewVerifier(k); err != nil {
			return usageError{fmt.Sprintf("-witness: %v", err)}
		}
		cfg.Witnesses = append(cfg.Witnesses, k)
	}
	if *wf.quorum < 0 || *wf.quorum > len(wf.keys) {
		return usageError{fmt.Sprintf("-witness-quorum %d: must be 1 to the number of -witness keys, %d", *wf.quorum, len(wf.keys))}
	}
	cfg.WitnessQuorum = *wf.quorum
	return nil
}

// printCosignatures lists the witnesses that cosigned cp.
func printCosignatures(w io.Writer, cp client.Checkpoint) {
	for _, c := range cp.Cosignatures {
		fmt.Fprintf(w, "cosigned by %s at %s\n", c.Witness, c.Time.Format(time.RFC3339))
	}
}
