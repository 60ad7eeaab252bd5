package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/witness/cosig"
)

// Endpoint is a witness that a Sender offers checkpoints to.
type Endpoint struct {
	// Name labels the witness in logs and metrics. Default: the name of
	// its key.
	Name string
	// URL is the witness's submission prefix, such as
	// "https://witness.example:7443": requests go to URL/add-checkpoint.
	URL string
	// VerifierKey is the witness's cosignature verifier key, as "trail
	// witness key" prints it.
	VerifierKey string
	// HTTPClient sends the requests: its transport holds the TLS
	// configuration (the witness's CA, the log's client certificate).
	// Required; NewHTTPClient builds one.
	HTTPClient *http.Client
}

// NewHTTPClient returns a client for a witness served over mutual TLS: the
// witness's certificate must chain to the CA in caFile, and the log
// presents the certificate in certFile with the key in keyFile.
func NewHTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	tc, err := tlsconf.ClientFiles(caFile, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("witness client: %w", err)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}}, nil
}

// SenderConfig configures NewSender.
type SenderConfig struct {
	// Witnesses are the witnesses to offer each checkpoint to.
	Witnesses []Endpoint
	// Quorum is how many of them must cosign a checkpoint before Checkpoint
	// returns it. 0 publishes each checkpoint at once, with whatever
	// cosignatures arrive for it later.
	Quorum int
	// LogVerifier checks the checkpoint kept in File at start. Required
	// with File.
	LogVerifier note.Verifier
	// File, if set, keeps the newest published checkpoint with its
	// cosignatures across restarts (replaced atomically).
	File string
	// Timeout bounds one request to a witness. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a witness
	// that failed; it doubles after each failure. Defaults 1s and 1m.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives witness failures and refusals. Default: discard.
	Logger *slog.Logger
	// OnRefusal, if not nil, is called when a witness refuses a checkpoint
	// as not extending what it cosigned (a fork or a rollback), or has
	// cosigned a larger tree than the log holds: evidence that the log's
	// history changed, for an alert. It is called from the witness's
	// goroutine, at most once per checkpoint size and witness.
	OnRefusal func(witness string, size int64, err error)
}

// RefusalError is a witness's refusal of a checkpoint: the evidence kind
// that Config.OnRefusal receives.
type RefusalError struct {
	Witness string
	Size    int64
	Reason  string
}

func (e *RefusalError) Error() string { return e.Reason }

// Prover gives consistency proofs of the log: *ledger.Log is one.
type Prover interface {
	ProveConsistency(ctx context.Context, from, to int64) (tlog.TreeProof, error)
}

// Sender offers a log's checkpoints to witnesses and collects their
// cosignatures. One goroutine per witness sends it the newest checkpoint
// whenever there is one it has not cosigned; a failing witness is retried
// with backoff and never holds up the log or the other witnesses.
type Sender struct {
	cfg    SenderConfig
	log    *slog.Logger
	ws     []*target
	prover Prover

	mu        sync.Mutex
	newest    *ledger.Checkpoint
	pending   map[int64]*collected // cosignatures by checkpoint size
	published []byte
	pubSize   int64
	pubSigs   int
	pubSeq    uint64 // counts publications, to write File in order
	closed    bool

	fileMu  sync.Mutex
	fileSeq uint64

	stop chan struct{}
	wg   sync.WaitGroup

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	size     *prometheus.GaugeVec
	quorum   prometheus.Gauge
}

type target struct {
	Endpoint
	v     *cosig.Verifier
	wake  chan struct{}
	known int64 // the witness's size as last learnt; -1 unknown
}

type collected struct {
	cp    *ledger.Checkpoint
	lines map[int]string // by witness index
}

