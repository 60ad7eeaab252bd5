package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal(Schema, &s); err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	return s
}

// jsonNames returns the JSON member names of the struct type of v, in order.
func jsonNames(v any) []string {
	var names []string
	for f := range reflect.TypeOf(v).Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

func sortedKeys(m any) []string {
	var keys []string
	for k := range m.(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestSchemaMatchesTypes(t *testing.T) {
	s := loadSchema(t)
	if got := s["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", got)
	}
	props := s["properties"].(map[string]any)
	obj := func(name string) map[string]any { return props[name].(map[string]any) }
	for _, c := range []struct {
		name   string
		schema map[string]any
		goType any
		fields []string // the decoder's list
	}{
		{"event", s, Event{}, eventFields},
		{"actor", obj("actor"), Actor{}, actorFields},
		{"resource", obj("resource"), Resource{}, resourceFields},
	} {
		if got := sortedKeys(c.schema["properties"]); !cmp.Equal(got, sorted(jsonNames(c.goType))) {
			t.Errorf("%s: schema properties %v, Go json names %v", c.name, got, sorted(jsonNames(c.goType)))
		}
		if !cmp.Equal(jsonNames(c.goType), c.fields) {
			t.Errorf("%s: Go json names %v, decoder fields %v", c.name, jsonNames(c.goType), c.fields)
		}
		if c.schema["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties = %v, want false", c.name, c.schema["additionalProperties"])
		}
	}
	for _, c := range []struct {
		schema map[string]any
		want   []any
	}{
		{s, []any{"time", "actor", "action"}},
		{obj("actor"), []any{"id"}},
		{obj("resource"), nil},
	} {
		got, _ := c.schema["required"].([]any)
		if !cmp.Equal(got, c.want) {
			t.Errorf("required = %v, want %v", got, c.want)
		}
	}
	sub := func(path string) map[string]any {
		m := s
		for p := range strings.SplitSeq(path, ".") {
			m = m["properties"].(map[string]any)[p].(map[string]any)
		}
		return m
	}
	for path, want := range map[string]int{
		"id": MaxIDLen, "actor.id": MaxIDLen, "actor.type": MaxTypeLen, "actor.ip": MaxIPLen,
		"actor.user_agent": MaxUserAgentLen, "action": MaxActionLen, "resource.type": MaxTypeLen,
		"resource.id": MaxIDLen, "reason": MaxReasonLen,
	} {
		if got := sub(path)["maxLength"]; got != float64(want) {
			t.Errorf("%s: maxLength = %v, want %d", path, got, want)
		}
	}
	if got, want := sub("outcome")["enum"], []any{string(Success), string(Failure), string(Unknown)}; !cmp.Equal(got, want) {
		t.Errorf("outcome enum = %v, want %v", got, want)
	}
	if got := sub("outcome")["default"]; got != string(Unknown) {
		t.Errorf("outcome default = %v, want %q", got, Unknown)
	}
	if got := sub("time")["pattern"]; got != timePattern {
		t.Errorf("time pattern = %v, want %v", got, timePattern)
	}
}

// TestSchemaAgrees runs every sample through schema.json, with a small
// evaluator of the keywords it uses, and through Parse: both must accept the
// valid ones, both must refuse the invalid ones except those that the schema
// documents as Go-only checks, which the schema must accept.
func TestSchemaAgrees(t *testing.T) {
	s := loadSchema(t)
	check := func(name, body string, want bool) {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || dec.More() {
			return // not one JSON value: no schema applies
		}
		if got := evalSchema(t, s, v); got != want {
			t.Errorf("%s: schema accepts = %v, want %v", name, got, want)
		}
	}
	for _, tc := range validEvents(t) {
		check(tc.name, tc.body, true)
	}
	for _, tc := range badEvents {
		check(tc.name, tc.body, tc.goOnly)
	}
}

// evalSchema reports whether v is valid against schema s, for the keywords
// schema.json uses. An unknown keyword fails the test, so that the evaluator
// grows with the schema.
func evalSchema(t *testing.T, s map[string]any, v any) bool {
	t.Helper()
	for k, want := range s {
		ok := true
		switch k {
		case "$schema", "$id", "$comment", "title", "description", "default", "format":
			// Annotations.
		case "type":
			ok = jsonType(v) == want
		case "properties":
			if m, isObj := v.(map[string]any); isObj {
				for name, sub := range want.(map[string]any) {
					if mv, present := m[name]; present && !evalSchema(t, sub.(map[string]any), mv) {
						ok = false
					}
				}
			}
		case "additionalProperties":
			if want != false {
				t.Fatalf("additionalProperties %v not supported", want)
			}
			if m, isObj := v.(map[string]any); isObj {
				props, _ := s["properties"].(map[string]any)
				for name := range m {
					if _, known := props[name]; !known {
						ok = false
					}
				}
			}
		case "required":
			if m, isObj := v.(map[string]any); isObj {
				for _, name := range want.([]any) {
					if _, present := m[name.(string)]; !present {
						ok = false
					}
				}
			}
		case "minLength", "maxLength":
			if str, isStr := v.(string); isStr {
				n, limit := utf8.RuneCountInString(str), int(want.(float64))
				ok = k == "minLength" && n >= limit || k == "maxLength" && n <= limit
			}
		case "enum":
			ok = slices.Contains(want.([]any), v)
		case "pattern":
			if str, isStr := v.(string); isStr {
				ok = regexp.MustCompile(want.(string)).MatchString(str)
			}
		case "not":
			ok = !evalSchema(t, want.(map[string]any), v)
		default:
			t.Fatalf("schema keyword %q not supported by the test evaluator", k)
		}
		if !ok {
			return false
		}
	}
	return true
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if !bytes.ContainsAny([]byte(v), ".eE") {
			return "integer" // also a number; schema.json asks for neither
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	panic("unexpected JSON value")
}
