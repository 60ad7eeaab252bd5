package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/trailaudit/trail/internal/tlsconf"
)

// HTTPConfig is one run of the load generator against a running trail
// server (RunHTTP).
type HTTPConfig struct {
	// URL is the server's base URL, such as https://127.0.0.1:8443.
	// Required; events are posted to URL/v1/events.
	URL string
	// N is the number of events to append in the measured phase. Required,
	// at least 1.
	N int
	// Batch is the number of events per request: 1 sends a bare event
	// object, more a JSON array. The last request may carry fewer.
	// Required, at least 1.
	Batch int
	// Clients is the number of concurrent clients, each with one request
	// in flight at a time. Required, at least 1.
	Clients int
	// Conns is the number of TCP connections the clients are spread over,
	// each multiplexing its clients' requests with HTTP/2. Default
	// DefaultConns(Clients). With HTTP1, each client has a connection of
	// its own, and Conns must be 0 or Clients.
	Conns int
	// HTTP1 makes the clients speak HTTP/1.1 (one request in flight per
	// connection, as most log shippers do) instead of HTTP/2.
	HTTP1 bool
	// TLS is the client's TLS configuration: RootCAs and, for mutual TLS,
	// Certificates. Required. RunHTTP uses a clone, with MinVersion raised
	// to TLS 1.3 unless set.
	TLS *tls.Config
	// Token, if not empty, is sent as "Authorization: Bearer <Token>".
	Token string
	// Warmup is how long the clients append before the clock starts, so
	// that connections, handshakes and the server's buffers are in place;
	// each client sends at least one request. The events of the warm-up are
	// appended too and counted in HTTPResult.WarmupEvents. Default 500 ms;
	// negative means one request per client only.
	Warmup time.Duration
	// Timeout bounds one request, from sending to the end of the reply.
	// Default one minute.
	Timeout time.Duration
	// MaxErrors stops the run early once this many requests have failed.
	// Default 100.
	MaxErrors int
	// CPUProfile, if set, receives a CPU profile of this process (the load
	// generator, not the server) during the measured phase.
	CPUProfile io.Writer
}

// DefaultConns is the number of TCP connections RunHTTP uses for clients
// concurrent clients by default: one per 8 clients, at most 8.
//
// One HTTP/2 connection serializes its frames through one reader and one
// writer goroutine on each side, so that many clients on a single
// connection wait for each other; a few connections let the server's and
// the generator's work spread over the cores, while more than a few only
// add handshakes and idle buffers. Measured on 2 cores with 64 clients of
// one event per request: 1, 2 and 8 connections within the noise of each
// other, 64 (HTTP/2 with one client each) a third slower.
func DefaultConns(clients int) int {
	return min(max((clients+7)/8, 1), 8)
}

// Validate reports the first invalid field, named as the command-line flag
// that sets it.
func (c *HTTPConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("-server: a URL is required")
	case c.N < 1:
		return fmt.Errorf("-n must be at least 1, not %d", c.N)
	case c.Batch < 1:
		return fmt.Errorf("-batch must be at least 1, not %d", c.Batch)
	case c.Clients < 1:
		return fmt.Errorf("-c must be at least 1, not %d", c.Clients)
	case c.Conns < 0:
		return fmt.Errorf("-conns must not be negative, not %d", c.Conns)
	case c.HTTP1 && c.Conns != 0 && c.Conns != c.Clients:
		return fmt.Errorf("-conns %d with -http1: each of the %d clients has a connection of its own", c.Conns, c.Clients)
	case c.TLS == nil:
		return errors.New("no TLS configuration")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("-server: bad URL %q: %v", c.URL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("-server: want an https:// URL with a host, not %q", c.URL)
	}
	return nil
}

