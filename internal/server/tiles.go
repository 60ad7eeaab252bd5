package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/trailaudit/trail/internal/c2sp"
)

// getCheckpoint serves <LogDir>/checkpoint, the newest signed checkpoint,
// or Config.Checkpoint's.
func (s *Server) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Checkpoint != nil {
		b := s.cfg.Checkpoint()
		if b == nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no checkpoint has reached the witness quorum yet")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
		return
	}
	s.serveFile(w, "checkpoint", "text/plain; charset=utf-8", "no-cache")
}

// getTile serves a hash tile or an entry bundle from LogDir. Only canonical
// C2SP paths are accepted, so nothing outside the tile tree can be named.
func (s *Server) getTile(w http.ResponseWriter, r *http.Request) {
	t, err := c2sp.ParsePath("tile/" + r.PathValue("path"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// A full tile never changes. A partial one never changes either, but
	// is removed once its tile fills: clients then fetch the full tile.
	cache := "public, max-age=31536000, immutable"
	if t.Width < c2sp.TileWidth {
		cache = "no-cache"
	}
	s.serveFile(w, t.Path(), "application/octet-stream", cache)
}

// getLarge serves the body of an entry too large for a bundle, from
// <LogDir>/large/<sha256 hex>: the leaf in the bundle commits to its hash,
// so the body is as verifiable as a tile. Static C2SP mirrors of log/ serve
// the same path.
func (s *Server) getLarge(w http.ResponseWriter, r *http.Request) {
	sum := r.PathValue("sum")
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad large-entry name %q: want 64 lower-case hex digits (its SHA-256)", sum))
		return
	}
	s.serveFile(w, "large/"+sum, "application/octet-stream", "public, max-age=31536000, immutable")
}

func (s *Server) serveFile(w http.ResponseWriter, name, contentType, cache string) {
	b, err := os.ReadFile(filepath.Join(s.cfg.LogDir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, name+" not found")
		return
	}
	if err != nil {
		s.serverError(w, "couldn't read "+name, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", cache)
	w.Write(b)
}
