package index

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
)

// Register serves GET /v1/events (the search) on srv for the auditor and
// admin roles, from ix over the log l.
func Register(srv *server.Server, l *ledger.Log, ix *Index, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{srv: srv, log: l, ix: ix, logger: logger, now: time.Now, locate: ix.Locate}
	srv.Handle("GET /v1/events", server.Auditors, h.search)
}

// maxIndexWait bounds how long a search waits for the index to catch up.
const maxIndexWait = 500 * time.Millisecond

type handler struct {
	srv    *server.Server
	log    *ledger.Log
	ix     *Index
	logger *slog.Logger
	now    func() time.Time
	// locate is ix.Locate; tests give it wrong places.
	locate func(idx int64) (off int64, n int, ok bool)
}

// result is one entry of a search reply.
type result struct {
	Index int64
	Leaf  []byte // JSON, as stored
	// Body is the entry of a large-entry reference leaf (JSON, as stored).
	Body  []byte
	Proof []tlog.Hash
}

// reply is a page of a search. It is encoded by appendJSON as
//
//	{"checkpoint": "...", "indexed": N,
//	 "results": [{"index": I, "leaf": {...}, "body": {...}, "inclusion_proof": ["base64", ...]}, ...],
//	 "next_cursor": "..."}
//
// with "body" only for a large entry and "next_cursor" only when there is
// a next page.
type reply struct {
	Checkpoint string
	Indexed    int64
	Results    []result
	NextCursor string
}

// appendJSON appends the reply as JSON. Leaves and bodies are copied byte
// for byte (entry checks that they are JSON): a client hashes exactly what
// the log stores, where encoding/json would compact them. A page holds
// about 2,400 proof hashes, so they are base64-encoded in place.
func (out *reply) appendJSON(b []byte) []byte {
	b = append(b, `{"checkpoint":`...)
	b = appendString(b, out.Checkpoint)
	b = append(b, `,"indexed":`...)
	b = strconv.AppendInt(b, out.Indexed, 10)
	b = append(b, `,"results":[`...)
	for k, r := range out.Results {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, r.Index, 10)
		b = append(b, `,"leaf":`...)
		b = append(b, r.Leaf...)
		if r.Body != nil {
			b = append(b, `,"body":`...)
			b = append(b, r.Body...)
		}
		b = append(b, `,"inclusion_proof":[`...)
		for j, h := range r.Proof {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, h[:])
			b = append(b, '"')
		}
		b = append(b, "]}"...)
	}
	b = append(b, ']')
	if out.NextCursor != "" {
		b = append(b, `,"next_cursor":`...)
		b = appendString(b, out.NextCursor)
	}
	return append(b, "}\n"...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // a string always marshals
		panic(err)
	}
	return append(b, q...)
}

