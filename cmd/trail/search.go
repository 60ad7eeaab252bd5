package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/index"
)

const searchHelp = `Usage: trail search [filters] [-q TEXT] [-order newest|oldest] [-limit N] [-cursor C | -all]
                    [-json] [-verify [-state FILE|DIR]] [connection flags]

Searches the log of a trail server (GET /v1/events; the auditor or admin
role) and prints the entries found, newest first: a table, or with -json
one line of JSON per entry, the leaf byte for byte as the log hashed it,
with its inclusion proof and the signed checkpoint it leads to.

Every filter given must hold; strings match exactly. Times are RFC 3339
(2026-11-29T08:00:00Z) or a time before now such as 24h, 90m or 7d; a range
includes its start and excludes its end. -q searches the words of the event
(actor, action, resource, reason, source, details, original):
  word  word*  "a phrase"  a OR b  -excluded

Nothing the server's index says is trusted: every result's inclusion proof
in the page's signed checkpoint is checked, and so is that its event really
satisfies every filter and -q. A result that fails is an error, exit code 1.
-verify also checks that the page's checkpoint extends the trusted state of
"trail verify -server" (and moves the trusted state forward), so that the
results come from the one log everyone else sees. What no client can check
is that the server left nothing out.

One page holds -limit entries (default 100, at most 1000); when there are
more, the cursor to pass with -cursor is printed on standard error, or -all
fetches every page.
` + clientHelp + `
Examples:
  trail search -actor alice -since 24h
  trail search -action namespace.delete -resource-id prod -since 2026-11-01T00:00:00Z -until 2026-11-02T00:00:00Z
  trail search -q '"permission denied" OR forbidden' -outcome failure -all -json > denied.ndjson
  trail search -source kube-apiserver -verify

Flags:
`

func init() { commands["search"] = runSearch }

// searchLagNote is the index lag, in entries, past which search says so.
const searchLagNote = 1000

func runSearch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("search", stderr, searchHelp)
	var q client.SearchQuery
	fs.StringVar(&q.Actor, "actor", "", "the actor's `id`")
	fs.StringVar(&q.Action, "action", "", "the `action`, such as user.login")
	fs.StringVar(&q.ResourceType, "resource-type", "", "the resource's `type`")
	fs.StringVar(&q.ResourceID, "resource-id", "", "the resource's `id`")
	fs.StringVar(&q.Outcome, "outcome", "", "success, failure or unknown")
	fs.StringVar(&q.Source, "source", "", "the producer's authenticated `name`")
	fs.StringVar(&q.Via, "via", "", "the ingestion `path`: json, k8s, syslog, otlp, ...")
	since := fs.String("since", "", "the event happened at or after `TIME`")
	until := fs.String("until", "", "the event happened before `TIME`")
	rsince := fs.String("received-since", "", "the server received it at or after `TIME`")
	runtil := fs.String("received-until", "", "the server received it before `TIME`")
	fs.StringVar(&q.Text, "q", "", "free `text`: word, word*, \"a phrase\", a OR b, -excluded")
	fs.StringVar(&q.Order, "order", client.Newest, "newest or oldest first, by log index")
	fs.IntVar(&q.Limit, "limit", client.DefaultSearchLimit, "entries per page, at most 1000")
	fs.StringVar(&q.Cursor, "cursor", "", "continue a search from the cursor printed after its last page")
	all := fs.Bool("all", false, "fetch every page")
	asJSON := fs.Bool("json", false, "print one JSON object per entry (NDJSON)")
	verifyState := fs.Bool("verify", false, "also check the page's checkpoint against the trusted state of trail verify -server")
	state := fs.String("state", "", "with -verify, the trusted state: a `file`, or a directory of one file per log (default as trail verify -server's)")
	cf := addClientFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	now := time.Now()
	for _, t := range []struct {
		flag string
		s    string
		dst  *time.Time
	}{{"since", *since, &q.Since}, {"until", *until, &q.Until}, {"received-since", *rsince, &q.ReceivedSince}, {"received-until", *runtil, &q.ReceivedUntil}} {
		if t.s == "" {
			continue
		}
		v, err := index.ParseTime(t.s, now)
		if err != nil {
			return usageError{fmt.Sprintf("-%s %v", t.flag, err)}
		}
		*t.dst = v
	}
	switch {
	case q.Order != client.Newest && q.Order != client.Oldest:
		return usageError{fmt.Sprintf("-order %q: want newest or oldest", q.Order)}
	case q.Limit < 1 || q.Limit > client.MaxSearchLimit:
		return usageError{fmt.Sprintf("-limit %d: want 1 to %d", q.Limit, client.MaxSearchLimit)}
	case *all && q.Cursor != "":
		return usageError{"-all and -cursor: give one"}
	case *state != "" && !*verifyState:
		return usageError{"-state needs -verify"}
	}
	if q.Text != "" {
		if _, err := client.ParseText(q.Text); err != nil {
			return usageError{fmt.Sprintf("-q: %v", err)}
		}
	}
	cfg, err := cf.config(true)
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	var trust *trustedChecker
	if *verifyState {
		if trust, err = newTrustedChecker(ctx, c, cfg.VerifierKey, *state, stderr); err != nil {
			return err
		}
	}
	out := &searchPrinter{w: stdout, json: *asJSON}
	var lag int64
	for {
		page, err := c.Search(ctx, q)
		if err != nil {
			return err
		}
		lag = page.Checkpoint.Size - page.Indexed
		if trust != nil {
			if err := trust.check(ctx, page.Checkpoint); err != nil {
				return err
			}
		}
		if err := out.page(page); err != nil {
			return err
		}
		if page.Next == "" {
			break
		}
		if !*all {
			fmt.Fprintf(stderr, "trail: more entries: continue with -cursor %s (or use -all)\n", page.Next)
			break
		}
		q.Cursor = page.Next
	}
	if err := out.flush(); err != nil {
		return err
	}
	if !*asJSON {
		if out.n == 0 {
			fmt.Fprintln(stderr, "trail: no entries found")
		} else {
			fmt.Fprintf(stderr, "trail: %d entries, each verified: in the tree of size %d of %s, and satisfying the query\n", out.n, out.size, c.Origin())
		}
		if trust != nil {
			fmt.Fprintf(stderr, "trail: the checkpoint extends the trusted state (%s)\n", trust.state.Path())
		}
	}
	// The search's own audit entry is always past the index; a lag of
	// more means the index is catching up with heavy appends.
	if lag > searchLagNote {
		fmt.Fprintf(stderr, "trail: note: the server's index is %d entries behind its log: the newest were not searched\n", lag)
	}
	return nil
}