// NewSender returns a Sender for cfg. It sends nothing until Start.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Quorum < 0 || cfg.Quorum > len(cfg.Witnesses) {
		return nil, fmt.Errorf("witness quorum %d: must be 0 to the number of witnesses, %d", cfg.Quorum, len(cfg.Witnesses))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	s := &Sender{cfg: cfg, log: cfg.Logger, pending: make(map[int64]*collected), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	for i, e := range cfg.Witnesses {
		v, err := cosig.NewVerifier(e.VerifierKey)
		if err != nil {
			return nil, fmt.Errorf("witness %d: %w", i+1, err)
		}
		if e.Name == "" {
			e.Name = v.Name()
		}
		if names[e.Name] {
			return nil, fmt.Errorf("witness %s configured twice", e.Name)
		}
		names[e.Name] = true
		if !strings.HasPrefix(e.URL, "https://") {
			return nil, fmt.Errorf("witness %s: URL %q must be https://", e.Name, e.URL)
		}
		if e.HTTPClient == nil {
			return nil, fmt.Errorf("witness %s: no HTTP client", e.Name)
		}
		e.URL = strings.TrimSuffix(e.URL, "/")
		s.ws = append(s.ws, &target{Endpoint: e, v: v, wake: make(chan struct{}, 1), known: -1})
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trail_witness_requests_total",
		Help: "add-checkpoint requests sent to witnesses, by witness and result (cosigned, conflict, refused, error).",
	}, []string{"witness", "result"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trail_witness_request_seconds",
		Help:    "Round-trip time of add-checkpoint requests that a witness answered, by witness.",
		Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16),
	}, []string{"witness"})
	s.size = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trail_witness_cosigned_size",
		Help: "Tree size of the newest checkpoint each witness cosigned.",
	}, []string{"witness"})
	s.quorum = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "trail_witness_published_size",
		Help: "Tree size of the checkpoint served at /checkpoint: the newest with the witness quorum.",
	})
	for _, w := range s.ws {
		for _, r := range []string{"cosigned", "conflict", "refused", "error"} {
			s.requests.WithLabelValues(w.Name, r)
		}
	}
	if cfg.File != "" {
		if cfg.LogVerifier == nil {
			return nil, errors.New("witness sender: File needs LogVerifier")
		}
		s.loadFile()
	}
	return s, nil
}

// loadFile restores the published checkpoint of an earlier run, if it
// still verifies and meets the quorum.
func (s *Sender) loadFile() {
	b, err := os.ReadFile(s.cfg.File)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("couldn't read the cosigned checkpoint", "file", s.cfg.File, "err", err)
		}
		return
	}
	cp, err := openCheckpoint(b, s.cfg.LogVerifier)
	if err != nil {
		s.log.Warn("ignoring the stored cosigned checkpoint: it does not verify with the log's key", "file", s.cfg.File, "err", err)
		return
	}
	sigs, err := cosig.Verify(b, s.verifiers())
	if err != nil || len(sigs) < s.cfg.Quorum {
		s.log.Info("ignoring the stored cosigned checkpoint: fewer cosignatures than the quorum", "file", s.cfg.File, "have", len(sigs), "quorum", s.cfg.Quorum)
		return
	}
	s.published, s.pubSize, s.pubSigs = b, cp.Size, len(sigs)
	s.quorum.Set(float64(cp.Size))
}

func (s *Sender) verifiers() []*cosig.Verifier {
	vs := make([]*cosig.Verifier, len(s.ws))
	for i, w := range s.ws {
		vs[i] = w.v
	}
	return vs
}

// Collectors returns the Sender's metrics, to register.
func (s *Sender) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.requests, s.latency, s.size, s.quorum}
}

// Start starts sending, with proofs from p.
func (s *Sender) Start(p Prover) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prover != nil || s.closed {
		return
	}
	s.prover = p
	for _, w := range s.ws {
		s.wg.Add(1)
		go s.run(w)
		if s.newest != nil {
			wake(w)
		}
	}
}

// Close stops sending and waits for requests in flight.
func (s *Sender) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
}

