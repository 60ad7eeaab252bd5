package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/otlp"
	"github.com/trailaudit/trail/internal/tlsconf"
)

var fence = regexp.MustCompile("(?s)```(\\w*)\n(.*?)```")

// documentedEnv returns the SDK environment block of
// docs/producers/opentelemetry.md.
func documentedEnv(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "producers", "opentelemetry.md"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, m := range fence.FindAllStringSubmatch(string(doc), -1) {
		if !strings.HasPrefix(m[2], "OTEL_EXPORTER_OTLP_") {
			continue
		}
		for line := range strings.SplitSeq(strings.TrimSpace(m[2]), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("documented environment: bad line %q", line)
			}
			env[k] = v
		}
	}
	if env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] == "" {
		t.Fatal("docs/producers/opentelemetry.md has no OTEL_EXPORTER_OTLP_LOGS_ENDPOINT block")
	}
	return env
}

// once503 answers the first request to /v1/logs with 503 and Retry-After
// after trail stored its records, so that the exporter's retry must append
// nothing.
type once503 struct {
	t        *testing.T
	next     http.Handler
	mu       sync.Mutex
	requests int
	gzipped  int
}

func (o *once503) wrap(next http.Handler) http.Handler { o.next = next; return o }

// count returns the requests to /v1/logs so far.
func (o *once503) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests
}

func (o *once503) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != otlp.Path {
		o.next.ServeHTTP(w, r)
		return
	}
	o.mu.Lock()
	o.requests++
	first := o.requests == 1
	if r.Header.Get("Content-Encoding") == "gzip" {
		o.gzipped++
	}
	o.mu.Unlock()
	if !first {
		o.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	o.next.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		o.t.Errorf("trail answered %d %s, want 200", rec.Code, rec.Body)
	}
	w.Header().Set("Retry-After", "0")
	w.WriteHeader(http.StatusServiceUnavailable)
}

func TestSDKExporter(t *testing.T) {
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) { testSDKExporter(t, compression) })
	}
}

func testSDKExporter(t *testing.T, compression string) {
	flaky := &once503{t: t}
	ts := startTrail(t, flaky.wrap)
	dir := t.TempDir()
	certPEM, keyPEM, err := ts.pki.IssueClient("billing-service", tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.crt": caPEM, "billing-service.crt": certPEM, "billing-service.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := strings.NewReplacer("https://trail.example.com:8443", ts.url, "/etc/trail/", dir+"/")
	env := documentedEnv(t)
	if env["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"] != "gzip" {
		t.Errorf("the documented environment does not compress")
	}
	env["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"] = compression
	for k, v := range env {
		t.Setenv(k, local.Replace(v))
	}

	var errMu sync.Mutex
	var exportErrs []error
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		errMu.Lock()
		exportErrs = append(exportErrs, err)
		errMu.Unlock()
	}))
	ctx := context.Background()
	// Everything but the retry timing comes from the environment.
	exp, err := otlploghttp.New(ctx, otlploghttp.WithRetry(otlploghttp.RetryConfig{
		Enabled: true, InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxElapsedTime: 10 * time.Second,
	}))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "billing"), attribute.String("host.name", "app-1"))
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	logger := provider.Logger("billing/audit", log.WithInstrumentationVersion("1.2.3"))

	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	const n = 50
	for i := range n {
		var r log.Record
		r.SetTimestamp(at.Add(time.Duration(i) * time.Millisecond))
		r.SetEventName("invoice.void")
		r.SetSeverity(log.SeverityInfo)
		r.SetBody(attribute.StringValue("voided an invoice"))
		r.AddAttributes(
			attribute.String("user.id", "alice"),
			attribute.String("client.address", "10.0.0.7"),
			attribute.String("event.outcome", "success"),
			attribute.Int("invoice", 1000+i),
			attribute.Bool("refund", i%2 == 0),
			attribute.StringSlice("tags", []string{"q4", "eu"}),
		)
		logger.Emit(ctx, r)
	}
	// An anonymous record: the service is the actor.
	var r log.Record
	r.SetTimestamp(at.Add(time.Second))
	r.SetBody(attribute.StringValue("nightly close"))
	logger.Emit(ctx, r)
	if err := provider.Shutdown(ctx); err != nil { // flushes
		t.Fatalf("Shutdown: %v", err)
	}
	errMu.Lock()
	if len(exportErrs) > 0 {
		t.Errorf("export errors: %v", exportErrs)
	}
	errMu.Unlock()
	if flaky.requests < 2 {
		t.Errorf("%d requests, want a retry after the 503", flaky.requests)
	}
	if wantGzip := compression == "gzip"; (flaky.gzipped > 0) != wantGzip || wantGzip && flaky.gzipped != flaky.requests {
		t.Errorf("%d of %d requests gzipped with compression %s", flaky.gzipped, flaky.requests, compression)
	}

	envs := ts.entries(t)
	if len(envs) != n+1 {
		t.Fatalf("log holds %d entries, want %d: the retry appended again or lost records", len(envs), n+1)
	}
	invoices := map[float64]bool{}
	for i, env := range envs[:n] {
		ev := env.Event
		if env.Source != "billing-service" || env.Via != "otlp" {
			t.Errorf("entry %d: source %q via %q", i, env.Source, env.Via)
		}
		want := event.Actor{ID: "alice", Type: "user", IP: "10.0.0.7"}
		if ev.Actor != want || ev.Action != "invoice.void" || ev.Outcome != event.Success {
			t.Errorf("entry %d: actor %+v action %q outcome %q", i, ev.Actor, ev.Action, ev.Outcome)
		}
		var d struct {
			Body       string         `json:"body"`
			Severity   string         `json:"severity_text"`
			SeverityN  int            `json:"severity_number"`
			Attributes map[string]any `json:"attributes"`
			Resource   map[string]any `json:"resource"`
			Scope      map[string]any `json:"scope"`
		}
		if err := json.Unmarshal(ev.Details, &d); err != nil {
			t.Fatal(err)
		}
		inv, _ := d.Attributes["invoice"].(float64)
		invoices[inv] = true
		wantAttrs := map[string]any{"user.id": "alice", "client.address": "10.0.0.7", "event.outcome": "success",
			"invoice": inv, "refund": int(inv)%2 == 0, "tags": []any{"q4", "eu"}}
		if diff := cmp.Diff(wantAttrs, d.Attributes); diff != "" {
			t.Errorf("entry %d: attributes (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(map[string]any{"service.name": "billing", "host.name": "app-1"}, d.Resource); diff != "" {
			t.Errorf("entry %d: resource (-want +got):\n%s", i, diff)
		}
		if d.Scope["name"] != "billing/audit" || d.Scope["version"] != "1.2.3" || d.Body != "voided an invoice" || d.SeverityN != 9 {
			t.Errorf("entry %d: details %s", i, ev.Details)
		}
		if !bytes.Contains(ev.Original, []byte(`"key":"invoice"`)) {
			t.Errorf("entry %d: original lacks the attributes: %s", i, ev.Original)
		}
	}
	if len(invoices) != n {
		t.Errorf("%d distinct records, want %d", len(invoices), n)
	}
	if last := envs[n].Event; last.Actor != (event.Actor{ID: "billing", Type: "service"}) || last.Action != otlp.DefaultAction {
		t.Errorf("anonymous record: actor %+v action %q", last.Actor, last.Action)
	}
}
