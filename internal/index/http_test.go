package index

import (
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// TestMisplacedEntries: when the index says an entry lies elsewhere in its
// bundle than it does (a damaged index), the search still answers with the
// entries themselves, read from their bundles, and says the index is
// damaged.
func TestMisplacedEntries(t *testing.T) {
	var logs servertest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	var ix *Index
	s := servertest.Start(t, servertest.Options{Register: func(srv *server.Server) {}})
	ix, err := Open(t.Context(), Options{Dir: filepath.Join(s.Dir, DirName), Source: s.Log, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	h := &handler{srv: s.Server, log: s.Log, ix: ix, logger: logger, now: time.Now,
		locate: func(idx int64) (int64, int, bool) {
			off, n, ok := ix.Locate(idx)
			return off + 1, n, ok // one byte off
		}}
	s.Server.Handle("GET /v1/events", server.Auditors, h.search)
	ix.Start()

	ctx := t.Context()
	var evs []event.Event
	for i := range 40 {
		actor := "alice"
		if i%3 == 0 {
			actor = "bob"
		}
		evs = append(evs, event.Event{Time: time.Now(), Actor: event.Actor{ID: actor}, Action: "secret.read", Outcome: event.Success})
	}
	idxs, err := s.Server.Ingest(ctx, tlsconf.Identity{Name: "api-1", Role: tlsconf.RoleWriter}, "json", evs)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ix.Next() > idxs[len(idxs)-1] })
	auditor := newClient(t, s, "auditor-1", tlsconf.RoleAuditor)
	page, err := auditor.Search(ctx, client.SearchQuery{Actor: "bob", Order: client.Oldest})
	if err != nil {
		t.Fatalf("Search with misplaced entries = %v, want the entries read from their bundles", err)
	}
	var want []int64
	for i, e := range evs {
		if e.Actor.ID == "bob" {
			want = append(want, idxs[i])
		}
	}
	var got []int64
	for _, r := range page.Results {
		got = append(got, r.Index)
	}
	if !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if !logs.Contains("the index is damaged") {
		t.Errorf("no warning that the index is damaged; the log says:\n%s", logs.String())
	}
}
