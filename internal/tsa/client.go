package tsa

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxResponse bounds a TSA's answer: a token with a few certificates is a
// few kilobytes.
const maxResponse = 1 << 20

// Client asks one TSA for time-stamps over HTTPS (RFC 3161 section 3.4).
type Client struct {
	// URL is the TSA's https:// address. Required.
	URL string
	// Roots are the TSA's CAs, which its signer certificate must chain to.
	// Required: a token from a TSA nobody trusts is no evidence.
	Roots *x509.CertPool
	// HTTPClient sends the requests. Default: http.DefaultClient. Its
	// transport decides which servers' certificates are trusted for TLS.
	HTTPClient *http.Client
}

// Stamp asks the TSA to stamp SHA-256 of data and verifies its answer in
// full (Token.Verify with the request's nonce and c.Roots). It returns the
// token and the response as received, DER, to be kept as evidence.
func (c *Client) Stamp(ctx context.Context, data []byte) (*Token, []byte, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("TSA URL %q: want an https:// URL", c.URL)
	}
	if c.Roots == nil {
		return nil, nil, errors.New("no TSA CA given to check time-stamps against")
	}
	req, err := NewRequest(data)
	if err != nil {
		return nil, nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(req.DER))
	if err != nil {
		return nil, nil, err
	}
	hreq.Header.Set("Content-Type", QueryContentType)
	hreq.Header.Set("Accept", ReplyContentType)
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't reach the TSA: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't read the TSA's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("TSA answered HTTP %s: %s", resp.Status, snippet(body))
	}
	if len(body) > maxResponse {
		return nil, nil, fmt.Errorf("TSA's answer is over %d bytes", maxResponse)
	}
	tok, err := ParseResponse(body)
	if err != nil {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, ReplyContentType) {
			err = fmt.Errorf("%w (the answer's content type is %q, not %s)", err, ct, ReplyContentType)
		}
		return nil, nil, err
	}
	if err := tok.Verify(data, VerifyOptions{Roots: c.Roots, Nonce: req.Nonce}); err != nil {
		return nil, nil, err
	}
	return tok, body, nil
}

// snippet is the start of a body, for an error message.
func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "?")
	s = strings.Join(strings.Fields(s), " ")
	if len(b) > n {
		s += "..."
	}
	return fmt.Sprintf("%q", s)
}
