package tsa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/internal/durable"
)

// Dir is where a data directory keeps its time-stamps, relative to its
// root: one file per stamped checkpoint, named TokenFile(size).
const Dir = "state/timestamps"

// TokenFile names the time-stamp of the checkpoint of tree size size: the
// TSA's whole DER TimeStampResp, as "openssl ts -verify -in" reads it.
func TokenFile(size int64) string { return strconv.FormatInt(size, 10) + ".tsr" }

// ParseTokenFile returns the tree size a file name of Dir stands for, and
// false for any other name.
func ParseTokenFile(name string) (int64, bool) {
	num, ok := strings.CutSuffix(name, ".tsr")
	if !ok || num == "" || len(num) > 1 && num[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, err == nil && n >= 0
}

// StamperConfig configures NewStamper.
type StamperConfig struct {
	// Client asks the TSA. Required.
	Client *Client
	// Dir is the directory the time-stamps are written to (the data
	// directory's Dir). Required; created if missing.
	Dir string
	// Timeout bounds one request to the TSA. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// request; it doubles with each failure. Defaults 1s and 1m.
	MinBackoff, MaxBackoff time.Duration
	// QueueSize bounds the checkpoints waiting to be stamped; past it the
	// oldest is dropped (a later checkpoint's stamp covers its entries
	// too). Default 1024.
	QueueSize int
	// Every, if positive, spaces stamps at least this far apart: after
	// each, only the newest checkpoint queued meanwhile is stamped (its
	// stamp covers the others' entries), and the others are counted as
	// skipped. Default 0: every checkpoint is stamped.
	Every time.Duration
	// Logger receives failures. Default: discard.
	Logger *slog.Logger
}

// Stamper time-stamps checkpoints in the background: Add never blocks, and
// a TSA that is slow or down delays nothing but its own work. Each
// checkpoint is tried until it is stamped, with backoff, in order; the
// token is written once and never replaced.
type Stamper struct {
	cfg   StamperConfig
	ctx   context.Context // cancelled by Close when its deadline passes
	stop  context.CancelFunc
	wake  chan struct{}
	done  chan struct{}
	start sync.Once

	mu       sync.Mutex
	queue    []pending
	draining bool

	requests  *prometheus.CounterVec
	dropped   prometheus.Counter
	skipped   prometheus.Counter
	roundTrip prometheus.Histogram
	lastTime  prometheus.Gauge
	lastSize  prometheus.Gauge
}

type pending struct {
	size int64
	note []byte
}

// NewStamper returns a Stamper; Start starts it.
func NewStamper(cfg StamperConfig) (*Stamper, error) {
	if cfg.Client == nil || cfg.Dir == "" {
		return nil, errors.New("tsa: Client and Dir are required")
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
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create the time-stamp directory: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Stamper{
		cfg: cfg, ctx: ctx, stop: stop,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_timestamp_requests_total",
			Help: "Requests to the time-stamping authority, by result (ok, error).",
		}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_timestamp_dropped_total",
			Help: "Checkpoints never time-stamped because the queue was full (a later checkpoint's stamp covers their entries).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_timestamp_skipped_total",
			Help: "Checkpoints not time-stamped because a newer one was, with timestamp.every set.",
		}),
		roundTrip: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trail_timestamp_round_trip_seconds",
			Help:    "Time to obtain and verify one time-stamp, successful requests only.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trail_timestamp_last_success_timestamp_seconds",
			Help: "The TSA's time in the newest time-stamp obtained, as a Unix time.",
		}),
		lastSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trail_timestamp_last_size",
			Help: "The tree size of the newest checkpoint time-stamped.",
		}),
	}
	s.requests.WithLabelValues("ok")
	s.requests.WithLabelValues("error")
	return s, nil
}