// HTTPResult is what a run against a server measured. Times are in
// milliseconds unless named otherwise.
type HTTPResult struct {
	URL     string `json:"url"`
	N       int    `json:"n"`
	Batch   int    `json:"batch"`
	Clients int    `json:"clients"`
	Conns   int    `json:"conns"`
	// Protocol is the HTTP version of the replies ("HTTP/2.0"), TLSVersion,
	// CipherSuite and Group what the handshake of the first connection
	// agreed on.
	Protocol    string `json:"http_protocol"`
	TLSVersion  string `json:"tls_version"`
	CipherSuite string `json:"tls_cipher_suite"`
	Group       string `json:"tls_group"`

	// Requests is the number of requests of the measured phase, Errors how
	// many of them failed (a reply other than 200, or none), and
	// FirstErrors what the first few failures said. StoppedEarly says that
	// the run gave up after HTTPConfig.MaxErrors failures, leaving some
	// requests unsent.
	Requests     int      `json:"requests"`
	Errors       int      `json:"errors"`
	FirstErrors  []string `json:"first_errors,omitempty"`
	StoppedEarly bool     `json:"stopped_early,omitempty"`
	// Acknowledged is the number of events the server acknowledged in the
	// measured phase; with no errors it is N.
	Acknowledged int `json:"acknowledged"`
	// WarmupEvents is the number of events acknowledged during the warm-up:
	// the log grows by Acknowledged + WarmupEvents.
	WarmupEvents   int     `json:"warmup_events"`
	WarmupRequests int     `json:"warmup_requests"`
	WarmupS        float64 `json:"warmup_s"`

	// DurationS is the wall time from the first request of the measured
	// phase to the last reply.
	DurationS      float64 `json:"duration_s"`
	EventsPerSec   float64 `json:"events_per_sec"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	// P50Ms, P99Ms, P999Ms and MaxMs are latencies of the successful
	// requests, from sending the request to reading the whole reply.
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`

	// EventBytes is the mean size of one event, BodyBytes of one request
	// body.
	EventBytes float64 `json:"event_bytes"`
	BodyBytes  float64 `json:"body_bytes"`
	// ClientCPUSeconds is the user+system CPU time this process (the load
	// generator) used during the measured phase, ClientCPUCores the same
	// divided by DurationS: what the generator took from a machine it
	// shares with the server.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ClientCPUCores   float64 `json:"client_cpu_cores"`
}

// maxFirstErrors is how many failures HTTPResult.FirstErrors keeps.
const maxFirstErrors = 5

// maxHTTPEvents bounds the distinct events generated for RunHTTP (about 27
// MiB of request bodies); longer runs send the same bodies again, which
// the server appends like any others (the events carry no ids).
const maxHTTPEvents = 1 << 16

// ClientTLS returns a client TLS configuration, TLS 1.3 only, that trusts
// the CA certificates in caFile (PEM), or the system's roots if caFile is
// empty, and, if certFile is not empty, presents the certificate in
// certFile with the key in keyFile.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	c, err := tlsconf.ClientFiles(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.MinVersion = tls.VersionTLS13
	return c, nil
}

// httpRun is the state a run's clients share.
type httpRun struct {
	cfg     HTTPConfig
	url     *url.URL
	clients []*http.Client // one per connection
	bodies  []body         // full batches, sent in turn
	tail    body           // the last, shorter batch, if N is not a multiple of Batch

	next     atomic.Int64    // the next request of the measured phase
	acked    atomic.Int64    // events acknowledged in the measured phase
	lat      []time.Duration // of each request of the measured phase; -1 if it failed
	errCount atomic.Int64
	stop     chan struct{} // closed once MaxErrors requests failed
	stopOnce sync.Once

	mu          sync.Mutex
	firstErrors []string
	conn        *http.Response // a reply of the warm-up, for its protocol and TLS state
}

