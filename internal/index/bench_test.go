package index

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	trailbench "github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// The benchmarks measure the figures docs/search.md reports, on a log of
// TRAIL_INDEX_BENCH_N synthetic events of about 500 bytes (default
// 200,000) from 10,000 actors, spread over N/1,000,000 days (at least one),
// so that one actor has about 100 events a day. With TRAIL_INDEX_BENCH_DIR
// the log and its index are kept there and reused by later runs (delete
// the directory to start over); otherwise they are made in a temporary
// directory for each run of the test binary.
//
//	TRAIL_INDEX_BENCH_N=1000000 TRAIL_INDEX_BENCH_DIR=/var/tmp/ixbench \
//	    go test -run '^$' -bench . -benchtime 200x ./internal/index/
//
// BenchmarkIndex reports the indexing rate (a rebuild: the whole log,
// from scratch) and the index's bytes per event; the search benchmarks
// report p50 and p99 of one query: at the index (Search) and end to end
// (GET /v1/events over TLS, with the audit append, 100 leaves read from
// the log and 100 inclusion proofs, as the client sees it).

const benchActors = trailbench.SearchActors

// benchTemp are the temporary directories the benchmarks made, removed
// when the test binary ends.
var benchTemp []string

func TestMain(m *testing.M) {
	code := m.Run()
	if bench != nil {
		bench.ix.Close()
		bench.log.Close()
	}
	for _, d := range benchTemp {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

type benchData struct {
	dir   string
	log   *ledger.Log
	ix    *Index
	n     int64
	days  int
	start time.Time
	// rare are request ids that occur once each.
	rare []string

	indexRate  float64
	indexCPU   time.Duration // user and system time of the process
	indexBytes int64
	indexTime  time.Duration
}

var (
	benchOnce sync.Once
	bench     *benchData
	benchErr  error
)

func benchSetup(b *testing.B) *benchData {
	b.Helper()
	benchOnce.Do(func() { bench, benchErr = makeBench() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

var benchStart = trailbench.SearchStart

// benchEvent appends synthetic event i (deterministic in i) and returns its
// request id: trail bench -events search makes the same events.
func benchEvent(b []byte, i int64, days int) ([]byte, string) {
	return trailbench.SearchEvent(b, i, benchN(), days)
}

func benchN() int64 {
	if s := os.Getenv("TRAIL_INDEX_BENCH_N"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 200_000
}

func makeBench() (*benchData, error) {
	d := &benchData{n: benchN(), start: benchStart}
	d.days = trailbench.SearchDays(d.n)
	d.dir = os.Getenv("TRAIL_INDEX_BENCH_DIR")
	if d.dir == "" {
		var err error
		if d.dir, err = os.MkdirTemp("", "trail-index-bench-"); err != nil {
			return nil, err
		}
		benchTemp = append(benchTemp, d.dir)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	l, err := openBenchLog(d.dir)
	if err != nil {
		return nil, err
	}
	d.log = l
	ctx := context.Background()
	if size := l.Size(); size < d.n {
		fmt.Fprintf(os.Stderr, "bench: appending events %d to %d\n", size, d.n)
		var buf []byte
		for i := size; i < d.n; {
			var batch [][]byte
			buf = buf[:0]
			for ; i < d.n && len(batch) < 1000; i++ {
				start := len(buf)
				buf, _ = benchEvent(buf, i, d.days)
				batch = append(batch, buf[start:len(buf):len(buf)])
			}
			if _, err := l.Append(ctx, batch...); err != nil {
				return nil, err
			}
			buf = nil
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			return nil, err
		}
	}
	for k := int64(0); k < 200; k++ {
		_, id := benchEvent(nil, (k*7919*7919)%d.n, d.days)
		d.rare = append(d.rare, id)
	}
	ixDir := filepath.Join(d.dir, DirName)
	if d.ix, err = Open(ctx, Options{Dir: ixDir, Source: l}); err != nil {
		return nil, err
	}
	if d.ix.Next() < d.n {
		// A rebuild from scratch, timed: the indexing rate.
		d.ix.Close()
		if err := os.RemoveAll(ixDir); err != nil {
			return nil, err
		}
		if d.ix, err = Open(ctx, Options{Dir: ixDir, Source: l}); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "bench: indexing %d events\n", l.Size())
		start, cpu0 := time.Now(), cpuTime()
		if err := d.ix.CatchUp(ctx, nil); err != nil {
			return nil, err
		}
		d.indexTime = time.Since(start)
		d.indexCPU = cpuTime() - cpu0
		d.indexRate = float64(d.ix.Next()) / d.indexTime.Seconds()
		fmt.Fprintf(os.Stderr, "bench: indexed %d events in %v: %.0f/s\n", d.ix.Next(), d.indexTime.Round(time.Millisecond), d.indexRate)
	}
	if ents, err := os.ReadDir(ixDir); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				d.indexBytes += fi.Size()
			}
		}
	}
	return d, nil
}

func openBenchLog(dir string) (*ledger.Log, error) {
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	return ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
}

// BenchmarkIndex reports the rebuild's indexing rate and the index's size.
func BenchmarkIndex(b *testing.B) {
	d := benchSetup(b)
	for b.Loop() {
	}
	if d.indexRate > 0 {
		b.ReportMetric(d.indexRate, "events/s")
		b.ReportMetric(d.indexTime.Seconds(), "rebuild-s")
		// The machine is shared: events per second of CPU the indexing
		// used does not depend on what else runs.
		b.ReportMetric(float64(d.n)/d.indexCPU.Seconds(), "events/cpu-s")
	}
	b.ReportMetric(float64(d.indexBytes)/float64(d.n), "index-bytes/event")
	b.ReportMetric(float64(d.n), "events")
}

// selective is the issue's selective query: one actor among 10,000, one
// day, newest first, a page of 100.
func (d *benchData) selective(rng *rand.Rand) url.Values {
	day := d.start.Add(time.Duration(rng.IntN(d.days)) * 24 * time.Hour)
	return url.Values{
		"actor": {fmt.Sprintf("user-%05d", rng.IntN(benchActors))},
		"since": {day.Format(time.RFC3339)}, "until": {day.Add(24 * time.Hour).Format(time.RFC3339)},
	}
}

func (d *benchData) rareWord(rng *rand.Rand) url.Values {
	return url.Values{"q": {d.rare[rng.IntN(len(d.rare))]}}
}

// benchWarmup is the number of unmeasured queries before the measured ones.
const benchWarmup = 200

func benchQueries(b *testing.B, query func(*benchData, *rand.Rand) url.Values, do func(url.Values) int) {
	d := benchSetup(b)
	// The figures are of a server that has been answering: 200 other
	// queries first bring its caches and heap to their working size (the
	// first queries after a start take up to three times as long).
	warm := rand.New(rand.NewPCG(7, 7))
	for range benchWarmup {
		do(query(d, warm))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var times []time.Duration
	found := 0
	for b.Loop() {
		v := query(d, rng)
		start := time.Now()
		found += do(v)
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(found)/float64(len(times)), "results/query")
}

func (d *benchData) search(b *testing.B) func(url.Values) int {
	return func(v url.Values) int {
		q, err := ParseQuery(v, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		got, _, err := d.ix.Search(context.Background(), q, d.log.Size())
		if err != nil {
			b.Fatal(err)
		}
		return len(got)
	}
}

func BenchmarkSearchSelective(b *testing.B) {
	benchQueries(b, (*benchData).selective, benchSetup(b).search(b))
}

func BenchmarkSearchRareWord(b *testing.B) {
	benchQueries(b, (*benchData).rareWord, benchSetup(b).search(b))
}

// httpSearch serves the log over TLS as trail serve does and returns a
// verifying client's search.
func (d *benchData) httpSearch(b *testing.B) func(url.Values) int {
	tmp, err := os.MkdirTemp("", "trail-index-bench-pki-")
	if err != nil {
		b.Fatal(err)
	}
	benchTemp = append(benchTemp, tmp)
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(tmp, "pki")})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Config{Log: d.log, LogDir: filepath.Join(d.dir, "log"), ClientCAs: pki.CAPool(), IdempotencyScan: -1})
	if err != nil {
		b.Fatal(err)
	}
	Register(srv, d.log, d.ix, nil)
	d.ix.Start() // indexes the searches' own audit entries
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := server.NewHTTPServer("", srv, server.TLSConfig(tc), nil)
	go hs.ServeTLS(ln, "", "") // until the benchmark binary exits
	certPEM, keyPEM, err := pki.IssueClient("auditor", tlsconf.RoleAuditor)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := ledger.LoadOrCreateKeys(d.dir)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.CAPool(), Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true}}
	c, err := client.New(client.Config{URL: "https://" + ln.Addr().String(), HTTPClient: hc, VerifierKey: keys.VerifierKey})
	if err != nil {
		b.Fatal(err)
	}
	return func(v url.Values) int {
		q := client.SearchQuery{Actor: v.Get("actor"), Text: v.Get("q")}
		if s := v.Get("since"); s != "" {
			q.Since, _ = time.Parse(time.RFC3339, s)
			q.Until, _ = time.Parse(time.RFC3339, v.Get("until"))
		}
		page, err := c.Search(context.Background(), q)
		if err != nil {
			b.Fatal(err)
		}
		return len(page.Results)
	}
}

