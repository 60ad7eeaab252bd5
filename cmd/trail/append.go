package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
)

const appendHelp = `Usage: trail append [flags] [EVENT_JSON...]

Appends audit events to the log of a trail server and prints, for each, its
index in the log and its leaf hash. An event is a JSON object such as
  {"time":"2026-11-29T08:00:00Z","actor":{"id":"alice"},"action":"login"}
(see the event package's schema). Events come from the arguments, one each;
or from -f FILE; or, without either, from standard input. A file or the
input holds events one after the other (NDJSON, one per line, is usual) or
JSON arrays of them. Every event is checked before it is sent; a file is
checked whole before any of it is sent. Events go in requests of at most
1,000, each appended atomically and acknowledged once durable.

With -proof DIR it also waits for a signed checkpoint that covers the
events, checks each entry's inclusion proof and signature, and writes the
entry's receipt, a C2SP tlog-proof an auditor can check offline, to
DIR/INDEX.proof.
` + clientHelp + `
Examples:
  trail append '{"time":"2026-11-29T08:00:00Z","actor":{"id":"alice"},"action":"login"}'
  trail append -f events.ndjson -proof receipts
  tail -f app-audit.ndjson | trail append -server https://trail.example.com:8443 \
      -cacert ca.crt -cert ci-pipeline.crt -key trail.vkey

Flags:
`

// clientHelp documents the connection flags of append, get and verify -server.
const clientHelp = `
Connection: on the server's machine no flag is needed. Each setting comes
from its flag, else the environment, else the data directory of a running
trail serve (DATA/serve.json, DATA/pki and DATA/keys):
  server   -server, $TRAIL_SERVER, the url in DATA/serve.json, or
           https://127.0.0.1:8443
  DATA     -data, $TRAIL_DATA, or ./trail-data
  CA       -cacert, DATA/pki/ca.crt if present, or the system's roots
  identity -cert (its key is -cert-key, or the .key file beside it); or a
           bearer token, -token FILE or $TRAIL_TOKEN; or, with neither,
           DATA/pki/admin.crt and admin.key if present
  log key  -key (a file, or the key as "trail key" prints it), the
           verifier_key in DATA/serve.json, or DATA/keys/log.vkey
`

func init() { commands["append"] = runAppend }

// Bounds of one append request: the server takes up to 10,000 events and
// 16 MiB; smaller requests keep a retry cheap.
const (
	appendBatch      = 1000
	appendBatchBytes = 4 << 20
)

func runAppend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("append", stderr, appendHelp)
	cf := addClientFlags(fs, true)
	file := fs.String("f", "", "read events from `FILE` (- for standard input)")
	proofDir := fs.String("proof", "", "wait for a signed checkpoint and write each entry's receipt to `DIR`/INDEX.proof")
	asJSON := fs.Bool("json", false, "print the server's reply as JSON instead of text")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if *file != "" && fs.NArg() > 0 {
		return usageError{"append: give events as arguments or with -f, not both"}
	}
	if err := cf.check(); err != nil {
		return err
	}
	var src eventSource
	switch {
	case fs.NArg() > 0:
		evs, err := argEvents(fs.Args())
		if err != nil {
			return err
		}
		src = sliceSource(evs)
	case *file == "" || *file == "-":
		if term.IsTerminal(int(os.Stdin.Fd())) {
			fmt.Fprintln(stderr, "trail: reading events from standard input, one JSON object per line; end with Ctrl-D")
		}
		src = streamSource{os.Stdin, "standard input"}
	default:
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		evs, err := readEvents(newEventReader(f, *file, true))
		f.Close()
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return fmt.Errorf("%s holds no events", *file)
		}
		src = sliceSource(evs)
	}
	c, err := cf.newClient(*proofDir != "")
	if err != nil {
		return err
	}
	if *proofDir != "" {
		if err := os.MkdirAll(*proofDir, 0o755); err != nil {
			return err
		}
	}

	type jsonEntry struct {
		Index    int64  `json:"index"`
		LeafHash string `json:"leaf_hash"`
		Proof    string `json:"proof,omitempty"`
		Receipt  string `json:"receipt,omitempty"`
	}
	var entries []jsonEntry
	appended := 0
	_, err = src.batches(ctx, func(batch []sourced) error {
		raws := make([]json.RawMessage, len(batch))
		for i, in := range batch {
			raws[i] = in.ev
		}
		var got []client.Appended
		var err error
		if *proofDir != "" {
			got, err = c.AppendWithProof(ctx, raws...)
		} else {
			got, err = c.Append(ctx, raws...)
		}
		if err != nil {
			return blameEvent(err, batch)
		}
		appended += len(got)
		for _, a := range got {
			e := jsonEntry{Index: a.Index, LeafHash: base64.StdEncoding.EncodeToString(a.LeafHash[:]), Proof: string(a.Receipt)}
			if a.Receipt != nil {
				e.Receipt = filepath.Join(*proofDir, strconv.FormatInt(a.Index, 10)+".proof")
				if err := durable.WriteFile(e.Receipt, a.Receipt, 0o644); err != nil {
					return fmt.Errorf("couldn't write the receipt of entry %d: %w", a.Index, err)
				}
			}
			entries = append(entries, e)
			if !*asJSON {
				if e.Receipt != "" {
					fmt.Fprintf(stdout, "entry %d  leaf hash %s  receipt %s\n", e.Index, e.LeafHash, e.Receipt)
				} else {
					fmt.Fprintf(stdout, "entry %d  leaf hash %s\n", e.Index, e.LeafHash)
				}
			}
		}
		return nil
	})
	switch {
	case err != nil && appended > 0:
		err = fmt.Errorf("appended %d events, then: %w", appended, err)
	case err == nil && appended == 0:
		err = errors.New("no events given")
	}
	if *asJSON {
		out := struct {
			Entries []jsonEntry `json:"entries"`
			Error   string      `json:"error,omitempty"`
		}{Entries: entries}
		if out.Entries == nil {
			out.Entries = []jsonEntry{}
		}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		enc.Encode(out)
		if err != nil {
			fmt.Fprintf(stderr, "trail: %s\n", err)
			return errReported
		}
		return nil
	}
	return err
}

