// Package client is the Go client of a trail server: it appends audit events,
// reads them back with proofs it checks itself, and keeps a trusted state
// that catches a server which rewrites or rolls back its log.
//
// A trail server speaks only TLS. It authenticates clients by a certificate
// from its private CA (made by "trail serve" on first start; "trail cert
// issue" makes more) or by a bearer token. Its log is a Merkle tree whose
// signed checkpoints are C2SP tlog-checkpoint notes; the verifier key, as
// printed by "trail key", is what lets a client check them.
//
// # Appending
//
// [Client.Append] sends events (JSON objects as described by the event
// package) in one request and returns once the server has made them durable,
// with the index each got in the log. Every call carries a fresh
// Idempotency-Key, so that the client can retry it when the server answers
// 429 or 503 without appending anything twice. An event's own "id" field
// deduplicates it across calls and restarts of the producer.
// [Client.AppendWithProof] also returns, for each event, a C2SP tlog-proof
// receipt that an auditor can check offline.
//
// # Reading and verifying
//
// Nothing the server says about its log is taken on trust. [Client.Get]
// checks that the checkpoint is signed by the log's key and that the entry is
// in the checkpoint's tree (tlog.CheckRecord). [Client.Checkpoint] checks the
// signature. A response that fails a check is an error wrapping
// [ErrVerification].
//
// A signed checkpoint proves what the log held, but not that the server
// shows everyone the same log, nor that it never goes back on what it
// signed. [TrustedState] keeps the last verified checkpoint of a log in a
// file; [Client.UpdateTrusted] checks that the server's newest checkpoint
// extends it (tlog.CheckTree on a consistency proof) before replacing it.
// A server that rolled its log back, or signed two different trees (a
// fork), yields a [*SecurityError] carrying both signed checkpoints: the
// evidence, since only the log's key can have signed them.
//
// # Errors
//
// An error response of the server is an [*Error] with its HTTP status and
// message.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Defaults of Config.
const (
	DefaultMaxRetries   = 3
	DefaultMaxRetryWait = 30 * time.Second
)

// maxResponse bounds a response body: an entry is at most 64 MiB.
const maxResponse = 80 << 20

// Config configures New. Only URL is required; what else is needed depends on
// the server (its CA, a certificate or token) and on the calls made (the
// verifier key for everything that reads the log).
type Config struct {
	// URL is the server's base URL, such as "https://127.0.0.1:8443". It
	// must be https: the server never speaks plain HTTP. A path is kept as
	// a prefix of every request's path.
	URL string

	// CAFile is a PEM file of the CA certificates the server's certificate
	// must chain to, such as <data dir>/pki/ca.crt. RootCAs is the same as
	// a pool. Set at most one; default: the system's roots.
	CAFile  string
	RootCAs *x509.CertPool

	// CertFile and KeyFile are the PEM client certificate and its key, as
	// written by "trail cert issue". Certificate is the same, loaded. Set
	// the files or Certificate, or neither (then the server needs Token).
	CertFile    string
	KeyFile     string
	Certificate *tls.Certificate

	// Token is a bearer token, sent as "Authorization: Bearer <Token>" on
	// every request, for clients without a certificate. Default: none.
	Token string

	// VerifierKey is the log's note verifier key, "<origin>+<hash>+<key>",
	// as "trail key" prints it. Reading calls (Get, Checkpoint,
	// AppendWithProof, ConsistencyProof's users) fail without it.
	VerifierKey string

	// HTTPClient, if not nil, is used for every request instead of the
	// client New builds. Then CAFile, RootCAs, CertFile, KeyFile and
	// Certificate must be empty: TLS is the HTTPClient's business.
	HTTPClient *http.Client

	// MaxRetries is how many times a request is repeated after a 429 or 503
	// answer, waiting as the Retry-After header says (or 1, 2, 4... seconds
	// without one). Only requests that are safe to repeat are retried: reads,
	// and appends, which always carry an Idempotency-Key. Default
	// DefaultMaxRetries; negative means never.
	MaxRetries int
	// MaxRetryWait bounds one wait between retries; a server that asks for a
	// longer one gets its *Error returned instead. Default DefaultMaxRetryWait.
	MaxRetryWait time.Duration

	// Witnesses are the verifier keys of the witnesses whose cosignatures
	// the client trusts (C2SP tlog-cosignature/v1 Ed25519 keys, as "trail
	// witness key" prints them), and WitnessQuorum how many of them must
	// have cosigned a checkpoint for Checkpoint and UpdateTrusted to accept
	// it. Default quorum: all of Witnesses. See witness.go.
	Witnesses     []string
	WitnessQuorum int
}

// Client talks to one trail server. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	http     *http.Client
	token    string
	verifier note.Verifier // nil without Config.VerifierKey
	retries  int
	maxWait  time.Duration
	policy   witnessPolicy
	// sleep waits between retries; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Client for cfg. It loads the CA and certificate files
