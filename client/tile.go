package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Tile returns the raw bytes the server serves at path, a C2SP tlog-tiles
// path such as "tile/0/x001/234" (a hash tile) or "tile/entries/005.p/17"
// (an entry bundle). Nothing is checked here: the bytes are only as good
// as a proof against a signed checkpoint makes them (tlog.TileHashReader
// does that for hash tiles; hash each entry of a bundle and compare it with
// its tile). A tile the server does not have is an *Error with StatusCode
// 404: a partial tile is removed once its tile is full, so fetch the full
// one then. Reading tiles is not recorded in the log (reading entries with
// Get is); the server counts it in its metrics.
func (c *Client) Tile(ctx context.Context, path string) ([]byte, error) {
	if !strings.HasPrefix(path, "tile/") || strings.Contains(path, "..") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("bad tile path %q", path)
	}
	b, _, err := c.do(ctx, request{method: http.MethodGet, path: "/" + path, retry: true})
	return b, err
}

// Large returns the body of a large entry (over 64 KiB) by the SHA-256 its
// leaf names, from GET /large/{sha256}. The caller checks the hash.
func (c *Client) Large(ctx context.Context, sum [32]byte) ([]byte, error) {
	b, _, err := c.do(ctx, request{method: http.MethodGet, path: fmt.Sprintf("/large/%x", sum), retry: true})
	return b, err
}