// sourced is an event and where it came from, for messages.
type sourced struct {
	ev    json.RawMessage
	where string // "argument 2", "line 7" or "line 3, element 2"
}

// checkEvent validates ev as the server will, so that a bad event is
// reported by its line before anything is sent.
func checkEvent(ev json.RawMessage, where string) error {
	if _, err := event.Parse(ev); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	return nil
}

// argEvents returns the events of the command line.
func argEvents(args []string) ([]sourced, error) {
	var out []sourced
	for i, a := range args {
		name := fmt.Sprintf("argument %d", i+1)
		evs, err := readEvents(newEventReader(strings.NewReader(a), name, strings.Contains(a, "\n")))
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return nil, fmt.Errorf("%s: no event", name)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// readEvents reads and checks every event of er.
func readEvents(er *eventReader) ([]sourced, error) {
	var out []sourced
	for {
		in, err := er.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
}

// eventReader reads events from a stream: JSON objects one after the other,
// on lines of their own or not, and JSON arrays of them. It reads no further
// than the event it returns, so that events from a pipe are sent as they
// come.
type eventReader struct {
	name    string
	lineNos bool // name events by line
	lines   *lineCounter
	dec     *json.Decoder
	pending []sourced // the rest of an array
}

func newEventReader(r io.Reader, name string, lineNos bool) *eventReader {
	lc := &lineCounter{r: r}
	return &eventReader{name: name, lineNos: lineNos, lines: lc, dec: json.NewDecoder(lc)}
}

// at names the place of an event that starts on line, and is the nth
// element of an array if n > 0.
func (er *eventReader) at(line, n int) string {
	s := er.name
	if er.lineNos {
		s += fmt.Sprintf(": line %d", line)
	}
	if n > 0 {
		s += fmt.Sprintf(", element %d", n)
	}
	return s
}

// next returns the next event, checked, or io.EOF.
func (er *eventReader) next() (sourced, error) {
	for len(er.pending) == 0 {
		var raw json.RawMessage
		err := er.dec.Decode(&raw)
		if err == io.EOF {
			return sourced{}, io.EOF
		}
		if err != nil {
			return sourced{}, er.syntaxError(err)
		}
		line := er.lines.line(er.dec.InputOffset() - int64(len(raw)))
		where := er.at(line, 0)
		switch raw[0] {
		case '{':
			return sourced{raw, where}, checkEvent(raw, where)
		case '[':
			if err := er.splitArray(raw, line); err != nil {
				return sourced{}, err
			}
		default:
			return sourced{}, fmt.Errorf("%s: an event must be a JSON object, not %.20s", where, raw)
		}
	}
	in := er.pending[0]
	er.pending = er.pending[1:]
	return in, nil
}

// splitArray queues the events of a JSON array that starts on line.
func (er *eventReader) splitArray(raw json.RawMessage, line int) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() // [
	for n := 1; dec.More(); n++ {
		var el json.RawMessage
		if err := dec.Decode(&el); err != nil {
			return err // raw is valid JSON
		}
		start := dec.InputOffset() - int64(len(el))
		where := er.at(line+bytes.Count(raw[:start], []byte("\n")), n)
		if el[0] != '{' {
			return fmt.Errorf("%s: an event must be a JSON object, not %.20s", where, el)
		}
		if err := checkEvent(el, where); err != nil {
			return err
		}
		er.pending = append(er.pending, sourced{el, where})
	}
	return nil
}

func (er *eventReader) syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s: malformed JSON: %v", er.at(er.lines.line(se.Offset), 0), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: the input ends inside an event", er.at(er.lines.line(er.lines.off), 0))
	}
	return fmt.Errorf("%s: %w", er.name, err)
}

