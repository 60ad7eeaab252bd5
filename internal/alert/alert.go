// Package alert raises trail's alerts: damage found in the log, a
// certificate about to expire, a TLS grade that dropped. One Raise reaches
// every channel an operator may watch:
//
//   - a structured log line (level ERROR for critical alerts, WARN otherwise);
//   - the Prometheus counter trail_alerts_total{kind,severity} and the gauge
//     trail_alerts_active{severity};
//   - the health check: while a critical alert is active, /healthz answers
//     503 naming it (Manager.Unhealthy);
//   - the log itself: the alert is appended as an event (Config.Record);
//   - webhooks: a JSON POST signed with HMAC-SHA256, retried with
//     exponential backoff.
//
// Alerts are facts, not states that clear: a damaged entry stays damaged
// until an operator looks. An alert stays active until the process
// restarts; the same alert (kind and place) raised again is counted but not
// sent again for Config.Repeat.
package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Severity says how bad an alert is.
type Severity string

const (
	// Critical alerts mean the log's evidence is in doubt (damage, a fork)
	// or will be shortly (a certificate expiring within days). They turn
	// /healthz unhealthy.
	Critical Severity = "critical"
	// Warning alerts need attention but do not make the server unhealthy.
	Warning Severity = "warning"
)

// Alert is one finding.
type Alert struct {
	// Kind names the finding, dotted: "log.damage", "certificate.expiry",
	// "scan.grade". With Where it identifies the alert.
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	// Summary is one line for people, naming what and where.
	Summary string `json:"summary"`
	// Where is the place: a file, an entry index, an endpoint, a
	// certificate's subject.
	Where   string         `json:"where,omitempty"`
	Details map[string]any `json:"details,omitempty"`
	// Time is when it was raised; Raise sets it if zero.
	Time time.Time `json:"time"`
}

// Webhook is an HTTPS endpoint that receives every alert.
type Webhook struct {
	URL string
	// Secret keys the HMAC-SHA256 signature in the X-Trail-Signature
	// header. Required: a receiver must be able to tell trail's alerts
	// from anyone's.
	Secret []byte
	// Client sends the requests; its transport carries the receiver's CA.
	// Default: http.DefaultClient with a 10 s timeout.
	Client *http.Client
}

// Config configures New. The zero value logs and counts only.
type Config struct {
	// Origin names the log in webhook bodies.
	Origin   string
	Webhooks []Webhook
	// Record appends the alert to the log as an event. Optional. Failures
	// are logged; the other channels still fire.
	Record func(context.Context, Alert) error
	// Registerer receives the metrics. Optional.
	Registerer prometheus.Registerer
	// Logger receives the alert lines. Default: discard.
	Logger *slog.Logger
	// Attempts bounds the deliveries tried per webhook and alert. Default 8.
	Attempts int
	// Backoff is the wait after the first failed delivery; it doubles after
	// each further one, up to a minute. Default 1 s.
	Backoff time.Duration
	// Repeat is how long an alert already raised is not sent again. Default
	// one hour.
	Repeat time.Duration
}

// Manager raises alerts. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	total  *prometheus.CounterVec
	active *prometheus.GaugeVec

	mu       sync.Mutex
	seen     map[string]time.Time // kind + where → last sent
	critical []Alert              // active critical alerts, oldest first

	wg     sync.WaitGroup
	stop   chan struct{}
	closed bool
}

