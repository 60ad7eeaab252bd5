package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/k8s"
)

// samples is the shared directory of real senders' records.
var samples = filepath.Join("..", "..", "..", "testdata", "samples", "k8s-audit")

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samples, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sampleBodies returns every body in the shared samples: each .json file,
// and each line of each .jsonl file.
func sampleBodies(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(samples, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s: %v", samples, err)
	}
	bodies := map[string][]byte{}
	for _, f := range files {
		b := readSample(t, filepath.Base(f))
		if !strings.HasSuffix(f, ".jsonl") {
			bodies[filepath.Base(f)] = b
			continue
		}
		for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			bodies[fmt.Sprintf("%s:%d", filepath.Base(f), i+1)] = line
		}
	}
	return bodies
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func compact(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeSamples(t *testing.T) {
	ignoreID := cmpopts.IgnoreFields(event.Event{}, "ID", "Details", "Original")
	tests := []struct {
		name string
		want []event.Event
	}{
		{"falco_create_secret.v1.json", []event.Event{{
			Time:     mustTime("2019-11-18T04:40:56.741993Z"),
			Actor:    event.Actor{ID: "minikube-user", Type: "user", IP: "10.0.2.15", UserAgent: "kubectl/v1.13.3 (linux/amd64) kubernetes/721bfa7"},
			Action:   "k8s.create",
			Resource: event.Resource{Type: "secrets", ID: "sysdig-agent/sysdig-agent"},
			Outcome:  event.Success,
		}}},
		{"falco_exec_pod.legacy.json", []event.Event{{
			Time:     mustTime("2018-10-26T13:38:34.902914Z"),
			Actor:    event.Actor{ID: "minikube-user", Type: "user", IP: "192.168.99.1"},
			Action:   "k8s.create",
			Resource: event.Resource{Type: "pods/exec", ID: "default/nginx-deployment-7998647bdf-phvq7"},
			Outcome:  event.Success,
		}}},
		{"tutorial_eventlist_create_pod.v1.jsonl:1", []event.Event{{
			Time:     mustTime("2021-02-10T00:28:46.451356Z"),
			Actor:    event.Actor{ID: "kubernetes-admin", Type: "user", IP: "192.168.229.157", UserAgent: "kubectl/v1.20.1 (linux/amd64) kubernetes/c4d7527"},
			Action:   "k8s.create",
			Resource: event.Resource{Type: "pods", ID: "kube-system/"},
			Outcome:  event.Unknown,
		}}},
		{"tutorial_eventlist_create_pod.v1.jsonl:2", []event.Event{{
			Time:     mustTime("2021-02-10T00:28:46.467111Z"),
			Actor:    event.Actor{ID: "kubernetes-admin", Type: "user", IP: "192.168.229.157", UserAgent: "kubectl/v1.20.1 (linux/amd64) kubernetes/c4d7527"},
			Action:   "k8s.create",
			Resource: event.Resource{Type: "pods", ID: "kube-system/webhook-audit"},
			Outcome:  event.Success,
		}}},
	}
	bodies := sampleBodies(t)
	if len(bodies) != len(tests) {
		t.Errorf("%d sample bodies, %d tested: test every sample", len(bodies), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bodies[tt.name]
			got, err := k8s.Decode(body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreID); diff != "" {
				t.Errorf("Decode mismatch (-want +got):\n%s", diff)
			}
			for i, ev := range got {
				if err := ev.Validate(); err != nil {
					t.Errorf("event %d: Validate = %v", i, err)
				}
				var item struct {
					AuditID string          `json:"auditID"`
					Stage   string          `json:"stage"`
					Items   json.RawMessage `json:"items"`
				}
				if err := json.Unmarshal(ev.Original, &item); err != nil {
					t.Fatal(err)
				}
				if item.Items != nil {
					t.Errorf("event %d: Original is the list, want the item", i)
				}
				if prefix := item.AuditID + "/" + item.Stage + "/"; !strings.HasPrefix(ev.ID, prefix) || len(ev.ID) != len(prefix)+32 {
					t.Errorf("event %d: ID = %q, want %s and 32 hex digits", i, ev.ID, prefix)
				}
			}
			if !strings.HasSuffix(tt.name, ".json") {
				return
			}
			// A single Event body is kept whole, as sent, compacted.
			if want := compact(t, body); !bytes.Equal(got[0].Original, want) {
				t.Errorf("Original = %s\nwant %s", got[0].Original, want)
			}
		})
	}
}

