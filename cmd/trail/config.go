package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/trailaudit/trail/internal/ingest/syslog"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// serveConfig is trail serve's configuration file (YAML). Every field is
// optional; flags given on the command line override the file. Unknown
// keys are errors, so that a misspelt setting never silently does nothing.
// docs/config.md documents each field with an example; keep the two in
// step.
type serveConfig struct {
	// Data is the data directory. Default ./trail-data.
	Data string `yaml:"data"`
	// Listen is the API's address. Default 127.0.0.1:8443.
	Listen string `yaml:"listen"`
	// OpsListen is the address of /healthz and /metrics, served over TLS
	// with the server certificate and no client authentication; they hold
	// no event data. Default 127.0.0.1:9443; "off" disables it.
	OpsListen string `yaml:"ops_listen"`
	TLS       struct {
		// Profile is intermediate (TLS 1.2 and 1.3, the default) or
		// modern (TLS 1.3 only).
		Profile string `yaml:"profile"`
		// CertFile and KeyFile are an operator's server certificate chain
		// and key (PEM), used instead of the generated ones and re-read
		// when they change or on SIGHUP. Both or neither.
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		// Names are extra DNS names or IP addresses for the generated
		// server certificate.
		Names []string `yaml:"names"`
	} `yaml:"tls"`
	// SyslogListen is the address of the syslog-over-TLS listener (RFC
	// 5425; mutual TLS with a writer or admin certificate). Default
	// 127.0.0.1:6514; "off" disables it.
	SyslogListen string `yaml:"syslog_listen"`
	// SyslogMaxMessageSize bounds one syslog message, in bytes. Default
	// 262144, at least 65536.
	SyslogMaxMessageSize int `yaml:"syslog_max_message_size"`
	// PublicRead serves /checkpoint and /tile/ without authentication, as
	// a public C2SP tlog-tiles mirror. Default false: the reader role.
	PublicRead bool `yaml:"public_read"`
	// CheckpointInterval is the least time between signed checkpoints.
	// Default 1s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	Limits             struct {
		// MaxBodyBytes bounds a request body. Default 16 MiB.
		MaxBodyBytes int64 `yaml:"max_body_bytes"`
		// MaxEvents bounds the events of one request. Default 10000.
		MaxEvents int `yaml:"max_events"`
		// RateLimit is the requests per second each identity may make;
		// RateBurst how many at once. Defaults 50000 and 100000; a
		// negative rate_limit disables the limit.
		RateLimit float64 `yaml:"rate_limit"`
		RateBurst int     `yaml:"rate_burst"`
	} `yaml:"limits"`
	Idempotency struct {
		// Keys bounds the idempotency keys and event ids remembered.
		// Default 1000000.
		Keys int `yaml:"keys"`
		// Scan is how many of the newest entries are read at start to
		// remember their keys across a restart. Default 100000.
		Scan int64 `yaml:"scan"`
	} `yaml:"idempotency"`
	// SelfCheck is continuous self-verification (docs/tamper.md): new
	// data is checked as checkpoints cover it, and the whole log is
	// re-verified every Every, reading at most Rate bytes per second.
	SelfCheck struct {
		// Every is the time between sweeps of the whole log. Default 1h.
		Every time.Duration `yaml:"every"`
		// Rate bounds a sweep's reads, in bytes per second. Default
		// 134217728 (128 MiB/s); -1 is unbounded.
		Rate int64 `yaml:"rate"`
		// Off disables self-verification. Default false.
		Off bool `yaml:"off"`
	} `yaml:"self_check"`
	// Alerts are where alerts go besides the log line, the metrics,
	// /healthz and the log itself (docs/alerts.md).
	Alerts struct {
		Webhooks []alertWebhook `yaml:"webhooks"`
		// Repeat is how long an alert already sent is not sent again.
		// Default 1h.
		Repeat time.Duration `yaml:"repeat"`
	} `yaml:"alerts"`
	// Monitor scans TLS endpoints on a schedule and watches certificates
	// for expiry (docs/scan.md, "Monitoring in trail serve").
	Monitor monitorConfig `yaml:"monitor"`
	// Witnesses are C2SP tlog-witness witnesses that each new checkpoint
	// is sent to for cosigning (docs/witness.md). Default none.
	Witnesses []witnessConfig `yaml:"witnesses"`
	// WitnessQuorum is how many witnesses must cosign a checkpoint before
	// /checkpoint serves it. Default 0: each checkpoint is served at once,
	// with the cosignatures it has.
	WitnessQuorum int `yaml:"witness_quorum"`
	// Timestamp has each new checkpoint time-stamped by an RFC 3161
	// time-stamping authority (docs/timestamps.md). Default: off.
	Timestamp timestampConfig `yaml:"timestamp"`
	// Search serves GET /v1/events from an index in DATA/index that
	// follows the log (docs/search.md).
	Search struct {
		// Enabled turns the index and the search endpoint on. Default true.
		Enabled bool `yaml:"enabled"`
	} `yaml:"search"`
}

