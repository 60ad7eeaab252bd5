package client

import (
	"errors"
	"net/http"
	"testing"
)

func TestTile(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(nil)
	for _, p := range []string{"checkpoint", "tile/../checkpoint", "tile/0/000?x=1", "/tile/0/000"} {
		if _, err := c.Tile(t.Context(), p); err == nil {
			t.Errorf("Tile(%q) succeeded, want an error for a bad path", p)
		}
	}
	if n := len(f.requests); n != 0 {
		t.Errorf("bad tile paths sent %d requests", n)
	}
	// The fake serves no tiles: a 404, as for a partial tile since removed.
	_, err := c.Tile(t.Context(), "tile/0/000.p/5")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusNotFound || e.Path != "/tile/0/000.p/5" {
		t.Errorf("Tile of a missing tile = %v, want a 404 *Error for /tile/0/000.p/5", err)
	}
}