// RunHTTP appends cfg.N synthetic audit events to the server at cfg.URL,
// cfg.Batch per request from cfg.Clients concurrent clients, after a
// warm-up, and measures throughput and latency. Request bodies are encoded
// before the clock starts.
//
// A failed request (no reply, or one other than 200) is counted in
// HTTPResult.Errors, not returned as an error; the run stops early after
// cfg.MaxErrors failures. A failure during the warm-up ends the run with an
// error saying what the server answered, since it means the server is
// unreachable or refuses the credentials.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (*HTTPResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTP1 {
		cfg.Conns = cfg.Clients
	} else if cfg.Conns == 0 {
		cfg.Conns = DefaultConns(cfg.Clients)
	}
	cfg.Conns = min(cfg.Conns, cfg.Clients)
	if cfg.Warmup == 0 {
		cfg.Warmup = 500 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 100
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	endpoint := *base
	endpoint.Path = strings.TrimSuffix(base.Path, "/") + "/v1/events"
	endpoint.RawPath = ""
	r := &httpRun{cfg: cfg, url: &endpoint, stop: make(chan struct{})}
	res := &HTTPResult{URL: cfg.URL, N: cfg.N, Batch: cfg.Batch, Clients: cfg.Clients, Conns: cfg.Conns}

	events := requestEvents(min(cfg.N, max(maxHTTPEvents, cfg.Batch)))
	var total int
	for _, e := range events {
		total += len(e)
	}
	res.EventBytes = float64(total) / float64(len(events))
	r.bodies, r.tail = requestBodies(events, cfg.N, cfg.Batch)
	if len(r.bodies) == 0 { // N < Batch: one request
		r.bodies = []body{r.tail}
	}
	total = 0
	for _, b := range r.bodies {
		total += len(b.data)
	}
	res.BodyBytes = float64(total) / float64(len(r.bodies))

	tc := cfg.TLS.Clone()
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS13
	}
	if cfg.HTTP1 {
		tc.NextProtos = []string{"http/1.1"}
	}
	for range cfg.Conns {
		// One Transport per connection: a Transport keeps a single HTTP/2
		// connection to a host for as long as it has free streams, and
		// one client on it keeps a single HTTP/1.1 connection.
		tr := &http.Transport{
			TLSClientConfig:     tc.Clone(),
			ForceAttemptHTTP2:   !cfg.HTTP1,
			DisableCompression:  true,
			MaxIdleConnsPerHost: cfg.Clients,
			TLSHandshakeTimeout: cfg.Timeout,
		}
		if cfg.HTTP1 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2
		}
		defer tr.CloseIdleConnections()
		r.clients = append(r.clients, &http.Client{Transport: tr, Timeout: cfg.Timeout})
	}

	requests := (cfg.N + cfg.Batch - 1) / cfg.Batch
	r.lat = make([]time.Duration, requests)
	res.Requests = requests

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg         sync.WaitGroup
		warm       sync.WaitGroup
		warmErr    error
		warmOnce   sync.Once
		warmEvents atomic.Int64
		warmReqs   atomic.Int64
		begin      = make(chan struct{})
		warmUntil  = time.Now().Add(max(cfg.Warmup, 0))
		warmStart  = time.Now()
	)
	for c := range cfg.Clients {
		warm.Add(1)
		wg.Go(func() {
			cl := &httpClient{run: r, http: r.clients[c%len(r.clients)], header: r.header()}
			// Each client starts its warm-up at its own place in the
			// bodies, so that the warm-up sends distinct events.
			k := c
			for {
				n, err := cl.post(ctx, r.bodies[k%len(r.bodies)])
				if err != nil {
					warmOnce.Do(func() { warmErr = err; cancel() })
					break
				}
				warmEvents.Add(int64(n))
				warmReqs.Add(1)
				k += cfg.Clients
				if !time.Now().Before(warmUntil) {
					break
				}
			}
			warm.Done()
			<-begin
			if ctx.Err() == nil {
				cl.measure(ctx)
			}
		})
	}
	warm.Wait()
	res.WarmupS = time.Since(warmStart).Seconds()
	if warmErr != nil {
		close(begin)
		wg.Wait()
		return nil, fmt.Errorf("warm-up: %w", warmErr)
	}
	res.WarmupEvents, res.WarmupRequests = int(warmEvents.Load()), int(warmReqs.Load())
	if resp := r.conn; resp != nil {
		res.Protocol = resp.Proto
		if resp.TLS != nil {
			res.TLSVersion = tls.VersionName(resp.TLS.Version)
			res.CipherSuite = tls.CipherSuiteName(resp.TLS.CipherSuite)
			res.Group = resp.TLS.CurveID.String()
		}
	}

	runtime.GC()
	cpu0 := cpuTime()
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			cancel()
			close(begin)
			wg.Wait()
			return nil, fmt.Errorf("couldn't start the CPU profile: %w", err)
		}
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	cpu := cpuTime() - cpu0
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res.DurationS = elapsed.Seconds()
	res.Errors = int(r.errCount.Load())
	res.FirstErrors = r.firstErrors
	res.StoppedEarly = res.Errors >= cfg.MaxErrors
	res.Acknowledged = int(r.acked.Load())
	lat := slices.DeleteFunc(r.lat, func(d time.Duration) bool { return d < 0 })
	res.EventsPerSec = float64(res.Acknowledged) / res.DurationS
	res.RequestsPerSec = float64(len(lat)) / res.DurationS
	res.ClientCPUSeconds = cpu.Seconds()
	res.ClientCPUCores = cpu.Seconds() / res.DurationS
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50Ms = ms(quantile(lat, 0.50))
		res.P90Ms = ms(quantile(lat, 0.90))
		res.P99Ms = ms(quantile(lat, 0.99))
		res.P999Ms = ms(quantile(lat, 0.999))
		res.MaxMs = ms(lat[len(lat)-1])
	}
	return res, nil
}