// trustedChecker checks search checkpoints against the trusted state of
// trail verify -server, and moves it forward.
type trustedChecker struct {
	c       *client.Client
	state   *client.TrustedState
	trusted client.Checkpoint
}

func newTrustedChecker(ctx context.Context, c *client.Client, vkey, statePath string, stderr io.Writer) (*trustedChecker, error) {
	if statePath != "" {
		if fi, err := os.Stat(statePath); err == nil && fi.IsDir() || os.IsPathSeparator(statePath[len(statePath)-1]) {
			statePath = filepath.Join(statePath, client.TrustedStateFile(c.Origin()))
		}
	}
	state, err := client.NewTrustedState(statePath, vkey)
	if err != nil {
		return nil, err
	}
	u, err := c.UpdateTrusted(ctx, state)
	if err != nil {
		var serr *client.SecurityError
		if errors.As(err, &serr) {
			fmt.Fprintf(stderr, "trail: %s\n\n%s\n", serr, serr.Evidence())
			return nil, errReported
		}
		return nil, err
	}
	if u.Previous == nil {
		fmt.Fprintf(stderr, "trail: note: no checkpoint of %s was verified before: trusting size %d on first use (saved in %s)\n", u.Current.Origin, u.Current.Size, state.Path())
	}
	return &trustedChecker{c: c, state: state, trusted: u.Current}, nil
}

func (t *trustedChecker) check(ctx context.Context, cp client.Checkpoint) error {
	if err := t.c.CheckConsistency(ctx, t.trusted, cp); err != nil {
		return err
	}
	if cp.Size > t.trusted.Size {
		if err := t.state.Save(cp); err != nil {
			return err
		}
		t.trusted = cp
	}
	return nil
}

// searchPrinter prints results as a table or NDJSON.
type searchPrinter struct {
	w    io.Writer
	json bool
	tw   *tabwriter.Writer
	n    int
	size int64
}

func (p *searchPrinter) page(page *client.SearchPage) error {
	p.size = page.Checkpoint.Size
	for _, r := range page.Results {
		p.n++
		if p.json {
			if err := writeResultJSON(p.w, r); err != nil {
				return err
			}
			continue
		}
		if p.tw == nil {
			p.tw = tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(p.tw, "INDEX\tTIME\tACTOR\tACTION\tRESOURCE\tOUTCOME\tSOURCE")
		}
		d, err := client.DocOf(r.Body)
		if err != nil {
			fmt.Fprintf(p.tw, "%d\t-\t-\t-\t-\t-\t(not an event: %.40s)\n", r.Index, r.Body)
			continue
		}
		res := d.ResourceType
		if d.ResourceID != "" {
			res = strings.TrimPrefix(res+"/"+d.ResourceID, "/")
		}
		fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Index, d.Time.UTC().Format(time.RFC3339),
			cell(d.Actor), cell(d.Action), cell(res), cell(d.Outcome), cell(d.Source))
	}
	return nil
}

func (p *searchPrinter) flush() error {
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}

// cell makes s fit a table cell: one line, at most 60 characters.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return s
}

// writeResultJSON writes one result as a line of JSON, by hand so that the
// leaf is byte for byte what the log hashed.
func writeResultJSON(w io.Writer, r *client.SearchResult) error {
	proof := make([]string, len(r.Proof))
	for i, h := range r.Proof {
		proof[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	cp, _ := json.Marshal(string(r.Checkpoint.Note))
	ps, _ := json.Marshal(proof)
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"index":%d,"leaf":%s,`, r.Index, compactLine(r.Leaf))
	if !bytes.Equal(r.Body, r.Leaf) {
		fmt.Fprintf(&b, `"body":%s,`, compactLine(r.Body))
	}
	fmt.Fprintf(&b, "\"leaf_hash\":\"%s\",\"checkpoint\":%s,\"inclusion_proof\":%s,\"verified\":true}\n",
		base64.StdEncoding.EncodeToString(r.LeafHash[:]), cp, ps)
	_, err := w.Write(b.Bytes())
	return err
}

// compactLine returns a leaf as it is if it holds no newline (the leaves
// the server writes never do), else compacted, so that NDJSON stays one
// line per entry.
func compactLine(raw []byte) []byte {
	if !bytes.ContainsAny(raw, "\r\n") {
		return raw
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
