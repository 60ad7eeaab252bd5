package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/c2sp"
	fsstore "github.com/trailaudit/trail/internal/storage/fs"
)

// Source is where Export and MakeReceipt read a log: a data directory or a
// running server. Nothing read is trusted: Export and MakeReceipt check it.
type Source interface {
	// Checkpoint returns the newest signed checkpoint note, as published:
	// every signature line, cosignatures included.
	Checkpoint(ctx context.Context) ([]byte, error)
	// ReadTile returns the data of a hash tile or an entry bundle of
	// exactly t's width.
	ReadTile(ctx context.Context, t c2sp.Tile) ([]byte, error)
	// ReadLarge returns the body of the large entry with this SHA-256.
	ReadLarge(ctx context.Context, sum [32]byte) ([]byte, error)
	// String names the source in messages.
	String() string
}

// ErrNoLargeBodies is returned by a Source that cannot serve the bodies of
// large entries.
var ErrNoLargeBodies = errors.New("the bodies of large entries (over 64 KiB) cannot be read from a server; export from the data directory (-data)")

// Dir reads the data directory of a log through its fixed formats, as
// trail verify does, never through the engine: it takes no lock and writes
// nothing, so it reads a log that a server is appending to. Partial tiles
// are cut from the full tile or the staged one when the partial file is
// gone (removed once its tile filled).
type Dir struct{ Root string }

var _ Source = Dir{}

func (d Dir) String() string { return d.Root }

func (d Dir) path(rel string) string { return filepath.Join(d.Root, filepath.FromSlash(rel)) }

// Checkpoint returns log/checkpoint, or its cosigned form if the server
// kept one (state/cosigned-checkpoint, written when witnesses are
// configured) for that same checkpoint.
func (d Dir) Checkpoint(ctx context.Context) ([]byte, error) {
	b, err := os.ReadFile(d.path("log/checkpoint"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no signed checkpoint (log/checkpoint): not a trail data directory, or an empty log", d.Root)
	}
	if err != nil {
		return nil, err
	}
	if cb, err := os.ReadFile(d.path("state/cosigned-checkpoint")); err == nil {
		text, _, ok1 := bytes.Cut(b, []byte("\n\n"))
		ctext, _, ok2 := bytes.Cut(cb, []byte("\n\n"))
		if ok1 && ok2 && bytes.Equal(text, ctext) {
			return cb, nil
		}
	}
	return b, nil
}

func (d Dir) ReadTile(ctx context.Context, t c2sp.Tile) ([]byte, error) {
	if b, err := os.ReadFile(d.path("log/" + t.Path())); err == nil {
		return checkWidth(t, b, t.Path())
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// The full tile, sealed or still staged.
	full := t
	full.Width = c2sp.TileWidth
	candidates := []string{d.path("log/" + full.Path())}
	if t.Level <= 0 {
		kind := "hashes"
		if t.Level == c2sp.EntriesLevel {
			kind = "entries"
		}
		candidates = append(candidates, d.path(fmt.Sprintf("state/staging/%s-%012d", kind, t.N)))
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if b, ok := prefix(t, b); ok {
			return b, nil
		}
	}
	err := fmt.Errorf("%s: %s is missing from the data directory", d.Root, t.Path())
	if fsstore.JournalHolds(d.Root) {
		return nil, fmt.Errorf("%w; state/journal holds commits: if the machine lost power, open the log once (trail serve) to replay them into the staging files", err)
	}
	return nil, err
}

func (d Dir) ReadLarge(ctx context.Context, sum [32]byte) ([]byte, error) {
	return os.ReadFile(d.path(fmt.Sprintf("log/large/%x", sum)))
}

// prefix returns the first t.Width hashes or entries of b, if it has them.
func prefix(t c2sp.Tile, b []byte) ([]byte, bool) {
	if t.Level != c2sp.EntriesLevel {
		n := t.Width * tlog.HashSize
		return b[:min(n, len(b))], len(b) >= n
	}
	es, _, _ := c2sp.ParseBundle(b)
	if len(es) < t.Width {
		return nil, false
	}
	var out []byte
	for _, e := range es[:t.Width] {
		out = c2sp.AppendEntry(out, e)
	}
	return out, true
}

func checkWidth(t c2sp.Tile, b []byte, name string) ([]byte, error) {
	if t.Level != c2sp.EntriesLevel && len(b) != t.Width*tlog.HashSize {
		return nil, fmt.Errorf("%s: %d bytes, want %d", name, len(b), t.Width*tlog.HashSize)
	}
	return b, nil
}

// Server reads a log through a running server's /checkpoint and /tile/
// endpoints (the reader role suffices).
type Server struct{ Client *client.Client }

var _ Source = Server{}

func (s Server) String() string { return s.Client.URL() }

func (s Server) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := s.Client.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Note, nil
}

func (s Server) ReadTile(ctx context.Context, t c2sp.Tile) ([]byte, error) {
	b, err := s.Client.Tile(ctx, t.Path())
	var ce *client.Error
	if errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound && t.Width < c2sp.TileWidth {
		// The partial tile is gone: its tile has filled since.
		full := t
		full.Width = c2sp.TileWidth
		if b, err = s.Client.Tile(ctx, full.Path()); err != nil {
			return nil, err
		}
		if p, ok := prefix(t, b); ok {
			return p, nil
		}
		return nil, fmt.Errorf("%s: %s is shorter than %s", s, full.Path(), t.Path())
	}
	if err != nil {
		return nil, err
	}
	return checkWidth(t, b, t.Path())
}

func (s Server) ReadLarge(ctx context.Context, sum [32]byte) ([]byte, error) {
	return s.Client.Large(ctx, sum) // checked against sum by the exporter's own verification
}

// tileReader is a tlog.TileReader over a Source's hash tiles.
type tileReader struct {
	ctx context.Context
	src Source
}

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.src.ReadTile(r.ctx, c2sp.Tile{Level: t.L, N: t.N, Width: t.W})
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
