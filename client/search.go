package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/searchdoc"
)

// Limits of a search.
const (
	// DefaultSearchLimit is the results per page when SearchQuery.Limit is 0.
	DefaultSearchLimit = 100
	// MaxSearchLimit is the most results one page may ask for.
	MaxSearchLimit = 1000
	// MaxTextQuery bounds SearchQuery.Text, in bytes; MaxTextTerms the
	// words and phrases in it.
	MaxTextQuery = 1024
	MaxTextTerms = 32
)

// Orders of search results, by log index.
const (
	Newest = "newest"
	Oldest = "oldest"
)

// SearchQuery is a search of the log (GET /v1/events). Every field is
// optional; the filters given must all hold. String filters match the
// field exactly. Time ranges include their start and exclude their end.
type SearchQuery struct {
	Actor        string // event.actor.id
	Action       string // event.action
	ResourceType string // event.resource.type
	ResourceID   string // event.resource.id
	Outcome      string // event.outcome: success, failure or unknown
	Source       string // the authenticated producer, as the server wrote it
	Via          string // the ingestion path: json, k8s, syslog, otlp, ...

	// Since and Until bound the event's own time (event.time); zero means
	// unbounded.
	Since, Until time.Time
	// ReceivedSince and ReceivedUntil bound when the server received it.
	ReceivedSince, ReceivedUntil time.Time

	// Text is a free-text query over the event's strings (see ParseText).
	Text string

	// Order is Newest (the default) or Oldest, by log index.
	Order string
	// Limit is the most results in one page: default DefaultSearchLimit,
	// at most MaxSearchLimit.
	Limit int
	// Cursor continues a search where a page ended (SearchPage.Next).
	Cursor string
}

// Values returns the query as URL parameters of GET /v1/events; times are
// RFC 3339 with nanoseconds, in UTC.
func (q *SearchQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	setTime := func(k string, t time.Time) {
		if !t.IsZero() {
			v.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	set("actor", q.Actor)
	set("action", q.Action)
	set("resource_type", q.ResourceType)
	set("resource_id", q.ResourceID)
	set("outcome", q.Outcome)
	set("source", q.Source)
	set("via", q.Via)
	setTime("since", q.Since)
	setTime("until", q.Until)
	setTime("received_since", q.ReceivedSince)
	setTime("received_until", q.ReceivedUntil)
	set("q", q.Text)
	set("order", q.Order)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	return v
}

// SearchDoc is what a search sees of one entry: the fields the filters
// compare and the text that Text searches. DocOf derives it from an entry;
// the server's index holds the same, but is not trusted.
type SearchDoc struct {
	Time, Received                                                time.Time
	Actor, Action, ResourceType, ResourceID, Outcome, Source, Via string
	// Text is the entry's searchable words, lower case, separated by one
	// space: the source, via, event id, actor, action, resource, outcome,
	// reason, and every string and number in details and original.
	Text string
}

// DocOf returns the search document of an entry: the event envelope as
// the server wrote it (for an entry over 64 KiB, its body, not the
// reference the tree holds). It reads the fields leniently (the server's
// index and the client's check read them with this same function), and
// fails only for what is not an envelope: not a JSON object of the
// envelope's shape, or without a source and via.
func DocOf(entry []byte) (SearchDoc, error) {
	if d, ok := fastDocOf(entry); ok {
		return d, nil
	}
	return jsonDocOf(entry)
}

// fastDocOf returns DocOf(entry) for the envelopes searchdoc.Read reads,
// without encoding/json, which was most of the time DocOf took.
func fastDocOf(entry []byte) (SearchDoc, bool) {
	f, ok := searchdoc.Read(entry)
	if !ok {
		return SearchDoc{}, false
	}
	// f's strings share entry's bytes, which the caller may change: the
	// document's are copied, in one allocation with its text.
	fields := [...]*string{&f.Actor, &f.Action, &f.ResourceType, &f.ResourceID, &f.Outcome, &f.Source, &f.Via}
	b := make([]byte, 0, 256)
	b = searchdoc.AppendText(b, &f.Strs, f.Details, f.Original)
	text := len(b)
	for _, s := range fields {
		b = append(b, *s...)
	}
	all := string(b)
	off := text
	for _, s := range fields {
		n := len(*s)
		*s = all[off : off+n]
		off += n
	}
	return SearchDoc{
		Time: f.Time, Received: f.Received,
		Actor: f.Actor, Action: f.Action, ResourceType: f.ResourceType, ResourceID: f.ResourceID,
		Outcome: f.Outcome, Source: f.Source, Via: f.Via,
		Text: all[:text],
	}, true
}

// jsonDocOf is DocOf with encoding/json, for any entry.
func jsonDocOf(entry []byte) (SearchDoc, error) {
	var env docEnvelope
	if err := json.Unmarshal(entry, &env); err != nil {
		return SearchDoc{}, fmt.Errorf("not an event envelope: %v", err)
	}
	if env.Source == "" || env.Via == "" {
		return SearchDoc{}, errors.New("not an event envelope: no source or via")
	}
	e := &env.Event
	strs := [searchdoc.NumStrs]string{env.Source, env.Via, e.ID, e.Actor.ID, e.Actor.Type, e.Actor.IP, e.Actor.UserAgent,
		e.Action, e.Resource.Type, e.Resource.ID, e.Outcome, e.Reason}
	return SearchDoc{
		Time: e.Time, Received: env.Received,
		Actor: e.Actor.ID, Action: e.Action, ResourceType: e.Resource.Type, ResourceID: e.Resource.ID,
		Outcome: e.Outcome, Source: env.Source, Via: env.Via,
		Text: string(searchdoc.AppendText(make([]byte, 0, 256), &strs, e.Details, e.Original)),
	}, nil
}

// docEnvelope is the part of an event.Envelope that search reads.
type docEnvelope struct {
	Received time.Time `json:"received"`
	Source   string    `json:"source"`
	Via      string    `json:"via"`
	Event    struct {
		ID    string    `json:"id"`
		Time  time.Time `json:"time"`
		Actor struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			IP        string `json:"ip"`
			UserAgent string `json:"user_agent"`
		} `json:"actor"`
		Action   string `json:"action"`
		Resource struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		} `json:"resource"`
		Outcome  string          `json:"outcome"`
		Reason   string          `json:"reason"`
		Details  json.RawMessage `json:"details"`
		Original json.RawMessage `json:"original"`
	} `json:"event"`
}