func wake(w *target) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Offer hands a new checkpoint to the witnesses. It never blocks: use it as
// ledger.Options.OnCheckpoint.
func (s *Sender) Offer(cp *ledger.Checkpoint) {
	if cp == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.newest != nil && cp.Size <= s.newest.Size {
		return
	}
	s.newest = cp
	if s.cfg.Quorum == 0 {
		// Not written to File: the log's own checkpoint file has it, and
		// this runs on the signing path.
		s.publishLocked(cp, nil)
	}
	if s.prover != nil {
		for _, w := range s.ws {
			wake(w)
		}
	}
}

// Checkpoint returns the newest checkpoint that reached the quorum, with
// the cosignature lines of the witnesses that cosigned it after the log's
// signature, or nil if none has yet.
func (s *Sender) Checkpoint() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.published)
}

func (s *Sender) run(w *target) {
	defer s.wg.Done()
	backoff := time.Duration(0)
	var done int64 = -1     // size of the last checkpoint this witness cosigned
	var reported int64 = -1 // size of the last refusal passed to OnRefusal
	for {
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			}
		} else {
			select {
			case <-w.wake:
			case <-s.stop:
				return
			}
		}
		s.mu.Lock()
		cp := s.newest
		s.mu.Unlock()
		if cp == nil || cp.Size <= done {
			backoff = 0
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		line, err := s.send(ctx, w, cp)
		cancel()
		if err != nil {
			select {
			case <-s.stop:
				return
			default:
			}
			backoff = min(max(2*backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			s.log.Warn("witness failed; retrying", "witness", w.Name, "size", cp.Size, "in", backoff, "err", err)
			var re *RefusalError
			var ue *refusedError
			switch {
			case s.cfg.OnRefusal == nil || reported == cp.Size:
			case errors.As(err, &re):
				reported = cp.Size
				s.cfg.OnRefusal(w.Name, cp.Size, err)
			case errors.As(err, &ue) && ue.status == http.StatusUnprocessableEntity:
				// The consistency proof the log sent did not check
				// against what the witness cosigned: a fork.
				reported = cp.Size
				s.cfg.OnRefusal(w.Name, cp.Size, err)
			}
			continue
		}
		backoff = 0
		done = cp.Size
		s.size.WithLabelValues(w.Name).Set(float64(cp.Size))
		s.record(w, cp, line)
		wake(w) // a newer checkpoint may have come meanwhile
	}
}

// errRefused is a witness's 4xx other than 409.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("witness refused the checkpoint: %s (%d %s)", e.msg, e.status, http.StatusText(e.status))
}