// alertWebhook is one webhook receiver of alerts.
type alertWebhook struct {
	// URL is the receiver, https only.
	URL string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key that signs each request
	// (X-Trail-Signature). Required; keep it 0600.
	SecretFile string `yaml:"secret_file"`
	// CAFile, if set, is the PEM CA bundle that verifies the receiver,
	// instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

var unknownKeyRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

func defaultServeConfig() serveConfig {
	var c serveConfig
	c.Data = "trail-data"
	c.Listen = "127.0.0.1:8443"
	c.OpsListen = "127.0.0.1:9443"
	c.SyslogListen = syslog.DefaultAddr
	c.TLS.Profile = "intermediate"
	c.CheckpointInterval = time.Second
	c.Search.Enabled = true
	return c
}

// loadServeConfig reads the YAML file at path over the defaults.
func loadServeConfig(path string) (serveConfig, error) {
	c := defaultServeConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("couldn't read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		if te, ok := errors.AsType[*yaml.TypeError](err); ok {
			// One line per problem is yaml's way; the CLI's is one line.
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				m = unknownKeyRE.ReplaceAllString(m, "unknown key $1")
				msgs[i] = strings.ReplaceAll(m, "main.serveConfig", "the configuration")
			}
			return c, fmt.Errorf("config %s: %s", path, strings.Join(msgs, "; "))
		}
		return c, fmt.Errorf("config %s: %v", path, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return c, c.check(path)
}

// check validates what the types cannot.
func (c *serveConfig) check(path string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("config %s: "+format, append([]any{path}, args...)...)
	}
	if _, err := tlsconf.ParseProfile(c.TLS.Profile); err != nil {
		return bad("tls.profile: %v", err)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls.cert_file and tls.key_file go together: give both or neither")
	}
	if err := c.Monitor.check(); err != nil {
		return bad("%v", err)
	}
	if err := c.Timestamp.check(); err != nil {
		return bad("%v", err)
	}
	switch {
	case c.Data == "":
		return bad("data must not be empty")
	case c.Listen == "":
		return bad("listen must not be empty")
	case c.SyslogListen == "":
		return bad("syslog_listen must not be empty (off disables it)")
	case c.SyslogMaxMessageSize != 0 && (c.SyslogMaxMessageSize < syslog.MinMaxMessageSize || c.SyslogMaxMessageSize > syslog.MaxMaxMessageSize):
		return bad("syslog_max_message_size must be %d to %d bytes", syslog.MinMaxMessageSize, syslog.MaxMaxMessageSize)
	case c.CheckpointInterval < 0:
		return bad("checkpoint_interval must not be negative")
	case c.Limits.MaxBodyBytes < 0:
		return bad("limits.max_body_bytes must not be negative")
	case c.Limits.MaxEvents < 0:
		return bad("limits.max_events must not be negative")
	case c.Limits.RateBurst < 0:
		return bad("limits.rate_burst must not be negative")
	case c.Idempotency.Keys < 0:
		return bad("idempotency.keys must not be negative")
	case c.SelfCheck.Every < 0:
		return bad("self_check.every must not be negative")
	case c.SelfCheck.Rate < -1:
		return bad("self_check.rate must be a positive number of bytes per second, or -1 for unbounded")
	case c.Alerts.Repeat < 0:
		return bad("alerts.repeat must not be negative")
	}
	for i, w := range c.Alerts.Webhooks {
		if !strings.HasPrefix(w.URL, "https://") {
			return bad("alerts.webhooks[%d].url must be an https:// URL, not %q", i, w.URL)
		}
		if w.SecretFile == "" {
			return bad("alerts.webhooks[%d].secret_file is required: receivers check each alert's HMAC signature", i)
		}
	}
	if err := c.checkWitnesses(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// serverConfig maps the file's settings onto server.Config.
func (c *serveConfig) serverConfig() server.Config {
	return server.Config{
		PublicRead:      c.PublicRead,
		MaxBodyBytes:    c.Limits.MaxBodyBytes,
		MaxEvents:       c.Limits.MaxEvents,
		RateLimit:       c.Limits.RateLimit,
		RateBurst:       c.Limits.RateBurst,
		IdempotencyKeys: c.Idempotency.Keys,
		IdempotencyScan: c.Idempotency.Scan,
	}
}
