package index

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailaudit/trail/client"
)

// ParamError is a malformed search parameter: the HTTP API answers 400
// with its message, which names the parameter.
type ParamError struct {
	Param   string
	Problem string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Problem }

// Query is a parsed search.
type Query struct {
	client.SearchQuery
	// Text is the parsed SearchQuery.Text, or nil.
	Text *client.TextQuery
	// After is the cursor's position: results continue past this index
	// (below it for newest first, above for oldest first); -1 for none.
	After int64
	// hash binds cursors to the query they continue.
	hash string
}

var params = []string{"actor", "action", "resource_type", "resource_id", "outcome", "source", "via",
	"since", "until", "received_since", "received_until", "q", "order", "limit", "cursor"}

// ParseQuery parses the parameters of GET /v1/events. Relative times
// ("24h", "90m", "7d") count back from now. Every error is a *ParamError.
func ParseQuery(v url.Values, now time.Time) (*Query, error) {
	for name, vals := range v {
		if name == "" {
			return nil, &ParamError{`""`, "a parameter without a name"}
		}
		if !slices.Contains(params, name) {
			return nil, &ParamError{name, fmt.Sprintf("unknown parameter; known: %s", strings.Join(params, ", "))}
		}
		if len(vals) > 1 {
			return nil, &ParamError{name, "given more than once"}
		}
	}
	q := &Query{After: -1}
	for _, f := range []struct {
		name string
		dst  *string
		max  int
	}{
		{"actor", &q.Actor, 1024}, {"action", &q.Action, 256}, {"resource_type", &q.ResourceType, 256},
		{"resource_id", &q.ResourceID, 1024}, {"outcome", &q.Outcome, 16}, {"source", &q.Source, 1024}, {"via", &q.Via, 32},
	} {
		s := v.Get(f.name)
		if len(s) > 4*f.max {
			return nil, &ParamError{f.name, fmt.Sprintf("longer than any %s can be", f.name)}
		}
		*f.dst = s
	}
	switch q.Outcome {
	case "", "success", "failure", "unknown":
	default:
		return nil, &ParamError{"outcome", fmt.Sprintf("%q: want success, failure or unknown", q.Outcome)}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}, {"received_since", &q.ReceivedSince}, {"received_until", &q.ReceivedUntil}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		t, err := ParseTime(s, now)
		if err != nil {
			return nil, &ParamError{f.name, err.Error()}
		}
		*f.dst = t
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, &ParamError{"until", "must be after since"}
	}
	if !q.ReceivedSince.IsZero() && !q.ReceivedUntil.IsZero() && !q.ReceivedSince.Before(q.ReceivedUntil) {
		return nil, &ParamError{"received_until", "must be after received_since"}
	}
	if s := v.Get("q"); s != "" {
		tq, err := client.ParseText(s)
		if err != nil {
			return nil, &ParamError{"q", err.Error()}
		}
		q.SearchQuery.Text, q.Text = s, tq
	}
	switch o := v.Get("order"); o {
	case "", client.Newest, client.Oldest:
		q.Order = o
	default:
		return nil, &ParamError{"order", fmt.Sprintf("%q: want newest or oldest", o)}
	}
	q.Limit = client.DefaultSearchLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > client.MaxSearchLimit {
			return nil, &ParamError{"limit", fmt.Sprintf("%q: want a number from 1 to %d", s, client.MaxSearchLimit)}
		}
		q.Limit = n
	}
	q.hash = queryHash(v)
	if s := v.Get("cursor"); s != "" {
		after, err := parseCursor(s, q)
		if err != nil {
			return nil, &ParamError{"cursor", err.Error()}
		}
		q.After = after
	}
	return q, nil
}

// ParseTime parses an RFC 3339 time, or a duration before now such as
// "24h", "90m" or "7d".
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := parseAgo(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time such as 2026-11-29T08:00:00Z, or a time before now such as 24h, 90m or 7d", s)
	}
	return now.Add(-d), nil
}

func parseAgo(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 || n > 1e6 {
			return 0, fmt.Errorf("bad days")
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration")
	}
	return d, nil
}

func (q *Query) newest() bool { return q.Order != client.Oldest }

// queryHash names the filters and order of a query (not its limit or
// cursor), so that a cursor is only used with the query it continues.
func queryHash(v url.Values) string {
	c := url.Values{}
	for k, vs := range v {
		if k != "cursor" && k != "limit" {
			c[k] = vs
		}
	}
	sum := sha256.Sum256([]byte(c.Encode()))
	return hex.EncodeToString(sum[:6])
}

// cursor encodes the position after index for q: opaque to clients.
func (q *Query) cursor(index int64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "1.%d.%s", index, q.hash))
}

func parseCursor(s string, q *Query) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return 0, fmt.Errorf("malformed: pass next_cursor as it came")
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 || parts[0] != "1" {
		return 0, fmt.Errorf("malformed: pass next_cursor as it came")
	}
	after, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || after < 0 {
		return 0, fmt.Errorf("malformed: pass next_cursor as it came")
	}
	if parts[2] != q.hash {
		return 0, fmt.Errorf("made for another query: keep the filters and order of the search it came from")
	}
	return after, nil
}