// send gets w's cosignature of cp, learning the witness's size from a 409
// and asking again (at most twice more).
func (s *Sender) send(ctx context.Context, w *target, cp *ledger.Checkpoint) (string, error) {
	for attempt := 0; ; attempt++ {
		old := max(w.known, 0)
		if old > cp.Size {
			s.requests.WithLabelValues(w.Name, "error").Inc()
			return "", &RefusalError{Witness: w.Name, Size: cp.Size, Reason: fmt.Sprintf("the witness has cosigned a checkpoint of size %d, larger than the log's newest, %d: the log lost entries it had signed (rolled back), or the witness was shown a fork", old, cp.Size)}
		}
		req := Request{OldSize: old, Checkpoint: cp.Note}
		if old > 0 && old < cp.Size {
			p, err := s.prover.ProveConsistency(ctx, old, cp.Size)
			if err != nil {
				s.requests.WithLabelValues(w.Name, "error").Inc()
				return "", fmt.Errorf("couldn't prove consistency from %d to %d: %w", old, cp.Size, err)
			}
			req.Proof = p
		}
		status, body, err := s.post(ctx, w, req.Format())
		if err != nil {
			s.requests.WithLabelValues(w.Name, "error").Inc()
			w.known = -1 // the request may have reached it
			return "", err
		}
		switch status {
		case http.StatusOK:
			full := append(bytes.Clone(cp.Note), body...)
			sigs, err := cosig.Verify(full, []*cosig.Verifier{w.v})
			if err != nil || len(sigs) == 0 {
				s.requests.WithLabelValues(w.Name, "error").Inc()
				return "", fmt.Errorf("the witness answered no valid cosignature by its key %s (%v)", w.v.Name(), err)
			}
			s.requests.WithLabelValues(w.Name, "cosigned").Inc()
			w.known = cp.Size
			return sigs[0].Line, nil
		case http.StatusConflict:
			s.requests.WithLabelValues(w.Name, "conflict").Inc()
			n, err := strconv.ParseInt(strings.TrimSuffix(string(body), "\n"), 10, 64)
			if err != nil || n < 0 {
				return "", fmt.Errorf("the witness answered 409 without its size (%.100q)", body)
			}
			if n == old || attempt >= 2 {
				return "", &RefusalError{Witness: w.Name, Size: cp.Size, Reason: fmt.Sprintf("the witness refused the checkpoint of size %d (409 Conflict, its size %d): a fork of what it cosigned", cp.Size, n)}
			}
			w.known = n
		default:
			s.requests.WithLabelValues(w.Name, "refused").Inc()
			w.known = -1
			msg := strings.TrimSpace(string(body))
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				msg = e.Error
			}
			return "", &refusedError{status: status, msg: msg}
		}
	}
}

func (s *Sender) post(ctx context.Context, w *target, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "trail-witness-sender")
	start := time.Now()
	resp, err := w.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("couldn't read the witness's answer: %w", err)
	}
	s.latency.WithLabelValues(w.Name).Observe(time.Since(start).Seconds())
	return resp.StatusCode, b, nil
}

// record keeps w's cosignature line of cp and publishes cp if it now has
// the quorum.
func (s *Sender) record(w *target, cp *ledger.Checkpoint, line string) {
	idx := slices.Index(s.ws, w)
	s.mu.Lock()
	c := s.pending[cp.Size]
	if c == nil || !bytes.Equal(c.cp.Note, cp.Note) {
		c = &collected{cp: cp, lines: map[int]string{}}
		s.pending[cp.Size] = c
	}
	c.lines[idx] = line
	published := len(c.lines) >= s.cfg.Quorum && s.publishLocked(cp, c.lines)
	b, seq := s.published, s.pubSeq
	// Forget what can no longer be published; bound the rest.
	for size := range s.pending {
		if size < s.pubSize || len(s.pending) > 64 && size < cp.Size {
			delete(s.pending, size)
		}
	}
	s.mu.Unlock()
	if published && s.cfg.File != "" {
		// Outside s.mu, which Offer takes on the log's signing path; seq
		// keeps an older publication from overwriting a newer one.
		s.fileMu.Lock()
		defer s.fileMu.Unlock()
		if seq > s.fileSeq {
			s.fileSeq = seq
			if err := durable.WriteFile(s.cfg.File, b, 0o644); err != nil {
				s.log.Warn("couldn't store the cosigned checkpoint", "file", s.cfg.File, "err", err)
			}
		}
	}
}

// publishLocked makes cp with the given cosignature lines the published
// checkpoint, if it is newer than the published one or the same with more
// cosignatures, and reports whether it did.
func (s *Sender) publishLocked(cp *ledger.Checkpoint, lines map[int]string) bool {
	if cp.Size < s.pubSize || cp.Size == s.pubSize && len(lines) <= s.pubSigs && s.published != nil {
		return false
	}
	b := bytes.Clone(cp.Note)
	for i := range s.ws {
		if l, ok := lines[i]; ok {
			b = append(b, l...)
			b = append(b, '\n')
		}
	}
	s.published, s.pubSize, s.pubSigs = b, cp.Size, len(lines)
	s.pubSeq++
	s.quorum.Set(float64(cp.Size))
	return true
}