func TestDecodeDetails(t *testing.T) {
	got, err := k8s.Decode(readSample(t, "falco_create_secret.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(got[0].Details, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"audit_id":    "c07ab0e2-9b07-4cc6-8e3b-91ac69586a1f",
		"stage":       "ResponseComplete",
		"level":       "RequestResponse",
		"verb":        "create",
		"request_uri": "/api/v1/namespaces/sysdig-agent/secrets",
		"groups":      []any{"system:masters", "system:authenticated"},
		"source_ips":  []any{"10.0.2.15"},
		"api_version": "v1",
		"code":        201.0,
		"annotations": map[string]any{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("Details mismatch (-want +got):\n%s", diff)
	}
}

// item returns an audit event of the EventList shape the webhook sends
// (no kind, no apiVersion) with the fields of extra merged over it.
func item(extra string) string {
	base := `"auditID":"a-1","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"stageTimestamp":"2026-01-02T03:04:05.123456Z"`
	if extra == "" {
		return "{" + base + "}"
	}
	return "{" + base + "," + extra + "}"
}

func list(items ...string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
}

func TestDecodeMapping(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		check func(ev event.Event) string
	}{
		{"anonymous", `"user":{"username":""}`, func(ev event.Event) string {
			return check(ev.Actor, event.Actor{ID: "system:anonymous", Type: "anonymous"})
		}},
		{"serviceaccount", `"user":{"username":"system:serviceaccount:kube-system:replicaset-controller"}`, func(ev event.Event) string {
			return check(ev.Actor.Type, "serviceaccount")
		}},
		{"node", `"user":{"username":"system:node:worker-1"}`, func(ev event.Event) string { return check(ev.Actor.Type, "node") }},
		{"component", `"user":{"username":"system:kube-scheduler"}`, func(ev event.Event) string { return check(ev.Actor.Type, "system") }},
		{"forbidden", `"responseStatus":{"code":403,"status":"Failure","reason":"Forbidden","message":"pods is forbidden: User \"u\" cannot list"}`, func(ev event.Event) string {
			return check([]any{ev.Outcome, ev.Reason}, []any{event.Failure, `pods is forbidden: User "u" cannot list`})
		}},
		{"authorizer reason", `"responseStatus":{"code":403},"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":"RBAC: no"}`, func(ev event.Event) string {
			return check(ev.Reason, "RBAC: no")
		}},
		{"no status", ``, func(ev event.Event) string { return check(ev.Outcome, event.Unknown) }},
		{"code 0", `"responseStatus":{"metadata":{}}`, func(ev event.Event) string { return check(ev.Outcome, event.Unknown) }},
		{"switching protocols", `"responseStatus":{"code":101}`, func(ev event.Event) string { return check(ev.Outcome, event.Success) }},
		{"cluster-scoped", `"objectRef":{"resource":"nodes","name":"worker-1"}`, func(ev event.Event) string {
			return check(ev.Resource, event.Resource{Type: "nodes", ID: "worker-1"})
		}},
		{"non-resource", `"requestURI":"/healthz?verbose=1"`, func(ev event.Event) string {
			return check(ev.Resource, event.Resource{Type: "nonResourceURL", ID: "/healthz"})
		}},
		{"request received time", `"stageTimestamp":"","requestReceivedTimestamp":"2026-01-02T03:04:05Z"`, func(ev event.Event) string {
			return check(ev.Time, mustTime("2026-01-02T03:04:05Z"))
		}},
		{"v1beta1 timestamp", `"stageTimestamp":"","timestamp":"2018-10-26T13:38:34Z","metadata":{"creationTimestamp":"2018-10-26T13:38:34Z"}`, func(ev event.Event) string {
			return check(ev.Time, mustTime("2018-10-26T13:38:34Z"))
		}},
		{"long user name", `"user":{"username":"` + strings.Repeat("é", 3000) + `"}`, func(ev event.Event) string {
			return check(ev.Actor.ID, strings.Repeat("é", event.MaxIDLen))
		}},
		{"long request URI", `"requestURI":"/` + strings.Repeat("x", 100_000) + `","annotations":{"a":"` + strings.Repeat("y", 70_000) + `"}`, func(ev event.Event) string {
			var d map[string]any
			json.Unmarshal(ev.Details, &d)
			return check([]any{d["request_uri"], d["annotations"], d["audit_id"]}, []any{nil, nil, "a-1"})
		}},
		{"impersonation", `"impersonatedUser":{"username":"bob","groups":["dev"]}`, func(ev event.Event) string {
			var d map[string]any
			json.Unmarshal(ev.Details, &d)
			return check([]any{ev.Actor.ID, d["impersonated_user"]}, []any{"u", map[string]any{"username": "bob", "groups": []any{"dev"}}})
		}},
		{"extra fields", `"newField":{"x":[1,2]},"kind":"Event","apiVersion":"audit.k8s.io/v1"`, func(ev event.Event) string {
			return check(strings.Contains(string(ev.Original), `"newField":{"x":[1,2]}`), true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := k8s.Decode(list(item(tt.extra)))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if err := evs[0].Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if msg := tt.check(evs[0]); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func check(got, want any) string {
	if diff := cmp.Diff(want, got); diff != "" {
		return fmt.Sprintf("mismatch (-want +got):\n%s", diff)
	}
	return ""
}

func TestDecodeIDs(t *testing.T) {
	a := item(`"stage":"RequestReceived"`)
	b := item(`"stage":"ResponseComplete"`)
	evs, err := k8s.Decode(list(a, b, a))
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].ID == evs[1].ID {
		t.Errorf("two stages have the same ID %q", evs[0].ID)
	}
	if evs[0].ID != evs[2].ID {
		t.Errorf("the same event twice has IDs %q and %q", evs[0].ID, evs[2].ID)
	}
	// A reused auditID (the client's Audit-ID header) with other content is
	// another event, not a retry.
	other, err := k8s.Decode(list(item(`"stage":"RequestReceived","verb":"delete"`)))
	if err != nil {
		t.Fatal(err)
	}
	if other[0].ID == evs[0].ID {
		t.Errorf("different events with one auditID and stage have the same ID %q", other[0].ID)
	}
	if !strings.HasPrefix(other[0].ID, "a-1/RequestReceived/") {
		t.Errorf("ID = %q, want auditID/stage/hash", other[0].ID)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, "body: want a JSON object"},
		{"array", `[]`, "body: want a JSON object"},
		{"not JSON", `{"items":[`, "body: malformed JSON"},
		{"trailing garbage", `{"items":[]}x`, "body: malformed JSON"},
		{"invalid UTF-8", "{\"items\":[],\"x\":\"\xff\"}", "body: invalid UTF-8"},
		{"other kind", `{"kind":"PodList","items":[]}`, `body: kind "PodList": want EventList or Event`},
		{"other apiVersion", `{"kind":"EventList","apiVersion":"v1","items":[]}`, `body: apiVersion "v1": want audit.k8s.io/v1`},
		{"items not array", `{"kind":"EventList","items":{}}`, "body: items: cannot be JSON object"},
		{"item not object", string(list(item(""), `"x"`)), "items[1]: want a JSON object"},
		{"no auditID", string(list(item(""), `{"stage":"ResponseComplete"}`)), "items[1]: auditID: required"},
		{"no stage", string(list(item(`"stage":""`))), `items[0] (auditID "a-1"): stage: required`},
		{"no time", string(list(item(`"stageTimestamp":""`))), `items[0] (auditID "a-1"): stageTimestamp: required`},
		{"bad time", string(list(item(`"stageTimestamp":"yesterday"`))), `items[0] (auditID "a-1"): stageTimestamp: "yesterday" is not an RFC 3339 time`},
		{"bad code type", string(list(item(""), item(""), item(`"responseStatus":{"code":"201"}`))), "items[2]: responseStatus.code: cannot be JSON string"},
		{"item kind", string(list(item(`"kind":"Pod"`))), `items[0] (auditID "a-1"): kind "Pod": want Event`},
		{"single event", `{"kind":"Event","auditID":"x","stage":"ResponseComplete"}`, `event (auditID "x"): stageTimestamp: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := k8s.Decode([]byte(tt.body))
			if err == nil {
				t.Fatalf("Decode = %d events, want error %q", len(evs), tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Decode error = %q, want %q...", err, tt.want)
			}
		})
	}
}

func TestDecodeEmptyList(t *testing.T) {
	evs, err := k8s.Decode([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}`))
	if err != nil || len(evs) != 0 {
		t.Errorf("Decode(empty list) = %d events, %v; want 0, nil", len(evs), err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range sampleBodies(f) {
		f.Add(b)
	}
	f.Add(list(item(""), item(`"user":{},"objectRef":{"resource":"pods","subresource":"exec"}`)))
	f.Add([]byte(item(`"responseStatus":{"code":500,"message":"x"}`)))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := k8s.Decode(body)
		if err != nil {
			if _, ok := err.(*k8s.DecodeError); !ok {
				t.Fatalf("error %T %v, want *DecodeError", err, err)
			}
			return
		}
		for i, ev := range evs {
			if err := ev.Validate(); err != nil {
				t.Fatalf("event %d: Validate = %v", i, err)
			}
			// Each event's Original decodes alone to the same event.
			again, err := k8s.Decode(ev.Original)
			if err != nil {
				t.Fatalf("event %d: Decode(Original) = %v", i, err)
			}
			if len(again) != 1 {
				t.Fatalf("event %d: Decode(Original) = %d events", i, len(again))
			}
			if diff := cmp.Diff(ev, again[0]); diff != "" {
				t.Fatalf("event %d: round trip mismatch (-first +again):\n%s", i, diff)
			}
		}
	})
}