// New returns a Manager. Call Close to wait for deliveries in flight.
func New(cfg Config) (*Manager, error) {
	for _, w := range cfg.Webhooks {
		if len(w.Secret) == 0 {
			return nil, fmt.Errorf("alert webhook %s: a secret is required", w.URL)
		}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = time.Hour
	}
	m := &Manager{
		cfg:  cfg,
		log:  cfg.Logger,
		seen: make(map[string]time.Time),
		stop: make(chan struct{}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_alerts_total",
			Help: "Alerts raised, by kind and severity, repeats included.",
		}, []string{"kind", "severity"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trail_alerts_active",
			Help: "Distinct alerts raised since the server started, by severity. Any critical one makes /healthz fail.",
		}, []string{"severity"}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m.total); err != nil {
			return nil, err
		}
		if err := cfg.Registerer.Register(m.active); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Raise raises a. The log line, metrics and health state change before it
// returns; the log event and webhooks are sent in the background.
func (m *Manager) Raise(a Alert) {
	if a.Time.IsZero() {
		a.Time = time.Now().UTC()
	}
	if a.Severity == "" {
		a.Severity = Critical
	}
	m.total.WithLabelValues(a.Kind, string(a.Severity)).Inc()
	key := a.Kind + "\x00" + a.Where
	m.mu.Lock()
	last, repeated := m.seen[key]
	if m.closed || repeated && a.Time.Sub(last) < m.cfg.Repeat {
		m.mu.Unlock()
		return
	}
	m.seen[key] = a.Time
	if !repeated {
		m.active.WithLabelValues(string(a.Severity)).Inc()
		if a.Severity == Critical {
			m.critical = append(m.critical, a)
		}
	}
	m.wg.Add(1 + len(m.cfg.Webhooks))
	m.mu.Unlock()

	level := slog.LevelWarn
	if a.Severity == Critical {
		level = slog.LevelError
	}
	m.log.Log(context.Background(), level, "ALERT "+a.Summary, "kind", a.Kind, "severity", a.Severity, "where", a.Where)

	go func() {
		defer m.wg.Done()
		if m.cfg.Record == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.cfg.Record(ctx, a); err != nil {
			m.log.Error("couldn't append the alert to the log", "kind", a.Kind, "err", err)
		}
	}()
	if len(m.cfg.Webhooks) == 0 {
		return
	}
	body, err := json.Marshal(struct {
		Log   string `json:"log,omitempty"`
		Alert Alert  `json:"alert"`
	}{m.cfg.Origin, a})
	if err != nil { // Details that do not marshal: send without them.
		a.Details = map[string]any{"error": "details could not be encoded: " + err.Error()}
		body, _ = json.Marshal(struct {
			Log   string `json:"log,omitempty"`
			Alert Alert  `json:"alert"`
		}{m.cfg.Origin, a})
	}
	for _, w := range m.cfg.Webhooks {
		go func() {
			defer m.wg.Done()
			m.deliver(w, body, a.Kind)
		}()
	}
}

// Unhealthy returns the critical alerts raised so far, oldest first; none
// means healthy.
func (m *Manager) Unhealthy() []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Alert(nil), m.critical...)
}

// Close stops retries and waits for deliveries in flight (each bounded by
// its client's timeout). Alerts raised after Close are counted and logged
// only.
func (m *Manager) Close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.stop)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// Signature headers of a webhook request. The signature is
// hex(HMAC-SHA256(secret, timestamp + "." + body)), sent as "v1=<hex>";
// receivers recompute it and reject old timestamps to stop replays.
const (
	SignatureHeader = "X-Trail-Signature"
	TimestampHeader = "X-Trail-Timestamp"
)

// Sign returns the X-Trail-Signature value for body sent at timestamp (Unix
// seconds, as in X-Trail-Timestamp).
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// CheckSignature reports whether sig is Sign(secret, timestamp, body),
// in constant time, for receivers.
func CheckSignature(secret []byte, timestamp int64, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, timestamp, body)))
}

// errPermanent marks a refusal not worth retrying.
var errPermanent = errors.New("refused")

func (m *Manager) deliver(w Webhook, body []byte, kind string) {
	wait := m.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := m.post(w, body)
		if err == nil {
			return
		}
		if errors.Is(err, errPermanent) || attempt >= m.cfg.Attempts {
			m.log.Error("couldn't deliver alert to webhook", "url", w.URL, "kind", kind, "attempts", attempt, "err", err)
			return
		}
		m.log.Warn("alert webhook failed; retrying", "url", w.URL, "kind", kind, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-m.stop:
			t.Stop()
			m.log.Error("alert not delivered: shutting down", "url", w.URL, "kind", kind, "attempts", attempt)
			return
		}
		wait = min(2*wait, time.Minute)
	}
}

func (m *Manager) post(w Webhook, body []byte) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequest(http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	req.Header.Set(SignatureHeader, Sign(w.Secret, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return fmt.Errorf("%w: webhook answered %s", errPermanent, resp.Status)
	}
}