// header returns the headers of every request, a map of the caller's own.
func (r *httpRun) header() http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if r.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	return h
}

// failed counts a failed request of the measured phase and keeps its
// message if it is among the first.
func (r *httpRun) failed(err error) {
	n := r.errCount.Add(1)
	r.mu.Lock()
	if len(r.firstErrors) < maxFirstErrors {
		r.firstErrors = append(r.firstErrors, err.Error())
	}
	r.mu.Unlock()
	if n >= int64(r.cfg.MaxErrors) {
		r.stopOnce.Do(func() { close(r.stop) })
	}
}

// httpClient is one client: it sends one request at a time.
type httpClient struct {
	run    *httpRun
	http   *http.Client
	header http.Header
	reply  bytes.Buffer // reused for every reply
}

// measure sends requests of the measured phase until there are none left.
func (c *httpClient) measure(ctx context.Context) {
	r := c.run
	requests := int64(len(r.lat))
	for {
		i := r.next.Add(1) - 1
		if i >= requests {
			return
		}
		select {
		case <-r.stop:
			r.lat[i] = -1
			continue // mark the rest as not sent
		default:
		}
		b := r.bodies[i%int64(len(r.bodies))]
		if i == requests-1 && r.tail.events > 0 {
			b = r.tail
		}
		t := time.Now()
		n, err := c.post(ctx, b)
		d := time.Since(t)
		if err != nil {
			r.lat[i] = -1
			r.failed(err)
			continue
		}
		r.lat[i] = d
		r.acked.Add(int64(n))
	}
}

// post sends one request and returns the number of entries acknowledged.
// An error says what went wrong, with the server's own message if it sent
// one.
func (c *httpClient) post(ctx context.Context, b body) (int, error) {
	data := b.data
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           c.run.url,
		Header:        c.header,
		Host:          c.run.url.Host,
		Body:          io.NopCloser(bytes.NewReader(data)),
		ContentLength: int64(len(data)),
		GetBody: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	c.reply.Reset()
	_, err = c.reply.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("couldn't read the reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, replyError(resp.Status, c.reply.Bytes())
	}
	c.run.mu.Lock()
	if c.run.conn == nil {
		resp.Body = nil
		c.run.conn = resp
	}
	c.run.mu.Unlock()
	// Counting the entries is enough for a benchmark, and costs far less
	// than decoding a thousand of them.
	if got := bytes.Count(c.reply.Bytes(), []byte(`"index":`)); got != b.events {
		return 0, fmt.Errorf("the reply acknowledges %d entries, want %d: %.200s", got, b.events, c.reply.Bytes())
	}
	return b.events, nil
}

