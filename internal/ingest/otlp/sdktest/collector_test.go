package sdktest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.yaml.in/yaml/v3"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// documentedCollector returns the otlphttp/trail exporter block of the
// Collector configuration in docs/producers/opentelemetry.md.
func documentedCollector(t *testing.T) map[string]any {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "producers", "opentelemetry.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fence.FindAllStringSubmatch(string(doc), -1) {
		if m[1] != "yaml" || !strings.Contains(m[2], "otlphttp/trail") {
			continue
		}
		var cfg struct {
			Exporters map[string]map[string]any `yaml:"exporters"`
		}
		if err := yaml.Unmarshal([]byte(m[2]), &cfg); err != nil {
			t.Fatalf("documented Collector configuration: %v", err)
		}
		if exp := cfg.Exporters["otlphttp/trail"]; exp != nil {
			return exp
		}
	}
	t.Fatal("docs/producers/opentelemetry.md has no otlphttp/trail exporter")
	return nil
}

// TestCollectorExporter runs the OpenTelemetry Collector's own otlphttp
// exporter with the documented configuration (all but the persistent
// queue's storage extension, which a test host does not have), with its
// queue and retries, against trail refusing each first attempt.
func TestCollectorExporter(t *testing.T) {
	flaky := &once503{t: t}
	ts := startTrail(t, flaky.wrap)
	dir := t.TempDir()
	certPEM, keyPEM, err := ts.pki.IssueClient("collector", tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.crt": caPEM, "collector.crt": certPEM, "collector.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	block := documentedCollector(t)
	block["logs_endpoint"] = strings.Replace(block["logs_endpoint"].(string), "https://trail.example.com:8443", ts.url, 1)
	tlsBlock := block["tls"].(map[string]any)
	for k, v := range tlsBlock {
		if s, ok := v.(string); ok {
			tlsBlock[k] = strings.Replace(s, "/etc/trail/", dir+"/", 1)
		}
	}
	delete(block["sending_queue"].(map[string]any), "storage")
	block["retry_on_failure"].(map[string]any)["initial_interval"] = "10ms"

	factory := otlphttpexporter.NewFactory()
	cfg := factory.CreateDefaultConfig().(*otlphttpexporter.Config)
	if err := confmap.NewFromStringMap(block).Unmarshal(cfg); err != nil {
		t.Fatalf("documented exporter configuration: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("documented exporter configuration: %v", err)
	}
	ctx := context.Background()
	exp, err := factory.CreateLogs(ctx, exportertest.NewNopSettings(factory.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "payments")
	sl := rl.ScopeLogs().AppendEmpty()
	for i := range 20 {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Date(2026, 11, 29, 8, 0, i, 0, time.UTC)))
		lr.SetEventName("refund.issue")
		lr.Attributes().PutStr("user.id", "dave")
		lr.Attributes().PutInt("refund", int64(i))
	}
	if err := exp.ConsumeLogs(ctx, ld); err != nil {
		t.Fatalf("ConsumeLogs: %v", err)
	}
	// The queue sends in the background; a shutdown would cut the retry
	// short, so wait for it.
	for deadline := time.Now().Add(10 * time.Second); flaky.count() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if flaky.requests < 2 || flaky.gzipped != flaky.requests {
		t.Errorf("%d requests, %d gzipped; want a retry, all gzipped", flaky.requests, flaky.gzipped)
	}
	envs := ts.entries(t)
	if len(envs) != 20 {
		t.Fatalf("log holds %d entries, want 20", len(envs))
	}
	for i, env := range envs {
		if env.Source != "collector" || env.Event.Actor != (event.Actor{ID: "dave", Type: "user"}) || env.Event.Action != "refund.issue" {
			t.Errorf("entry %d: source %q actor %+v action %q", i, env.Source, env.Event.Actor, env.Event.Action)
		}
	}
}
