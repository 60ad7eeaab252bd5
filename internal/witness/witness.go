// Package witness implements both sides of C2SP tlog-witness
// (https://c2sp.org/tlog-witness) with tlog-cosignature/v1 cosignatures:
//
//   - Witness, the witness: an http.Handler for POST /add-checkpoint that
//     cosigns a log's checkpoint only if it is signed by the log's key and
//     provably extends the newest checkpoint it cosigned before, which it
//     keeps on disk. It refuses rollbacks and forks and records each
//     refusal where its operator sees it: a log line, a Prometheus counter
//     and an append-only file of evidence (see Refusals).
//   - Sender, the log's side: it offers each new checkpoint to the
//     configured witnesses with a consistency proof, collects their
//     cosignatures, and publishes the newest checkpoint that has a quorum
//     of them.
//
// The witness's files, in its directory:
//
//	witness.key         the Ed25519 cosigning key, 0600, created once, never overwritten
//	witness.vkey        its verifier key, for logs' and clients' configuration
//	logs/<origin>       per log, the newest checkpoint cosigned (replaced atomically, fsynced)
//	refusals.jsonl      one JSON object per refused rollback or fork, with the evidence
package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/witness/cosig"
)

// Files in the witness directory.
const (
	KeyFile         = "witness.key"
	VerifierKeyFile = "witness.vkey"
	RefusalsFile    = "refusals.jsonl"
	logsDir         = "logs"
)

// SizeContentType is the content type of a 409 answer's body: the witness's
// size and a newline.
const SizeContentType = "text/x.tlog.size"

// Config configures New.
type Config struct {
	// Dir holds the witness's key and state. Required; created (0700) if
	// missing.
	Dir string
	// Name is the cosigner name of a key created on first use, a
	// schema-less URL. Default "<host>/trail-witness/<8 random hex
	// digits>". An existing key keeps its name.
	Name string
	// Logs are the verifier keys ("<origin>+<hash>+<key>", as trail key
	// prints them) of the logs whose checkpoints the witness cosigns.
	// Required.
	Logs []string
	// Logger receives each refusal and each state change. Default: discard.
	Logger *slog.Logger
	// Registerer, if not nil, gets the witness's metrics.
	Registerer prometheus.Registerer
	// Now is the clock of the cosignatures and refusal records. Default
	// time.Now.
	Now func() time.Time
}

// Witness cosigns checkpoints of the configured logs. It is an http.Handler
// serving POST /add-checkpoint, safe for concurrent use.
type Witness struct {
	dir    string
	signer *cosig.Signer
	logs   map[string]*logState // by origin
	log    *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux

	refusedMu sync.Mutex // serializes appends to the refusals file

	cosigned *prometheus.CounterVec
	refused  *prometheus.CounterVec
	size     *prometheus.GaugeVec
}

// logState is what the witness holds for one log. mu makes check and
// update one atomic step, as tlog-witness requires.
type logState struct {
	verifier note.Verifier
	mu       sync.Mutex
	latest   *c2sp.Checkpoint // nil before the first cosignature
	note     []byte
}

var _ http.Handler = (*Witness)(nil)

// New opens the witness in cfg.Dir, creating its key on first use, and
// loads the newest cosigned checkpoint of each log. A state file that does
// not verify against its log's key is an error: it is never silently reset.
func New(cfg Config) (*Witness, error) {
	if cfg.Dir == "" {
		return nil, errors.New("witness: no directory")
	}
	if len(cfg.Logs) == 0 {
		return nil, errors.New("witness: no logs configured (give each log's verifier key)")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, logsDir), 0o700); err != nil {
		return nil, fmt.Errorf("couldn't create witness directory: %w", err)
	}
	signer, err := LoadOrCreateKey(cfg.Dir, cfg.Name)
	if err != nil {
		return nil, err
	}
	w := &Witness{dir: cfg.Dir, signer: signer, logs: make(map[string]*logState), log: cfg.Logger, now: cfg.Now}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	signer.Now = w.now
	for _, vkey := range cfg.Logs {
		v, err := note.NewVerifier(strings.TrimSpace(vkey))
		if err != nil {
			return nil, fmt.Errorf("bad log verifier key %q: %v", vkey, err)
		}
		if _, dup := w.logs[v.Name()]; dup {
			return nil, fmt.Errorf("log %s configured twice", v.Name())
		}
		st := &logState{verifier: v}
		if err := w.load(st); err != nil {
			return nil, err
		}
		w.logs[v.Name()] = st
	}
	w.cosigned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trail_witness_cosigned_total",
		Help: "Checkpoints cosigned, by log origin.",
	}, []string{"origin"})
	w.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trail_witness_refusals_total",
		Help: "add-checkpoint requests refused, by log origin (empty if unknown) and reason. rollback, fork and inconsistent are evidence of a misbehaving log and are also recorded in " + RefusalsFile + ".",
	}, []string{"origin", "reason"})
	w.size = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trail_witness_log_size",
		Help: "Tree size of the newest checkpoint cosigned, by log origin.",
	}, []string{"origin"})
	for origin, st := range w.logs {
		w.cosigned.WithLabelValues(origin)
		if st.latest != nil {
			w.size.WithLabelValues(origin).Set(float64(st.latest.Size))
		}
		for _, r := range []string{reasonRollback, reasonFork, reasonInconsistent} {
			w.refused.WithLabelValues(origin, r)
		}
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(w.cosigned), cfg.Registerer.Register(w.refused), cfg.Registerer.Register(w.size)); err != nil {
			return nil, fmt.Errorf("witness metrics: %w", err)
		}
	}
	w.mux = http.NewServeMux()
	w.mux.HandleFunc("POST /add-checkpoint", w.addCheckpoint)
	w.mux.HandleFunc("/add-checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Allow", "POST")
		writeError(rw, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on /add-checkpoint: use POST")
	})
	w.mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		writeError(rw, http.StatusNotFound, "no such endpoint: "+r.URL.Path+" (a witness serves POST /add-checkpoint)")
	})
	return w, nil
}

