// Package k8s receives the Kubernetes API server's audit webhook: it decodes
// audit.k8s.io EventList bodies and maps each audit event to a trail event,
// keeping the event as sent in Original.
//
// The API server is pointed at trail by the kubeconfig of its
// --audit-webhook-config-file (see [Kubeconfig]); it POSTs batches of up to
// 400 events to [Path] and resends a whole batch on any answer but 2xx. The
// endpoint answers 200 only once every event of the batch is durable, and
// each event's id makes a resent batch append nothing twice.
//
// # Mapping
//
//	trail field     from the audit event
//	id              auditID "/" stage "/" 32 hex digits of SHA-256(the event as sent)
//	time            stageTimestamp, else requestReceivedTimestamp, else timestamp (v1beta1)
//	actor.id        user.username; "system:anonymous" when empty
//	actor.type      serviceaccount (system:serviceaccount:...), node (system:node:...),
//	                anonymous (system:anonymous), system (other system:...), else user
//	actor.ip        sourceIPs[0]
//	actor.user_agent userAgent
//	action          "k8s." verb, for example k8s.create, k8s.get, k8s.watch
//	resource.type   objectRef.resource, "/" objectRef.subresource when set (pods/exec);
//	                "nonResourceURL" for a request without objectRef
//	resource.id     namespace "/" name; name alone when cluster-scoped; namespace "/"
//	                when the name is unknown (list, or create before a name is given);
//	                the request path for a non-resource URL
//	outcome         responseStatus.code: below 400 success, 400 and up failure,
//	                absent or 0 unknown (stage RequestReceived has none)
//	reason          responseStatus.message, else its reason, else the authorizer's
//	                reason annotation when it forbade the request
//	details         audit_id, stage, level, verb, request_uri, groups, uid,
//	                impersonated_user, source_ips, api_group, api_version, code,
//	                annotations (the last ones dropped if details would pass 64 KiB)
//	original        the audit event exactly as sent, compact
//
// Strings longer than the event model allows are cut at its limits; the
// whole value is still in Original.
//
// # Why the id carries a hash
//
// The webhook resends a batch byte for byte, so (auditID, stage) alone would
// settle retries. But the API server takes auditID from the client's
// Audit-ID request header when it has one, so any user of the cluster can
// reuse another request's auditID. With ids of auditID/stage alone the
// second event would be a conflict that fails its whole batch, and after
// five tries the API server drops the batch: an audit record could be
// suppressed at will. The hash of the event makes a resent event the same id
// and a different event with a reused auditID a different one, logged too.
package k8s

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trailaudit/trail/event"
)

// The few parts of audit.k8s.io/v1 that trail reads, defined here so that
// the server does not depend on k8s.io modules. Unknown fields are ignored,
// as the API server's own decoder does, so older and newer shapes decode.

// auditEvent is an audit.k8s.io Event.
type auditEvent struct {
	Kind             string           `json:"kind"`
	APIVersion       string           `json:"apiVersion"`
	Level            string           `json:"level"`
	AuditID          string           `json:"auditID"`
	Stage            string           `json:"stage"`
	RequestURI       string           `json:"requestURI"`
	Verb             string           `json:"verb"`
	User             userInfo         `json:"user"`
	ImpersonatedUser *userInfo        `json:"impersonatedUser"`
	SourceIPs        []string         `json:"sourceIPs"`
	UserAgent        string           `json:"userAgent"`
	ObjectRef        *objectReference `json:"objectRef"`
	ResponseStatus   *status          `json:"responseStatus"`
	// RequestObject and ResponseObject are not decoded: they stay in
	// Original, and skipping them keeps decoding cheap.
	RequestReceivedTimestamp string            `json:"requestReceivedTimestamp"`
	StageTimestamp           string            `json:"stageTimestamp"`
	Timestamp                string            `json:"timestamp"` // audit.k8s.io/v1beta1
	Annotations              map[string]string `json:"annotations"`
}

type userInfo struct {
	Username string   `json:"username"`
	UID      string   `json:"uid"`
	Groups   []string `json:"groups"`
}