// search answers one page of a search: the entries as the log stores them,
// each with its inclusion proof against the one signed checkpoint of the
// reply. The search is recorded in the log before it is answered.
func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	values := r.URL.Query()
	q, err := ParseQuery(values, h.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// A search sees every entry appended before it was made, unless the
	// index lags by more than a batch (under heavy appends): then it
	// answers at once from what is indexed, and says how far that goes.
	size := h.log.Size()
	if size-h.ix.Next() <= int64(h.ix.opts.Batch) {
		h.ix.WaitFor(ctx, size, maxIndexWait)
	}
	details := map[string]any{}
	for k := range values {
		details[k] = values.Get(k)
	}
	// The search is recorded in the log before it is answered; the record's
	// synced write overlaps the search and the reads.
	recorded := make(chan error, 1)
	go func() {
		_, err := h.srv.Audit(ctx, server.Identity(r), "trail.search", event.Resource{Type: "trail.index"}, map[string]any{"query": details})
		recorded <- err
	}()
	// The page is proven against the newest checkpoint; one is signed only
	// when a result lies past it (an entry of the last second), since
	// signing costs a few synced writes.
	// Entries appended since the search began, its own record among
	// them, are not searched: the answer does not depend on how fast the
	// follower is.
	indexed := min(h.ix.Next(), size)
	idxs, more, err := h.ix.Search(ctx, q, indexed)
	if err != nil {
		<-recorded
		h.unavailable(w, "couldn't search the index", err)
		return
	}
	cp := h.log.Latest()
	if cp == nil || len(idxs) > 0 && slices.Max(idxs) >= cp.Size {
		if cp, err = h.log.Checkpoint(ctx); err != nil {
			<-recorded
			h.unavailable(w, "couldn't sign a checkpoint", err)
			return
		}
	}
	out := reply{Checkpoint: string(cp.Note), Indexed: indexed}
	out.Results = make([]result, len(idxs))
	errs := h.read(ctx, idxs, cp.Size, out.Results)
	if err := <-recorded; err != nil {
		h.unavailable(w, "couldn't record the search in the log", err)
		return
	}
	for j, err := range errs {
		if err != nil {
			h.unavailable(w, fmt.Sprintf("couldn't read entry %d", idxs[j]), err)
			return
		}
	}
	if more && len(idxs) > 0 {
		out.NextCursor = q.cursor(idxs[len(idxs)-1])
	}
	// About 1.6 KB a result: leaf and proof.
	body := out.appendJSON(make([]byte, 0, 1024+len(out.Results)*1664))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// readWorkers bounds the reads of one page that are in flight at once.
const readWorkers = 16

// bundleSize is the entries of one C2SP entry bundle.
const bundleSize = 256

// read reads and proves the results idxs in the tree of the given size,
// into out, on a few workers that overlap the reads with the proofs'
// hashing. An entry whose place in its bundle the index knows is read
// alone (ledger.ReadEntryAt checks it against the tree); the others are
// read by bundle, each bundle once, since storage reads a whole bundle for
// one entry.
func (h *handler) read(ctx context.Context, idxs []int64, size int64, out []result) []error {
	// A job is one result at a known place, or the results of one bundle.
	type job struct {
		js     []int // positions in idxs
		placed bool
		off    int64
		n      int
	}
	var jobs []job
	at := map[int64]int{}
	for j, i := range idxs {
		if off, n, ok := h.locate(i); ok {
			jobs = append(jobs, job{js: []int{j}, placed: true, off: off, n: n})
			continue
		}
		g, ok := at[i/bundleSize]
		if !ok {
			g = len(jobs)
			at[i/bundleSize] = g
			jobs = append(jobs, job{})
		}
		jobs[g].js = append(jobs[g].js, j)
	}
	errs := make([]error, len(idxs))
	var misplaced atomic.Int64
	var wg sync.WaitGroup
	// Many more workers than cores: a read that misses the page cache
	// waits for the disk in its own thread while the others go on.
	workers := min(len(jobs), readWorkers)
	for k := range workers {
		wg.Go(func() {
			for g := k; g < len(jobs); g += workers {
				jb := jobs[g]
				if !jb.placed {
					h.readGroup(ctx, idxs, jb.js, size, out, errs)
					continue
				}
				j := jb.js[0]
				leaf, err := h.log.ReadEntryAt(ctx, idxs[j], jb.off, jb.n)
				switch {
				case errors.Is(err, ledger.ErrMisplaced):
					misplaced.Add(1)
					h.readGroup(ctx, idxs, jb.js, size, out, errs)
				case err != nil:
					errs[j] = err
				default:
					out[j], errs[j] = h.entry(ctx, idxs[j], leaf, size)
				}
			}
		})
	}
	wg.Wait()
	if n := misplaced.Load(); n > 0 {
		h.logger.Warn("search index: entries not where it recorded them, read from their bundles instead; the index is damaged (delete it to rebuild)", "entries", n)
	}
	return errs
}

// readGroup reads the results at positions js of idxs, all in one entry
// bundle, from the log (never from the index) with one read, and proves
// them in the tree of the given size.
func (h *handler) readGroup(ctx context.Context, idxs []int64, js []int, size int64, out []result, errs []error) {
	lo, hi := idxs[js[0]], idxs[js[0]]
	for _, j := range js {
		lo, hi = min(lo, idxs[j]), max(hi, idxs[j])
	}
	leaves, err := h.log.ReadEntries(ctx, lo, hi+1)
	for _, j := range js {
		if err != nil {
			errs[j] = err
			continue
		}
		out[j], errs[j] = h.entry(ctx, idxs[j], leaves[idxs[j]-lo], size)
	}
}

// entry completes the result of entry i, whose leaf was read from the log,
// and proves it in the tree of the given size.
func (h *handler) entry(ctx context.Context, i int64, leaf []byte, size int64) (result, error) {
	var err error
	res := result{Index: i, Leaf: leaf}
	if _, large, _ := ledger.ParseLargeRef(leaf); large {
		if res.Body, err = h.log.Body(ctx, leaf); err != nil {
			return result{}, err
		}
	}
	if !json.Valid(leaf) || res.Body != nil && !json.Valid(res.Body) {
		return result{}, errors.New("the entry is not JSON")
	}
	proof, err := h.log.ProveInclusion(ctx, i, size)
	if err != nil {
		return result{}, err
	}
	res.Proof = proof
	return res, nil
}

// unavailable logs err and answers 503: the log or the index failed, and
// may recover.
func (h *handler) unavailable(w http.ResponseWriter, what string, err error) {
	h.logger.Error(what, "err", err)
	writeError(w, http.StatusServiceUnavailable, what)
}

// writeJSON and writeError answer as the server's own handlers do.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // leaves pass through as they are hashed
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