// TextQuery is a parsed free-text query. Its syntax, a safe subset of
// SQLite FTS5's:
//
//	word         entries with the word (case-insensitive)
//	word*        a word starting with it
//	"two words"  the words next to each other, in order ("a b"* for a prefix)
//	a OR b       either (OR binds tighter than the implicit AND)
//	-word        NOT word: entries without it (needs at least one positive term)
//
// Words are runs of letters and digits; "user.login" is the phrase
// "user login". A term is an entry's word sequence, matched anywhere in
// SearchDoc.Text.
type TextQuery struct {
	groups [][]textTerm // AND of ORs
	not    []textTerm
}

type textTerm struct {
	words  []string
	prefix bool
}

// ParseText parses a free-text query. Its errors name what is wrong, fit
// to show the user.
func ParseText(q string) (*TextQuery, error) {
	if len(q) > MaxTextQuery {
		return nil, fmt.Errorf("longer than %d bytes", MaxTextQuery)
	}
	if !utf8.ValidString(q) {
		return nil, errors.New("not valid UTF-8")
	}
	tq := &TextQuery{}
	orNext, notNext, terms := false, false, 0
	for i := 0; i < len(q); {
		if q[i] == ' ' || q[i] == '\t' {
			i++
			continue
		}
		var raw string
		neg, quoted := notNext, false
		notNext = false
		if q[i] == '-' {
			neg = true
			i++
		}
		if i < len(q) && q[i] == '"' {
			end := strings.IndexByte(q[i+1:], '"')
			if end < 0 {
				return nil, errors.New("unbalanced quote")
			}
			raw, quoted = q[i+1:i+1+end], true
			i += end + 2
		} else {
			end := strings.IndexAny(q[i:], " \t\"")
			if end < 0 {
				end = len(q) - i
			}
			raw = q[i : i+end]
			i += end
		}
		if !quoted && !neg {
			switch raw {
			case "OR":
				if orNext || len(tq.groups) == 0 {
					return nil, errors.New("OR must stand between two terms")
				}
				orNext = true
				continue
			case "AND":
				continue
			case "NOT":
				notNext = true
				continue
			}
		}
		prefix := false
		if i < len(q) && q[i] == '*' && quoted {
			prefix = true
			i++
		} else if !quoted && strings.HasSuffix(raw, "*") {
			prefix, raw = true, strings.TrimSuffix(raw, "*")
		}
		words := strings.Fields(string(searchdoc.AppendTokens(nil, raw)))
		if len(words) == 0 {
			return nil, fmt.Errorf("%q has no letters or digits to search for", raw)
		}
		if terms++; terms > MaxTextTerms {
			return nil, fmt.Errorf("more than %d terms", MaxTextTerms)
		}
		t := textTerm{words: words, prefix: prefix}
		switch {
		case neg && orNext:
			return nil, errors.New("OR cannot join an excluded term")
		case neg:
			tq.not = append(tq.not, t)
		case orNext:
			g := &tq.groups[len(tq.groups)-1]
			*g = append(*g, t)
			orNext = false
		default:
			tq.groups = append(tq.groups, []textTerm{t})
		}
	}
	switch {
	case orNext:
		return nil, errors.New("OR must stand between two terms")
	case notNext:
		return nil, errors.New("NOT must come before a term")
	case len(tq.groups) == 0:
		return nil, errors.New("needs at least one word that must match")
	}
	return tq, nil
}

