package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/alert"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/selfcheck"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/storage"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// watch is what trail serve runs to watch itself: the alert manager and
// the self-verifier that feeds it.
type watch struct {
	alerts  *alert.Manager
	checker *selfcheck.Checker
}

// newAlerts builds the alert manager for cfg: every alert is also
// appended to the log by srv, as an event of action trail.alert.
func newAlerts(cfg *serveConfig, srv *server.Server, origin string, logger *slog.Logger) (*alert.Manager, error) {
	var hooks []alert.Webhook
	for i, w := range cfg.Alerts.Webhooks {
		secret, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("alerts.webhooks[%d]: couldn't read secret: %w", i, err)
		}
		secret = bytes.TrimSpace(secret)
		if len(secret) < 16 {
			return nil, fmt.Errorf("alerts.webhooks[%d]: the secret in %s is shorter than 16 bytes", i, w.SecretFile)
		}
		tc, err := tlsconf.ClientFiles(w.CAFile, "", "")
		if err != nil {
			return nil, fmt.Errorf("alerts.webhooks[%d]: %w", i, err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hooks = append(hooks, alert.Webhook{URL: w.URL, Secret: secret, Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	}
	return alert.New(alert.Config{
		Origin:     origin,
		Webhooks:   hooks,
		Registerer: srv.Registry(),
		Logger:     logger,
		Repeat:     cfg.Alerts.Repeat,
		Record: func(ctx context.Context, a alert.Alert) error {
			details := map[string]any{"severity": a.Severity, "summary": a.Summary}
			if a.Where != "" {
				details["where"] = a.Where
			}
			if len(a.Details) > 0 {
				details["details"] = a.Details
			}
			_, err := srv.Audit(ctx, tlsconf.Identity{}, "trail.alert", event.Resource{Type: "trail.alert", ID: a.Kind}, details)
			return err
		},
	})
}

// startWatch starts self-verification of the log in store, raising an
// alert of kind log.damage for each damage found.
func startWatch(cfg *serveConfig, am *alert.Manager, store storage.Backend, l *ledger.Log, keys *ledger.Keys, logger *slog.Logger) (*watch, error) {
	w := &watch{alerts: am}
	if cfg.SelfCheck.Off {
		logger.Warn("self-verification is off (self_check.off): damage to stored data is found only by trail verify")
		return w, nil
	}
	var err error
	w.checker, err = selfcheck.Start(selfcheck.Config{
		Store:    store,
		Verifier: keys.Verifier,
		Latest: func() []byte {
			if cp := l.Latest(); cp != nil {
				return cp.Note
			}
			return nil
		},
		Published: func() ([]byte, error) {
			return os.ReadFile(filepath.Join(cfg.Data, "log", "checkpoint"))
		},
		Every:  cfg.SelfCheck.Every,
		Rate:   cfg.SelfCheck.Rate,
		Logger: logger,
		Report: func(d *selfcheck.Damage) {
			details := map[string]any{"what": d.What}
			if d.Index >= 0 {
				details["index"] = d.Index
			}
			am.Raise(alert.Alert{
				Kind:     "log.damage",
				Severity: alert.Critical,
				Summary:  "stored log data differs from what was signed: " + d.Error(),
				Where:    d.Where,
				Details:  details,
			})
		},
	})
	return w, err
}

// health lists the critical alerts, for /healthz.
func (w *watch) health() []string {
	if w == nil || w.alerts == nil {
		return nil
	}
	var out []string
	for _, a := range w.alerts.Unhealthy() {
		out = append(out, a.Kind+": "+a.Summary)
	}
	return out
}

// stop stops the checks, then waits for alert deliveries in flight.
func (w *watch) stop() {
	if w.checker != nil {
		w.checker.Stop()
	}
	w.alerts.Close()
}