// Register adds the Stamper's metrics to reg.
func (s *Stamper) Register(reg prometheus.Registerer) error {
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trail_timestamp_queue_length",
		Help: "Checkpoints waiting to be time-stamped.",
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.queue))
	})
	for _, c := range []prometheus.Collector{s.requests, s.dropped, s.skipped, s.roundTrip, s.lastTime, s.lastSize, queued} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Start starts the goroutine that stamps. It may be called once.
func (s *Stamper) Start() { s.start.Do(func() { go s.loop() }) }

// Add queues the signed checkpoint note of tree size size for stamping. It
// never blocks. A checkpoint already stamped is skipped when its turn comes.
func (s *Stamper) Add(size int64, note []byte) {
	s.mu.Lock()
	if len(s.queue) >= s.cfg.QueueSize {
		s.cfg.Logger.Warn("time-stamp queue full: dropping the oldest checkpoint; a later one's stamp covers its entries", "size", s.queue[0].size)
		s.queue = s.queue[1:]
		s.dropped.Inc()
	}
	s.queue = append(s.queue, pending{size, note})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stamps what is queued, retrying as usual, until ctx is done; then
// it abandons the rest (logged) and returns once the goroutine has ended.
func (s *Stamper) Close(ctx context.Context) {
	s.Start() // so that done is closed even if Start was never called
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.stop()
		<-s.done
	}
	s.stop()
}

func (s *Stamper) loop() {
	defer close(s.done)
	var last time.Time // when the last stamp was asked for
	for {
		if wait := time.Until(last.Add(s.cfg.Every)); s.cfg.Every > 0 && wait > 0 && !s.isDraining() {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-s.wake: // Close: stamp the newest now
				t.Stop()
				continue
			}
		}
		s.mu.Lock()
		if len(s.queue) == 0 {
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if s.cfg.Every > 0 && len(s.queue) > 1 {
			s.skipped.Add(float64(len(s.queue) - 1))
			s.queue = s.queue[len(s.queue)-1:]
		}
		p := s.queue[0]
		s.mu.Unlock()
		last = time.Now()
		if !s.stampWithRetry(p) {
			s.mu.Lock()
			left := len(s.queue)
			s.mu.Unlock()
			s.cfg.Logger.Warn("stopped before time-stamping every checkpoint; the newest is stamped at the next start", "unstamped", left)
			return
		}
		s.mu.Lock()
		if len(s.queue) > 0 && s.queue[0].size == p.size {
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
	}
}

func (s *Stamper) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// stampWithRetry stamps p, retrying with backoff; false if stopped first.
func (s *Stamper) stampWithRetry(p pending) bool {
	backoff := s.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := s.stampOne(p)
		if err == nil {
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		s.requests.WithLabelValues("error").Inc()
		s.cfg.Logger.Error("couldn't time-stamp checkpoint; retrying", "size", p.size, "attempt", attempt, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
		s.mu.Lock()
		dropped := len(s.queue) == 0 || s.queue[0].size != p.size
		s.mu.Unlock()
		if dropped { // from a full queue while it waited
			return true
		}
	}
}

// stampOne obtains, verifies and stores the time-stamp of p, unless one is
// already stored.
func (s *Stamper) stampOne(p pending) error {
	path := filepath.Join(s.cfg.Dir, TokenFile(p.size))
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	tok, der, err := s.cfg.Client.Stamp(ctx, p.note)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := durable.CreateFile(path, der, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("couldn't store the time-stamp: %w", err)
	}
	s.requests.WithLabelValues("ok").Inc()
	s.roundTrip.Observe(elapsed.Seconds())
	s.lastTime.Set(float64(tok.GenTime.UnixNano()) / 1e9)
	s.lastSize.Set(float64(p.size))
	if skew := time.Since(tok.GenTime); skew > 5*time.Minute+elapsed || skew < -5*time.Minute {
		s.cfg.Logger.Warn("the TSA's time and this server's clock differ by more than 5 minutes", "tsa_time", tok.GenTime, "skew", skew.Round(time.Second))
	}
	return nil
}