// lineCounter is a reader that tells the line of an offset it has read.
type lineCounter struct {
	r    io.Reader
	off  int64   // bytes read
	nl   []int64 // offsets of the newlines read and not yet passed
	base int     // newlines passed
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			l.nl = append(l.nl, l.off+int64(i))
		}
	}
	l.off += int64(n)
	return n, err
}

// line returns the 1-based line of offset off. Offsets must not decrease
// from call to call.
func (l *lineCounter) line(off int64) int {
	i, _ := slices.BinarySearch(l.nl, off)
	l.base += i
	l.nl = l.nl[i:]
	return l.base + 1
}

// eventSource hands out events in batches.
type eventSource interface {
	// batches calls send with batches of events until the source is
	// exhausted or send fails, and returns how many events were sent.
	batches(ctx context.Context, send func([]sourced) error) (int, error)
}

// sliceSource is events read and checked beforehand.
type sliceSource []sourced

func (s sliceSource) batches(ctx context.Context, send func([]sourced) error) (int, error) {
	sent := 0
	for len(s) > 0 {
		n, size := 0, 0
		for n < len(s) && n < appendBatch && (n == 0 || size+len(s[n].ev) <= appendBatchBytes) {
			size += len(s[n].ev)
			n++
		}
		if err := send(s[:n]); err != nil {
			return sent, err
		}
		sent += n
		s = s[n:]
	}
	return sent, nil
}

// streamSource reads events as they come: a batch is what has arrived
// while the previous one was being sent, so that a pipe's events are not
// held back waiting for more.
type streamSource struct {
	r    io.Reader
	name string
}

func (s streamSource) batches(ctx context.Context, send func([]sourced) error) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan sourced, appendBatch)
	var readErr error
	go func() {
		defer close(ch)
		er := newEventReader(s.r, s.name, true)
		for {
			in, err := er.next()
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
			select {
			case ch <- in:
			case <-ctx.Done():
				return
			}
		}
	}()
	sent := 0
	var carry *sourced
	for {
		var batch []sourced
		size := 0
		if carry != nil {
			batch, size, carry = append(batch, *carry), len(carry.ev), nil
		} else {
			select {
			case in, ok := <-ch:
				if !ok {
					return sent, readErr // the reader has finished: readErr is set
				}
				batch, size = append(batch, in), len(in.ev)
			case <-ctx.Done():
				return sent, ctx.Err()
			}
		}
	fill:
		for len(batch) < appendBatch {
			select {
			case in, ok := <-ch:
				if !ok {
					break fill
				}
				if size+len(in.ev) > appendBatchBytes {
					carry = &in
					break fill
				}
				batch, size = append(batch, in), size+len(in.ev)
			default:
				break fill
			}
		}
		if err := send(batch); err != nil {
			return sent, err
		}
		sent += len(batch)
	}
}

// blameEvent names the event of batch that a server's 400 "[i] ..." is
// about.
func blameEvent(err error, batch []sourced) error {
	var serr *client.Error
	if !errors.As(err, &serr) || !strings.HasPrefix(serr.Message, "[") {
		return err
	}
	i, rest, ok := strings.Cut(serr.Message[1:], "] ")
	n, nerr := strconv.Atoi(i)
	if !ok || nerr != nil || n < 0 || n >= len(batch) {
		return err
	}
	return fmt.Errorf("%s: the server refused it: %s (%d)", batch[n].where, rest, serr.StatusCode)
}

// clientFlags are the connection flags of append, get and verify -server.
type clientFlags struct {
	server, data, cacert, cert, certKey, token, key *string
}