// replyError describes a reply other than 200 by its status and the
// server's {"error": "..."} message.
func replyError(status string, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", status, e.Error)
	}
	return fmt.Errorf("%s: %.200q", status, strings.TrimSpace(string(body)))
}

// requestEvents returns n distinct events as producers send them: the
// "event" member of the engine benchmark's leaves, about 420 bytes each.
func requestEvents(n int) [][]byte {
	leaves := Events(n, 2)
	events := make([][]byte, n)
	for i, leaf := range leaves {
		// A leaf is {"received":...,"event":{...}} with the event last.
		at := bytes.Index(leaf, []byte(`,"event":`))
		events[i] = leaf[at+len(`,"event":`) : len(leaf)-1]
	}
	return events
}

// body is one request body, encoded before the run.
type body struct {
	data   []byte
	events int
}

// requestBodies encodes the bodies of requests of batch events each: a bare
// object for one event, a JSON array for more. It returns the full batches
// that events make and, if n is not a multiple of batch, the body of the
// last, shorter request.
func requestBodies(events [][]byte, n, batch int) (full []body, tail body) {
	encode := func(dst []byte, evs [][]byte) []byte {
		if batch == 1 {
			return append(dst, evs[0]...)
		}
		dst = append(dst, '[')
		for i, e := range evs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, e...)
		}
		return append(dst, ']')
	}
	var chunk []byte
	for i := 0; i+batch <= len(events); i += batch {
		start := len(chunk)
		if cap(chunk)-len(chunk) < batch*600 {
			chunk = make([]byte, 0, max(chunkSize, batch*600))
			start = 0
		}
		chunk = encode(chunk, events[i:i+batch])
		full = append(full, body{chunk[start:len(chunk):len(chunk)], batch})
	}
	if rest := n % batch; rest != 0 {
		tail = body{encode(nil, events[:rest]), rest}
	}
	return full, tail
}

// WriteText prints r as a short table for people.
func (r *HTTPResult) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	clients, conns := "clients", "connections"
	if r.Clients == 1 {
		clients = "client"
	}
	if r.Conns == 1 {
		conns = "connection"
	}
	fmt.Fprintf(tw, "events\t%s\tin requests of %s from %s %s over %s %s\n",
		group(r.N), group(r.Batch), group(r.Clients), clients, group(r.Conns), conns)
	fmt.Fprintf(tw, "server\t%s\t(%s, %s, %s, %s)\n", r.URL, r.Protocol, r.TLSVersion, r.CipherSuite, r.Group)
	fmt.Fprintf(tw, "throughput\t%s events/s\t(%s requests/s; %.3f s from first request to last reply, after a warm-up of %s events in %.2f s)\n",
		group(int(r.EventsPerSec+0.5)), group(int(r.RequestsPerSec+0.5)), r.DurationS, group(r.WarmupEvents), r.WarmupS)
	fmt.Fprintf(tw, "latency per request\tp50 %s ms\tp90 %s ms, p99 %s ms, p99.9 %s ms, max %s ms\n",
		msStr(r.P50Ms), msStr(r.P90Ms), msStr(r.P99Ms), msStr(r.P999Ms), msStr(r.MaxMs))
	fmt.Fprintf(tw, "event size\t%.0f bytes\t(mean; %.0f bytes per request body)\n", r.EventBytes, r.BodyBytes)
	if r.ClientCPUSeconds > 0 {
		fmt.Fprintf(tw, "generator cpu\t%.2f s\t(%.2f cores busy in this process, not the server)\n", r.ClientCPUSeconds, r.ClientCPUCores)
	}
	stopped := ""
	if r.StoppedEarly {
		stopped = " (stopped early: too many errors)"
	}
	fmt.Fprintf(tw, "errors\t%s\tof %s requests%s\n", group(r.Errors), group(r.Requests), stopped)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.FirstErrors {
		if _, err := fmt.Fprintf(w, "  %s\n", e); err != nil {
			return err
		}
	}
	return nil
}
