package generic_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/generic"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// testServer is trail on real TLS over 127.0.0.1 with a fresh log and the
// endpoint registered, as trail serve runs it.
type testServer struct {
	url string
	log *ledger.Log
	pki *tlsconf.PKI
	s   *servertest.Server
}

func startServer(tb testing.TB) *testServer {
	tb.Helper()
	s := servertest.Start(tb, servertest.Options{Register: func(srv *server.Server) { generic.Register(srv, nil) }})
	return &testServer{url: s.URL, log: s.Log, pki: s.PKI, s: s}
}

// client returns an HTTP/2 client with a certificate for name and role.
func (ts *testServer) client(tb testing.TB, name string, role tlsconf.Role) *http.Client {
	return ts.s.Client(tb, name, role)
}

// post sends body to url as Teleport's event handler does and returns
// the status and the response body.
func post(tb testing.TB, c *http.Client, url string, body []byte) (int, string) {
	tb.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// entries returns every envelope in the log.
func (ts *testServer) entries(tb testing.TB) []event.Envelope { return ts.s.Entries(tb) }