// named, so that a missing file is reported here and not at the first call,
// but does not contact the server.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bad server URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("bad server URL %q: want https://HOST[:PORT] (trail serves TLS only)", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bad server URL %q: no query or fragment allowed", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("bad token: it spans more than one line")
	}
	c := &Client{base: u, token: cfg.Token, retries: cfg.MaxRetries, maxWait: cfg.MaxRetryWait, sleep: sleepContext}
	if c.retries == 0 {
		c.retries = DefaultMaxRetries
	}
	if c.maxWait <= 0 {
		c.maxWait = DefaultMaxRetryWait
	}
	if cfg.VerifierKey != "" {
		if c.verifier, err = note.NewVerifier(strings.TrimSpace(cfg.VerifierKey)); err != nil {
			return nil, fmt.Errorf("bad verifier key: %w", err)
		}
	}
	if c.policy, err = newWitnessPolicy(cfg.Witnesses, cfg.WitnessQuorum); err != nil {
		return nil, err
	}
	if cfg.HTTPClient != nil {
		if cfg.CAFile != "" || cfg.RootCAs != nil || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.Certificate != nil {
			return nil, errors.New("client: HTTPClient is set, so CAFile, RootCAs, CertFile, KeyFile and Certificate must be empty")
		}
		c.http = cfg.HTTPClient
		return c, nil
	}
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true, // a custom TLS config turns HTTP/2 off unless asked for
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}
	return c, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	if cfg.CAFile != "" {
		if cfg.RootCAs != nil {
			return nil, errors.New("client: set CAFile or RootCAs, not both")
		}
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("couldn't read CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	switch {
	case cfg.Certificate != nil:
		if cfg.CertFile != "" || cfg.KeyFile != "" {
			return nil, errors.New("client: set CertFile and KeyFile or Certificate, not both")
		}
		tc.Certificates = []tls.Certificate{*cfg.Certificate}
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("client: CertFile and KeyFile go together")
		}
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("couldn't load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Origin returns the origin of the log whose checkpoints the verifier key
// verifies, or "" without one.
func (c *Client) Origin() string {
	if c.verifier == nil {
		return ""
	}
	return c.verifier.Name()
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// ErrNoVerifierKey is returned by calls that read the log when Config had no
// VerifierKey: without it nothing the server says can be checked.
var ErrNoVerifierKey = errors.New("no verifier key: the log's checkpoints cannot be checked (set Config.VerifierKey; \"trail key\" prints it)")

// Error is an error response of the server: an HTTP status and the message of
// its JSON body. 4xx errors are the request's fault and fail again if
// repeated, except 429; 429 and 503 are retried by the client up to
// Config.MaxRetries, and returned when retries are exhausted.
type Error struct {
	// StatusCode is the HTTP status, such as 403.
	StatusCode int
	// Message is the server's explanation, or the status text if the body
	// held none.
	Message string
	// RetryAfter is the wait the server asked for with Retry-After, or 0.
	RetryAfter time.Duration
	// Method and Path name the request.
	Method, Path string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server refused %s %s: %s (%d %s)", e.Method, e.Path, e.Message, e.StatusCode, http.StatusText(e.StatusCode))
}

// request is one API call, repeatable.
type request struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
	retry        bool // safe to repeat
}

// do sends r, retrying 429 and 503 answers if r.retry, and returns the body of
// a 2xx response.
func (c *Client) do(ctx context.Context, r request) ([]byte, http.Header, error) {
	u := *c.base
	u.Path += r.path
	u.RawQuery = r.query.Encode()
	for attempt := 0; ; attempt++ {
		var body io.Reader
		if r.body != nil {
			body = bytes.NewReader(r.body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range r.header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "trail-client")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, nil, c.transportError(err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
		resp.Body.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("couldn't read the response to %s %s: %w", r.method, r.path, err)
		}
		if len(b) > maxResponse {
			return nil, nil, fmt.Errorf("response to %s %s larger than %d bytes", r.method, r.path, maxResponse)
		}
		if resp.StatusCode/100 == 2 {
			return b, resp.Header, nil
		}
		e := responseError(resp, b, r)
		retryable := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
		if !r.retry || !retryable || attempt >= c.retries {
			return nil, nil, e
		}
		wait := e.RetryAfter
		if wait == 0 {
			wait = time.Second << min(attempt, 5)
		}
		if wait > c.maxWait {
			return nil, nil, e
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, nil, fmt.Errorf("%w (while waiting to retry after: %v)", err, e)
		}
	}
}

func responseError(resp *http.Response, body []byte, r request) *Error {
	e := &Error{StatusCode: resp.StatusCode, Method: r.method, Path: r.path}
	var msg struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Error != "" {
		e.Message = msg.Error
	} else {
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportError adds a hint to the errors people meet first.
func (c *Client) transportError(err error) error {
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("couldn't connect to %s: connection refused (is trail serve running?)", c.base.Host)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("couldn't connect to %s: its certificate is not signed by a trusted CA (pass the server's CA, <data dir>/pki/ca.crt): %w", c.base.Host, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("couldn't connect to %s: %w", c.base.Host, err)
	case errors.As(err, &opErr) && opErr.Op == "remote error" && strings.Contains(opErr.Err.Error(), "certificate"):
		// A TLS alert from the server: bad, revoked, expired, unknown or
		// missing certificate.
		return fmt.Errorf("%s refused the client certificate (%v): it may be revoked, expired, missing, or from another CA", c.base.Host, opErr.Err)
	}
	return err
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// getJSON GETs path and decodes the JSON response into v.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	b, h, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query, retry: true})
	if err != nil {
		return err
	}
	return decodeJSON(b, h, http.MethodGet, path, v)
}

func decodeJSON(b []byte, h http.Header, method, path string, v any) error {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("%s %s: the server answered %q, not JSON", method, path, mt)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: malformed response: %w", method, path, err)
	}
	return nil
}