// addClientFlags defines the connection flags on fs. verify defines -data
// and -key itself, as they were before it could talk to a server, and sets
// them afterwards: they mean the same.
func addClientFlags(fs *flag.FlagSet, dataAndKey bool) *clientFlags {
	f := &clientFlags{
		server:  fs.String("server", "", "the server's `URL` (default $TRAIL_SERVER, or DATA/serve.json's)"),
		cacert:  fs.String("cacert", "", "the server's CA certificate `file` (default DATA/pki/ca.crt)"),
		cert:    fs.String("cert", "", "the client certificate `file` (default DATA/pki/admin.crt, unless a token is given)"),
		certKey: fs.String("cert-key", "", "the client certificate's key `file` (default: -cert's name with .key)"),
		token:   fs.String("token", "", "a `file` holding a bearer token (default $TRAIL_TOKEN)"),
	}
	if dataAndKey {
		f.data = fs.String("data", "", "the data `directory` of a server on this machine (default $TRAIL_DATA or ./trail-data)")
		f.key = fs.String("key", "", "the log's verifier key: a `file` holding it, or the key itself (default DATA/serve.json's, or DATA/keys/log.vkey)")
	}
	return f
}

// check reports misuse of the flags.
func (f *clientFlags) check() error {
	if *f.certKey != "" && *f.cert == "" {
		return usageError{"-cert-key needs -cert"}
	}
	return nil
}

// dataDir returns the data directory the flags and the environment name.
func (f *clientFlags) dataDir() string {
	switch {
	case *f.data != "":
		return *f.data
	case os.Getenv("TRAIL_DATA") != "":
		return os.Getenv("TRAIL_DATA")
	}
	return "trail-data"
}

// config resolves the connection settings: flags, then the environment,
// then the files of a server running on this machine. Without a verifier
// key it fails only if needKey.
func (f *clientFlags) config(needKey bool) (client.Config, error) {
	var cfg client.Config
	dir := f.dataDir()
	info, err := readServeInfo(dir)
	if err != nil {
		return cfg, err
	}
	switch {
	case *f.server != "":
		cfg.URL = *f.server
	case os.Getenv("TRAIL_SERVER") != "":
		cfg.URL = os.Getenv("TRAIL_SERVER")
	case info != nil && info.URL != "":
		cfg.URL = info.URL
	default:
		cfg.URL = "https://127.0.0.1:8443"
	}
	pkiDir := filepath.Join(dir, "pki")
	if *f.cacert != "" {
		cfg.CAFile = *f.cacert
	} else if ca := filepath.Join(pkiDir, tlsconf.CACertFile); exists(ca) {
		cfg.CAFile = ca
	}
	if *f.token != "" {
		b, err := os.ReadFile(*f.token)
		if err != nil {
			return cfg, fmt.Errorf("couldn't read the token: %w", err)
		}
		if cfg.Token = strings.TrimSpace(string(b)); cfg.Token == "" {
			return cfg, fmt.Errorf("-token file %s is empty", *f.token)
		}
	} else {
		cfg.Token = strings.TrimSpace(os.Getenv("TRAIL_TOKEN"))
	}
	switch {
	case *f.cert != "":
		cfg.CertFile, cfg.KeyFile = *f.cert, *f.certKey
		if cfg.KeyFile == "" {
			cfg.KeyFile = strings.TrimSuffix(cfg.CertFile, filepath.Ext(cfg.CertFile)) + ".key"
		}
	case cfg.Token == "":
		if crt, key := filepath.Join(pkiDir, adminCertFile), filepath.Join(pkiDir, adminKeyFile); exists(crt) && exists(key) {
			cfg.CertFile, cfg.KeyFile = crt, key
		}
	}
	switch {
	case *f.key != "":
		if cfg.VerifierKey, err = loadKey(*f.key); err != nil {
			return cfg, err
		}
	case info != nil && info.VerifierKey != "":
		cfg.VerifierKey = info.VerifierKey
	default:
		vkey := filepath.Join(dir, filepath.FromSlash(ledger.VerifierKeyFile))
		b, err := os.ReadFile(vkey)
		if err == nil {
			cfg.VerifierKey = strings.TrimSpace(string(b))
		} else if needKey {
			return cfg, usageError{"no verifier key: pass the log's with -key (\"trail key\" prints it on the server's machine)"}
		}
	}
	return cfg, nil
}

func (f *clientFlags) newClient(needKey bool) (*client.Client, error) {
	cfg, err := f.config(needKey)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// readServeInfo reads DATA/serve.json, or returns nil if there is none.
func readServeInfo(dir string) (*serveInfo, error) {
	path := filepath.Join(dir, serveInfoFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var info serveInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("bad %s: %w", path, err)
	}
	return &info, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
