package index

import (
	"slices"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
)

// oracle answers searches by reading every entry, as a client checks a
// result: DocOf, then Mismatch.
type oracle struct {
	docs []*client.SearchDoc // nil: not an event envelope
}

func newOracle(t *testing.T, l *ledger.Log, n int64) *oracle {
	t.Helper()
	leaves, err := l.ReadEntries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	o := &oracle{}
	for _, leaf := range leaves {
		body, err := l.Body(t.Context(), leaf)
		if err != nil {
			t.Fatal(err)
		}
		if doc, err := client.DocOf(body); err == nil {
			o.docs = append(o.docs, &doc)
		} else {
			o.docs = append(o.docs, nil)
		}
	}
	return o
}

// search returns the entries below bound that satisfy cq, in its order.
func (o *oracle) search(t *testing.T, cq client.SearchQuery, bound int64) []int64 {
	t.Helper()
	var tq *client.TextQuery
	if cq.Text != "" {
		var err error
		if tq, err = client.ParseText(cq.Text); err != nil {
			t.Fatal(err)
		}
	}
	v := cq.Values()
	v.Del("order")
	v.Del("limit")
	filtered := len(v) > 0
	out := []int64{}
	for i, d := range o.docs[:bound] {
		if d == nil && !filtered || d != nil && cq.Mismatch(d, tq) == "" {
			out = append(out, int64(i))
		}
	}
	if cq.Order != client.Oldest {
		slices.Reverse(out)
	}
	return out
}

// leafAt returns an envelope of the given times.
func leafAt(t *testing.T, when, received time.Time, actor, reason string) []byte {
	t.Helper()
	leaf, err := event.Encode(event.Envelope{Received: received, Source: "api", Via: "json",
		Event: event.Event{Time: when, Actor: event.Actor{ID: actor}, Action: "user.login", Outcome: event.Success, Reason: reason}})
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestReviewTimeBounds: events and bounds outside the years int64
// nanoseconds reach, and at exact boundaries, are found as [since, until)
// says.
func TestReviewTimeBounds(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	var times []time.Time
	for _, y := range []int{1, 1500, 1677, 1678, 2000, 2261, 2262, 3000, 9999} {
		times = append(times, time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC))
	}
	times = append(times,
		time.Date(2262, 1, 1, 0, 30, 0, 0, time.UTC),                       // saturated, though int64 reaches it
		time.Date(2261, 12, 31, 22, 0, 0, 0, time.FixedZone("x", -3*3600)), // the same year in UTC
		time.Date(2026, 11, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	)
	var leaves [][]byte
	for i, a := range times {
		for j, b := range times {
			if (i+j)%3 == 0 {
				leaves = append(leaves, leafAt(t, a, b, "alice", ""))
			}
		}
	}
	appendLeaves(t, l, leaves)
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	o := newOracle(t, l, l.Size())
	var bounds []time.Time
	for _, x := range times {
		bounds = append(bounds, x, x.Add(time.Nanosecond), x.Add(-time.Nanosecond), x.Add(time.Hour))
	}
	bounds = append(bounds, time.Date(2262, 1, 1, 1, 0, 0, 0, time.UTC), time.Date(2261, 12, 31, 23, 0, 0, 0, time.FixedZone("y", -2*3600)))
	n := 0
	for i, lo := range bounds {
		for j, hi := range bounds {
			if (i*7+j)%5 != 0 {
				continue
			}
			for k := range 4 {
				cq := client.SearchQuery{Limit: 1000, Order: []string{client.Oldest, client.Newest}[k%2]}
				switch k {
				case 0:
					cq.Until = hi
				case 1:
					cq.Since, cq.Until = lo, hi
					if !lo.Before(hi) {
						continue
					}
				case 2:
					cq.ReceivedUntil = hi
				case 3:
					cq.ReceivedSince, cq.ReceivedUntil, cq.Actor = lo, hi, "alice"
					if !lo.Before(hi) {
						continue
					}
				}
				n++
				want := o.search(t, cq, l.Size())
				// The index may return more (the client drops them); it
				// must not miss any.
				got := searchAll(t, ix, cq, l.Size())
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Fatalf("query %v misses entry %d (time %v, received %v):\n got %v\nwant %v",
							cq.Values(), w, o.docs[w].Time, o.docs[w].Received, got, want)
					}
				}
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d queries", n)
	}
}