var httpOnce sync.Once
var httpDo func(url.Values) int

func benchHTTP(b *testing.B) func(url.Values) int {
	d := benchSetup(b)
	httpOnce.Do(func() { httpDo = d.httpSearch(b) })
	if httpDo == nil {
		b.Fatal(errors.New("no server"))
	}
	return httpDo
}

func BenchmarkHTTPSearchSelective(b *testing.B) {
	benchQueries(b, (*benchData).selective, benchHTTP(b))
}

func BenchmarkHTTPSearchRareWord(b *testing.B) {
	benchQueries(b, (*benchData).rareWord, benchHTTP(b))
}

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFollow measures whether indexing keeps up with appends: events
// are appended to a fresh log at a fixed offered rate (default 100,000 a
// second, TRAIL_INDEX_FOLLOW_RATE) in batches every 10 ms, for 20 seconds
// (TRAIL_INDEX_FOLLOW_SECONDS), while the follower (Start) indexes them. It
// reports the rates reached, the index's lag behind the log at the end and
// how long it took to catch up, and the process's CPU-seconds per second
// (appending and indexing; the events are made beforehand). With
// TRAIL_INDEX_FOLLOW_OFF=1 the follower starts only at the end: the figures
// are of appending alone, and of catching up after.
func BenchmarkFollow(b *testing.B) {
	rate, secs := envInt("TRAIL_INDEX_FOLLOW_RATE", 100_000), envInt("TRAIL_INDEX_FOLLOW_SECONDS", 20)
	dir, err := os.MkdirTemp("", "trail-index-follow-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := openBenchLog(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ix, err := Open(context.Background(), Options{Dir: filepath.Join(dir, DirName), Source: l})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	if os.Getenv("TRAIL_INDEX_FOLLOW_OFF") == "" {
		ix.Start()
	}
	for b.Loop() {
	}
	const tick = 10 * time.Millisecond
	per := max(1, rate*int(tick)/int(time.Second))
	// The events are made beforehand: the figure is of appending and
	// indexing, not of making events.
	n := int64(rate * secs)
	events := make([][]byte, n)
	var buf []byte
	for i := range n {
		if cap(buf)-len(buf) < 4096 {
			buf = make([]byte, 0, 1<<24)
		}
		at := len(buf)
		buf, _ = benchEvent(buf, i, 1)
		events[i] = buf[at:len(buf):len(buf)]
	}
	start, cpu0 := time.Now(), cpuTime()
	t := time.NewTicker(tick)
	defer t.Stop()
	var i int64
	for i < n {
		<-t.C
		// The batches due by now: a slow append is caught up with larger ones.
		due := min(n, int64(time.Since(start)*time.Duration(rate)/time.Second))
		for i < due {
			j := min(due, i+int64(4*per))
			if _, err := l.Append(context.Background(), events[i:j]...); err != nil {
				b.Fatal(err)
			}
			i = j
		}
	}
	elapsed := time.Since(start)
	appended, indexed, cpu := l.Size(), ix.Next(), cpuTime()-cpu0
	ix.Start()
	if !ix.WaitFor(context.Background(), appended, 5*time.Minute) {
		b.Fatal("the index did not catch up within 5 minutes")
	}
	catchUp := time.Since(start) - elapsed
	b.ReportMetric(float64(rate), "offered/s")
	b.ReportMetric(float64(appended)/elapsed.Seconds(), "appended/s")
	b.ReportMetric(float64(indexed)/elapsed.Seconds(), "indexed/s")
	b.ReportMetric(float64(appended-indexed), "lag-entries")
	b.ReportMetric(catchUp.Seconds(), "catchup-s")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu-s/s")
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