// VerifierKey returns the witness's verifier key, to configure logs and
// clients with.
func (w *Witness) VerifierKey() string { return w.signer.VerifierKey() }

// Name returns the witness's cosigner name.
func (w *Witness) Name() string { return w.signer.Name() }

// Latest returns the newest checkpoint cosigned for origin (the note as the
// log sent it), or nil.
func (w *Witness) Latest(origin string) []byte {
	st := w.logs[origin]
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return bytes.Clone(st.note)
}

// LoadOrCreateKey reads the cosigning key in dir, creating it (0600, never
// overwritten) with name, or a fresh name if empty, on first use.
func LoadOrCreateKey(dir, name string) (*cosig.Signer, error) {
	skPath, vkPath := filepath.Join(dir, KeyFile), filepath.Join(dir, VerifierKeyFile)
	b, err := os.ReadFile(skPath)
	if errors.Is(err, fs.ErrNotExist) {
		if name == "" {
			name = newName()
		}
		skey, vkey, err := cosig.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		// The public half first, as the log's keys: a signing key never
		// exists without it.
		if err := durable.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, err
		}
		if err := durable.CreateFile(skPath, []byte(skey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("couldn't create witness key: %w", err)
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, fmt.Errorf("couldn't read witness key: %w", err)
	}
	s, err := cosig.NewSigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("bad witness key %s: %w", skPath, err)
	}
	if name != "" && name != s.Name() {
		return nil, fmt.Errorf("the witness key in %s is named %s, not %s (an existing key keeps its name)", dir, s.Name(), name)
	}
	// Rewrite a missing or stale public half from the private one.
	if vk, err := os.ReadFile(vkPath); err != nil || strings.TrimSpace(string(vk)) != s.VerifierKey() {
		if err := durable.WriteFile(vkPath, []byte(s.VerifierKey()+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newName() string { return ledger.NewName("trail-witness") }

// stateFile returns the file of a log's state: the origin with every byte
// other than letters, digits, '-', '_' and a '.' not first written as %XX.
func (w *Witness) stateFile(origin string) string {
	var b strings.Builder
	for i := 0; i < len(origin); i++ {
		ch := origin[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' && i > 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return filepath.Join(w.dir, logsDir, b.String())
}

func (w *Witness) load(st *logState) error {
	path := w.stateFile(st.verifier.Name())
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("couldn't read witness state: %w", err)
	}
	cp, err := openCheckpoint(b, st.verifier)
	if err != nil {
		return fmt.Errorf("witness state %s does not verify with the log's key (edited, or the key replaced?): %v; it is never reset silently: move it away only if you know why", path, err)
	}
	st.latest, st.note = &cp, b
	return nil
}

// openCheckpoint verifies a checkpoint's signature by its log's key and
// parses it.
func openCheckpoint(msg []byte, v note.Verifier) (c2sp.Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return c2sp.Checkpoint{}, err
	}
	cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return cp, err
	}
	if cp.Origin != v.Name() {
		return cp, fmt.Errorf("checkpoint of %q signed by the key of %q", cp.Origin, v.Name())
	}
	return cp, nil
}

// Refusal reasons, the reason label of trail_witness_refusals_total.
const (
	reasonMalformed     = "malformed"
	reasonUnknownOrigin = "unknown_origin"
	reasonBadSignature  = "bad_signature"
	reasonBadOldSize    = "bad_old_size"
	reasonStaleOldSize  = "stale_old_size" // the log's idea of the witness's size is out of date: normal
	reasonRollback      = "rollback"
	reasonFork          = "fork"
	reasonInconsistent  = "inconsistent"
)

// Refusal is one record of RefusalsFile: a checkpoint signed by a log's
// key that the witness refused because it does not extend what the
// witness cosigned before. Both notes together are evidence against the
// log.
type Refusal struct {
	Time   time.Time `json:"time"`
	Origin string    `json:"origin"`
	// Reason is rollback (a smaller tree than cosigned), fork (same size,
	// another root) or inconsistent (the consistency proof does not
	// check).
	Reason string `json:"reason"`
	Status int    `json:"status"`
	// Message is what the log was answered.
	Message string `json:"message"`
	// Cosigned is the newest checkpoint the witness had cosigned.
	Cosigned string `json:"cosigned"`
	// Offered is the checkpoint the log offered, and OldSize and Proof the
	// rest of its request.
	Offered string   `json:"offered"`
	OldSize int64    `json:"old_size"`
	Proof   []string `json:"proof,omitempty"`
}

// ReadRefusals returns the refusals recorded in the witness directory dir,
// oldest first.
func ReadRefusals(dir string) ([]Refusal, error) {
	b, err := os.ReadFile(filepath.Join(dir, RefusalsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Refusal
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r Refusal
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("%s line %d: %v", RefusalsFile, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (w *Witness) recordRefusal(r Refusal) {
	b, _ := json.Marshal(r)
	w.refusedMu.Lock()
	defer w.refusedMu.Unlock()
	f, err := os.OpenFile(filepath.Join(w.dir, RefusalsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		w.log.Error("couldn't record witness refusal", "file", RefusalsFile, "err", err)
	}
}

// refuse answers a refused request, counting it.
func (w *Witness) refuse(rw http.ResponseWriter, origin, reason string, status int, msg string) {
	w.refused.WithLabelValues(origin, reason).Inc()
	level := slog.LevelInfo
	if reason == reasonStaleOldSize {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "witness refused checkpoint", "origin", origin, "reason", reason, "status", status, "msg", msg)
	writeError(rw, status, msg)
}

// conflict answers 409 with the witness's size, as tlog-witness requires.
func (w *Witness) conflict(rw http.ResponseWriter, origin, reason string, size int64, msg string) {
	w.refused.WithLabelValues(origin, reason).Inc()
	level := slog.LevelInfo
	if reason == reasonStaleOldSize {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "witness refused checkpoint", "origin", origin, "reason", reason, "status", http.StatusConflict, "size", size, "msg", msg)
	rw.Header().Set("Content-Type", SizeContentType)
	rw.WriteHeader(http.StatusConflict)
	io.WriteString(rw, formatSize(size))
}

func (w *Witness) addCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			w.refuse(rw, "", reasonMalformed, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxRequestBytes))
			return
		}
		writeError(rw, http.StatusBadRequest, "couldn't read request: "+err.Error())
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		w.refuse(rw, "", reasonMalformed, http.StatusBadRequest, err.Error())
		return
	}
	origin, _, _ := bytes.Cut(req.Checkpoint, []byte("\n"))
	st := w.logs[string(origin)]
	if st == nil {
		w.refuse(rw, "", reasonUnknownOrigin, http.StatusNotFound, fmt.Sprintf("unknown log origin %.100q: this witness is not configured for it", origin))
		return
	}
	cp, err := openCheckpoint(req.Checkpoint, st.verifier)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			w.refuse(rw, st.verifier.Name(), reasonBadSignature, http.StatusForbidden, "checkpoint not signed by the log's key "+st.verifier.Name())
		case errors.As(err, &invalid):
			w.refuse(rw, st.verifier.Name(), reasonBadSignature, http.StatusForbidden, "checkpoint signature by the log's key does not verify")
		default:
			w.refuse(rw, st.verifier.Name(), reasonMalformed, http.StatusBadRequest, "malformed checkpoint: "+err.Error())
		}
		return
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	var size int64
	if st.latest != nil {
		size = st.latest.Size
	}
	evidence := func(reason string, status int, msg string) {
		ref := Refusal{Time: w.now().UTC(), Origin: cp.Origin, Reason: reason, Status: status, Message: msg,
			Cosigned: string(st.note), Offered: string(req.Checkpoint), OldSize: req.OldSize}
		for _, h := range req.Proof {
			ref.Proof = append(ref.Proof, h.String())
		}
		w.recordRefusal(ref)
		w.log.Warn("witness refused a checkpoint that does not extend the one it cosigned: evidence recorded in "+RefusalsFile,
			"origin", cp.Origin, "reason", reason, "cosigned_size", size, "offered_size", cp.Size)
	}
	// Misbehaviour first, whatever the old size says: the log signed a
	// smaller tree, or another tree of the same size, than one cosigned.
	switch {
	case st.latest != nil && cp.Size < size:
		msg := fmt.Sprintf("rollback: checkpoint of size %d is smaller than the one of size %d cosigned", cp.Size, size)
		evidence(reasonRollback, http.StatusConflict, msg)
		w.conflict(rw, cp.Origin, reasonRollback, size, msg)
		return
	case st.latest != nil && cp.Size == size && cp.Hash != st.latest.Hash:
		msg := fmt.Sprintf("fork: checkpoint of size %d has root %s, the one cosigned %s", size, cp.Hash, st.latest.Hash)
		evidence(reasonFork, http.StatusConflict, msg)
		w.conflict(rw, cp.Origin, reasonFork, size, msg)
		return
	case req.OldSize > cp.Size:
		w.refuse(rw, cp.Origin, reasonBadOldSize, http.StatusBadRequest, fmt.Sprintf("old size %d is larger than the checkpoint's size %d", req.OldSize, cp.Size))
		return
	case req.OldSize != size:
		w.conflict(rw, cp.Origin, reasonStaleOldSize, size, fmt.Sprintf("old size %d, but the latest checkpoint cosigned is of size %d", req.OldSize, size))
		return
	case req.OldSize == 0 && len(req.Proof) > 0, req.OldSize == cp.Size && len(req.Proof) > 0:
		w.refuse(rw, cp.Origin, reasonMalformed, http.StatusBadRequest, "the consistency proof must be empty when the old size is 0 or the checkpoint's size")
		return
	}
	if size > 0 && cp.Size > size {
		if err := tlog.CheckTree(req.Proof, cp.Size, cp.Hash, size, st.latest.Hash); err != nil {
			msg := fmt.Sprintf("the consistency proof from size %d to %d does not verify: %v", size, cp.Size, err)
			evidence(reasonInconsistent, http.StatusUnprocessableEntity, msg)
			w.refuse(rw, cp.Origin, reasonInconsistent, http.StatusUnprocessableEntity, msg)
			return
		}
	}
	if st.latest == nil || cp.Size > size {
		// Durable before the cosignature leaves: a witness that forgot
		// what it cosigned could later cosign a fork of it.
		if err := durable.WriteFile(w.stateFile(cp.Origin), req.Checkpoint, 0o644); err != nil {
			w.log.Error("couldn't store witness state", "origin", cp.Origin, "err", err)
			writeError(rw, http.StatusInternalServerError, "couldn't store the witness state")
			return
		}
		st.latest, st.note = &cp, bytes.Clone(req.Checkpoint)
		w.size.WithLabelValues(cp.Origin).Set(float64(cp.Size))
	}
	signed, err := note.Sign(&note.Note{Text: string(c2spText(req.Checkpoint))}, w.signer)
	if err != nil {
		w.log.Error("couldn't cosign", "err", err)
		writeError(rw, http.StatusInternalServerError, "couldn't cosign")
		return
	}
	w.cosigned.WithLabelValues(cp.Origin).Inc()
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Write(sigLines(signed))
}

// c2spText returns the body of a signed note: everything up to and
// including the newline before the blank line.
func c2spText(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	return msg[:i+1]
}

// sigLines returns the signature lines of a signed note.
func sigLines(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	return msg[i+2:]
}

// ServeHTTP serves POST /add-checkpoint.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Strict-Transport-Security", "max-age=63072000")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	w.mux.ServeHTTP(rw, r)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// formatSize is the body of a 409 answer.
func formatSize(n int64) string { return strconv.FormatInt(n, 10) + "\n" }

// TLSConfig returns the witness's server TLS configuration: the policy of
// tlsconf.ServerConfig, and a client certificate required and verified
// against clientCAs in the handshake. Only logs whose client certificates
// chain to clientCAs reach the witness at all; what a request may do is
// then decided by the log's signature on its checkpoint.
func TLSConfig(profile tlsconf.Profile, certs tlsconf.CertSource, clientCAs *x509.CertPool) (*tls.Config, error) {
	if clientCAs == nil {
		return nil, errors.New("witness: no client CAs: name the CA of the logs' client certificates")
	}
	c, err := tlsconf.ServerConfig(profile, certs, clientCAs)
	if err != nil {
		return nil, err
	}
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c, nil
}