type objectReference struct {
	Resource    string `json:"resource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	APIGroup    string `json:"apiGroup"`
	APIVersion  string `json:"apiVersion"`
	Subresource string `json:"subresource"`
}

// status is a metav1.Status, as the audit event's responseStatus.
type status struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// eventList is an audit.k8s.io EventList, or a single Event: Decode tells
// them apart by kind and by the presence of items.
type eventList struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
	AuditID    string            `json:"auditID"` // only an Event has one
}

// DecodeError is a malformed body or audit event. Its message names the
// item ("items[3] (auditID ...): ..."), fit to answer the sender with.
type DecodeError struct {
	// Item is the index of the bad item in items, or -1 when the problem is
	// the body as a whole or its single event.
	Item int
	// AuditID is the bad item's auditID, if it could be read.
	AuditID string
	// Problem says what is wrong.
	Problem string
	list    bool
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	switch {
	case e.Item >= 0:
		fmt.Fprintf(&b, "items[%d]", e.Item)
	case e.list:
		b.WriteString("body")
	default:
		b.WriteString("event")
	}
	if e.AuditID != "" {
		fmt.Fprintf(&b, " (auditID %q)", clip(e.AuditID, 128))
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// Decode decodes an audit.k8s.io/v1 (or v1beta1) EventList, or a single
// Event, and maps every audit event to a trail event. Every returned event
// is valid. Any malformed item fails the whole body with a *DecodeError
// naming it: the API server resends batches whole, so a batch is taken or
// refused whole.
func Decode(body []byte) ([]event.Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, &DecodeError{Item: -1, list: true, Problem: "want a JSON object: an audit.k8s.io EventList or Event"}
	}
	if !utf8.Valid(body) {
		return nil, &DecodeError{Item: -1, list: true, Problem: "invalid UTF-8"}
	}
	var list eventList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, &DecodeError{Item: -1, list: true, Problem: jsonProblem(err)}
	}
	if err := checkAPIVersion(list.APIVersion); err != nil {
		return nil, &DecodeError{Item: -1, list: true, Problem: err.Error()}
	}
	switch {
	case list.Kind == "EventList" || list.Kind == "" && list.Items != nil && list.AuditID == "":
		events := make([]event.Event, len(list.Items))
		for i, raw := range list.Items {
			ev, err := decodeItem(raw)
			if err != nil {
				err.Item, err.list = i, true
				return nil, err
			}
			events[i] = ev
		}
		return events, nil
	case list.Kind == "" || list.Kind == "Event":
		ev, err := decodeItem(body)
		if err != nil {
			err.Item = -1
			return nil, err
		}
		return []event.Event{ev}, nil
	}
	return nil, &DecodeError{Item: -1, list: true, Problem: fmt.Sprintf("kind %q: want EventList or Event", clip(list.Kind, 64))}
}

func checkAPIVersion(v string) error {
	if v != "" && !strings.HasPrefix(v, "audit.k8s.io/") {
		return fmt.Errorf("apiVersion %q: want audit.k8s.io/v1", clip(v, 64))
	}
	return nil
}

// decodeItem decodes and maps one audit event.
func decodeItem(raw []byte) (event.Event, *DecodeError) {
	var a auditEvent
	if len(raw) == 0 || raw[0] != '{' {
		return event.Event{}, &DecodeError{Problem: "want a JSON object"}
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return event.Event{}, &DecodeError{Problem: jsonProblem(err)}
	}
	fail := func(format string, args ...any) (event.Event, *DecodeError) {
		return event.Event{}, &DecodeError{AuditID: a.AuditID, Problem: fmt.Sprintf(format, args...)}
	}
	if a.Kind != "" && a.Kind != "Event" {
		return fail("kind %q: want Event", clip(a.Kind, 64))
	}
	if err := checkAPIVersion(a.APIVersion); err != nil {
		return fail("%v", err)
	}
	if a.AuditID == "" {
		return fail("auditID: required")
	}
	if a.Stage == "" {
		return fail("stage: required")
	}
	t, field, err := eventTime(&a)
	if err != nil {
		return fail("%s: %v", field, err)
	}
	var original bytes.Buffer
	original.Grow(len(raw))
	if err := json.Compact(&original, raw); err != nil { // Unmarshal accepted it
		return fail("%s", jsonProblem(err))
	}
	ev := mapEvent(&a, t, original.Bytes())
	if err := ev.Validate(); err != nil {
		// mapEvent keeps every field within the limits: this is a bug.
		return fail("mapped to an invalid event: %v", err)
	}
	return ev, nil
}

// eventTime returns when the event's stage was reached, and the field it
// came from.
func eventTime(a *auditEvent) (time.Time, string, error) {
	for _, f := range []struct{ name, value string }{
		{"stageTimestamp", a.StageTimestamp},
		{"requestReceivedTimestamp", a.RequestReceivedTimestamp},
		{"timestamp", a.Timestamp},
	} {
		if f.value == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.value)
		if err != nil {
			return time.Time{}, f.name, fmt.Errorf("%q is not an RFC 3339 time", clip(f.value, 64))
		}
		return t, f.name, nil
	}
	return time.Time{}, "stageTimestamp", errors.New("required")
}

func mapEvent(a *auditEvent, t time.Time, original []byte) event.Event {
	sum := sha256.Sum256(original)
	ev := event.Event{
		ID:       clip(a.AuditID, 900) + "/" + clip(a.Stage, 64) + "/" + hex.EncodeToString(sum[:16]),
		Time:     t,
		Actor:    actor(a),
		Action:   clip("k8s."+orDefault(a.Verb, "request"), event.MaxActionLen),
		Resource: resource(a),
		Outcome:  event.Unknown,
		Original: original,
	}
	if s := a.ResponseStatus; s != nil && s.Code != 0 {
		ev.Outcome = event.Success
		if s.Code >= 400 {
			ev.Outcome = event.Failure
		}
		ev.Reason = clip(orDefault(s.Message, s.Reason), event.MaxReasonLen)
	}
	if ev.Reason == "" && a.Annotations["authorization.k8s.io/decision"] == "forbid" {
		ev.Reason = clip(a.Annotations["authorization.k8s.io/reason"], event.MaxReasonLen)
	}
	ev.Details = details(a)
	return ev
}

func actor(a *auditEvent) event.Actor {
	name := orDefault(a.User.Username, "system:anonymous")
	typ := "user"
	switch {
	case name == "system:anonymous":
		typ = "anonymous"
	case strings.HasPrefix(name, "system:serviceaccount:"):
		typ = "serviceaccount"
	case strings.HasPrefix(name, "system:node:"):
		typ = "node"
	case strings.HasPrefix(name, "system:"):
		typ = "system"
	}
	act := event.Actor{ID: clip(name, event.MaxIDLen), Type: typ, UserAgent: clip(a.UserAgent, event.MaxUserAgentLen)}
	if len(a.SourceIPs) > 0 {
		act.IP = clip(a.SourceIPs[0], event.MaxIPLen)
	}
	return act
}

func resource(a *auditEvent) event.Resource {
	o := a.ObjectRef
	if o == nil {
		if a.RequestURI == "" {
			return event.Resource{}
		}
		path, _, _ := strings.Cut(a.RequestURI, "?")
		return event.Resource{Type: "nonResourceURL", ID: clip(path, event.MaxIDLen)}
	}
	typ := o.Resource
	if o.Subresource != "" {
		typ += "/" + o.Subresource
	}
	id := o.Name
	if o.Namespace != "" {
		id = o.Namespace + "/" + o.Name
	}
	return event.Resource{Type: clip(typ, event.MaxTypeLen), ID: clip(id, event.MaxIDLen)}
}

// maxRequestURI bounds details.request_uri; the whole URI is in Original.
const maxRequestURI = 4096

type eventDetails struct {
	AuditID          string            `json:"audit_id"`
	Stage            string            `json:"stage"`
	Level            string            `json:"level,omitempty"`
	Verb             string            `json:"verb,omitempty"`
	RequestURI       string            `json:"request_uri,omitempty"`
	Groups           []string          `json:"groups,omitempty"`
	UID              string            `json:"uid,omitempty"`
	ImpersonatedUser *impersonated     `json:"impersonated_user,omitempty"`
	SourceIPs        []string          `json:"source_ips,omitempty"`
	APIGroup         string            `json:"api_group,omitempty"`
	APIVersion       string            `json:"api_version,omitempty"`
	Code             int32             `json:"code,omitempty"`
	Annotations      map[string]string `json:"annotations,omitempty"`
}

type impersonated struct {
	Username string   `json:"username,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// details returns the event's details, dropping the fields that can be
// large when the whole would not fit the event model's limit.
func details(a *auditEvent) json.RawMessage {
	d := eventDetails{
		AuditID:     clip(a.AuditID, event.MaxIDLen),
		Stage:       clip(a.Stage, 256),
		Level:       clip(a.Level, 256),
		Verb:        clip(a.Verb, 256),
		RequestURI:  clip(a.RequestURI, maxRequestURI),
		Groups:      a.User.Groups,
		UID:         a.User.UID,
		SourceIPs:   a.SourceIPs,
		Annotations: a.Annotations,
	}
	if u := a.ImpersonatedUser; u != nil {
		d.ImpersonatedUser = &impersonated{Username: u.Username, Groups: u.Groups}
	}
	if o := a.ObjectRef; o != nil {
		d.APIGroup, d.APIVersion = o.APIGroup, o.APIVersion
	}
	if s := a.ResponseStatus; s != nil {
		d.Code = s.Code
	}
	b, _ := json.Marshal(d) // strings and string slices always marshal
	if len(b) <= event.MaxDetailsSize {
		return b
	}
	// Everything dropped is in Original.
	d.RequestURI, d.Groups, d.SourceIPs, d.Annotations = "", nil, nil, nil
	d.UID, d.ImpersonatedUser = clip(d.UID, event.MaxIDLen), nil
	b, _ = json.Marshal(d) // now at most a few KiB
	return b
}

// jsonProblem shortens encoding/json's messages for the sender.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s: cannot be JSON %s", field, te.Value)
	}
	return "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clip cuts s to at most n characters.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