// FTS5 returns the query in SQLite FTS5 syntax: every term a quoted
// string of words, so that nothing the user typed is read as FTS5 syntax.
func (tq *TextQuery) FTS5() string {
	var b strings.Builder
	term := func(t textTerm) {
		b.WriteString(`"` + strings.Join(t.words, " ") + `"`)
		if t.prefix {
			b.WriteString(" *")
		}
	}
	b.WriteString("(")
	for i, g := range tq.groups {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("(")
		for j, t := range g {
			if j > 0 {
				b.WriteString(" OR ")
			}
			term(t)
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	if len(tq.not) > 0 {
		b.WriteString(" NOT (")
		for i, t := range tq.not {
			if i > 0 {
				b.WriteString(" OR ")
			}
			term(t)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Match reports whether the words of a document's text satisfy the query.
func (tq *TextQuery) Match(text string) bool {
	words := strings.Fields(text)
	for _, g := range tq.groups {
		if !slices.ContainsFunc(g, func(t textTerm) bool { return t.in(words) }) {
			return false
		}
	}
	return !slices.ContainsFunc(tq.not, func(t textTerm) bool { return t.in(words) })
}

func (t textTerm) in(words []string) bool {
	n := len(t.words)
outer:
	for i := 0; i+n <= len(words); i++ {
		for j, w := range t.words {
			got := words[i+j]
			if j == n-1 && t.prefix {
				if !strings.HasPrefix(got, w) {
					continue outer
				}
			} else if got != w {
				continue outer
			}
		}
		return true
	}
	return false
}

// Mismatch returns the name of the first query parameter that d does not
// satisfy, or "" if it satisfies all of them. The free text is checked
// only when text is not nil (ParseText(q.Text)).
func (q *SearchQuery) Mismatch(d *SearchDoc, text *TextQuery) string {
	for _, f := range []struct{ name, want, got string }{
		{"actor", q.Actor, d.Actor}, {"action", q.Action, d.Action},
		{"resource_type", q.ResourceType, d.ResourceType}, {"resource_id", q.ResourceID, d.ResourceID},
		{"outcome", q.Outcome, d.Outcome}, {"source", q.Source, d.Source}, {"via", q.Via, d.Via},
	} {
		if f.want != "" && f.want != f.got {
			return f.name
		}
	}
	for _, r := range []struct {
		name     string
		bound, t time.Time
		start    bool
	}{
		{"since", q.Since, d.Time, true}, {"until", q.Until, d.Time, false},
		{"received_since", q.ReceivedSince, d.Received, true}, {"received_until", q.ReceivedUntil, d.Received, false},
	} {
		if r.bound.IsZero() {
			continue
		}
		if r.start && r.t.Before(r.bound) || !r.start && !r.t.Before(r.bound) {
			return r.name
		}
	}
	if text != nil && !text.Match(d.Text) {
		return "q"
	}
	return ""
}

// filtered reports whether q has any filter or text.
func (q *SearchQuery) filtered() bool {
	v := q.Values()
	v.Del("order")
	v.Del("limit")
	v.Del("cursor")
	return len(v) > 0
}

// SearchResult is one entry a search found, verified: its leaf is in the
// tree of the page's checkpoint, and its event satisfies the query.
type SearchResult struct {
	Entry
	// Body is the event envelope: Leaf itself, or for an entry over 64 KiB
	// the body its reference leaf names, checked against the reference's
	// hash and size.
	Body json.RawMessage
}

// SearchPage is one page of search results, all proven against one signed
// checkpoint.
type SearchPage struct {
	// Checkpoint is the signed checkpoint every result's proof leads to.
	Checkpoint Checkpoint
	// Indexed is how many entries of the log the server's index held: the
	// search saw entries below min(Indexed, Checkpoint.Size) only.
	Indexed int64
	// Results, in the order asked for.
	Results []*SearchResult
	// Next continues the search (SearchQuery.Cursor), or is "" after the
	// last page.
	Next string
}

// searchResponse is the JSON of GET /v1/events.
type searchResponse struct {
	Checkpoint string `json:"checkpoint"`
	Indexed    int64  `json:"indexed"`
	Results    []struct {
		Index          *int64          `json:"index"`
		Leaf           json.RawMessage `json:"leaf"`
		Body           json.RawMessage `json:"body"`
		InclusionProof []string        `json:"inclusion_proof"`
	} `json:"results"`
	NextCursor string `json:"next_cursor"`
}

// Search returns one page of the entries that satisfy q. Nothing the
// server's index says is trusted: the checkpoint's signature, every
// result's inclusion proof in that checkpoint's tree, the order of the
// results, and that each result's event satisfies every filter of q are
// all checked here, and a failure is an error wrapping ErrVerification
// that names the entry. What cannot be checked is that the server left
// nothing out.
func (c *Client) Search(ctx context.Context, q SearchQuery) (*SearchPage, error) {
	if c.verifier == nil {
		return nil, ErrNoVerifierKey
	}
	var text *TextQuery
	if q.Text != "" {
		var err error
		if text, err = ParseText(q.Text); err != nil {
			return nil, fmt.Errorf("bad text query (q): %w", err)
		}
	}
	var resp searchResponse
	if err := c.getJSON(ctx, "/v1/events", q.Values(), &resp); err != nil {
		return nil, err
	}
	cp, err := c.verifyCheckpoint([]byte(resp.Checkpoint))
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultSearchLimit
	}
	if len(resp.Results) > limit {
		return nil, fmt.Errorf("%w: the server sent %d results, %d were asked for", ErrVerification, len(resp.Results), limit)
	}
	page := &SearchPage{Checkpoint: cp, Indexed: resp.Indexed, Next: resp.NextCursor, Results: make([]*SearchResult, len(resp.Results))}
	for i, r := range resp.Results {
		if r.Index == nil || len(r.Leaf) == 0 {
			return nil, fmt.Errorf("%w: search result %d has no index or leaf", ErrVerification, i)
		}
		index := *r.Index
		if i > 0 {
			prev := *resp.Results[i-1].Index
			if q.Order == Oldest && index <= prev || q.Order != Oldest && index >= prev {
				return nil, fmt.Errorf("%w: search results out of order: entry %d after %d", ErrVerification, index, prev)
			}
		}
		proof, err := decodeHashes(r.InclusionProof)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: inclusion proof: %v", ErrVerification, index, err)
		}
		e := Entry{Index: index, Leaf: r.Leaf, LeafHash: tlog.RecordHash(r.Leaf), Checkpoint: cp, Proof: proof}
		if err := checkInclusion(proof, cp, index, e.LeafHash); err != nil {
			return nil, err
		}
		body, err := entryBody(r.Leaf, r.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrVerification, index, err)
		}
		doc, err := DocOf(body)
		if err != nil && q.filtered() {
			return nil, fmt.Errorf("%w: entry %d cannot satisfy the query: it is not an event envelope (%v)", ErrVerification, index, err)
		}
		if p := q.Mismatch(&doc, text); err == nil && p != "" {
			return nil, fmt.Errorf("%w: entry %d does not satisfy %s: the server's index is wrong or was altered", ErrVerification, index, p)
		}
		page.Results[i] = &SearchResult{Entry: e, Body: body}
	}
	return page, nil
}

// largePrefix starts the leaf of an entry stored apart (over 64 KiB).
const largePrefix = `{"trail_large_entry":`

// entryBody returns the envelope of a result: the leaf, or the body of a
// large entry's reference leaf, checked against the reference.
func entryBody(leaf, body json.RawMessage) ([]byte, error) {
	if !bytes.HasPrefix(leaf, []byte(largePrefix)) {
		return leaf, nil
	}
	var ref struct {
		L struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		} `json:"trail_large_entry"`
	}
	if err := json.Unmarshal(leaf, &ref); err != nil {
		return nil, fmt.Errorf("malformed large-entry reference: %v", err)
	}
	sum := sha256.Sum256(body)
	if fmt.Sprintf("%x", sum) != ref.L.SHA256 || int64(len(body)) != ref.L.Size {
		return nil, fmt.Errorf("the body sent does not match the large-entry reference in its leaf")
	}
	return body, nil
}
