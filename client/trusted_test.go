package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateTrusted(t *testing.T) {
	f := newFakeServer(t)
	f.add(`{"n":0}`, `{"n":1}`, `{"n":2}`)
	c := f.client(nil)
	path := filepath.Join(t.TempDir(), "state", TrustedStateFile(f.origin))
	s, err := NewTrustedState(path, f.vkey)
	if err != nil {
		t.Fatal(err)
	}

	// First use: trusted on first sight, and saved.
	u, err := c.UpdateTrusted(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if u.Previous != nil || u.Current.Size != 3 {
		t.Errorf("first UpdateTrusted = %+v, want no previous and size 3", u)
	}
	saved, err := os.ReadFile(path)
	if err != nil || string(saved) != string(u.Current.Note) {
		t.Fatalf("state file = %q, %v; want the checkpoint note", saved, err)
	}

	// Unchanged, then grown: consistent.
	if u, err = c.UpdateTrusted(t.Context(), s); err != nil || u.Previous.Size != 3 || u.Current.Size != 3 {
		t.Fatalf("UpdateTrusted unchanged = %+v, %v", u, err)
	}
	f.add(`{"n":3}`, `{"n":4}`)
	if u, err = c.UpdateTrusted(t.Context(), s); err != nil || u.Previous.Size != 3 || u.Current.Size != 5 {
		t.Fatalf("UpdateTrusted grown = %+v, %v", u, err)
	}
	trusted, _ := os.ReadFile(path)

	// Rollback: the server serves an older checkpoint.
	f.served = 4
	_, err = c.UpdateTrusted(t.Context(), s)
	checkSecurityError(t, err, ErrRollback, 5, 4, false, "SECURITY ERROR: log "+f.origin+" was rolled back: its newest checkpoint is of size 4, but one of size 5 was verified before")
	checkUnchanged(t, path, trusted)

	// Fork at the same size: another log of five entries, same key.
	f.served = -1
	f.log = &memLog{}
	for _, l := range []string{`{"n":0}`, `{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":"x"}`} {
		f.log.add([]byte(l))
	}
	_, err = c.UpdateTrusted(t.Context(), s)
	checkSecurityError(t, err, ErrFork, 5, 5, false, "SECURITY ERROR: log "+f.origin+" forked: two checkpoints of size 5 with different root hashes")
	checkUnchanged(t, path, trusted)

	// Fork that grew: the consistency proof fails.
	f.log.add([]byte(`{"n":5}`))
	_, err = c.UpdateTrusted(t.Context(), s)
	checkSecurityError(t, err, ErrFork, 5, 6, true, "SECURITY ERROR: log "+f.origin+" forked: its checkpoint of size 6 does not extend the one of size 5 verified before: ")
	checkUnchanged(t, path, trusted)

	// A state file that was edited is not trusted.
	os.WriteFile(path, []byte(strings.Replace(string(trusted), "\n5\n", "\n6\n", 1)), 0o644)
	if _, err := c.UpdateTrusted(t.Context(), s); err == nil || !strings.Contains(err.Error(), "holds no checkpoint of "+f.origin+" signed by its key") {
		t.Errorf("UpdateTrusted with an edited state = %v", err)
	}

	// A state of another log is refused.
	other := newFakeServer(t)
	s2, _ := NewTrustedState(path, other.vkey)
	if _, err := c.UpdateTrusted(t.Context(), s2); err == nil || !strings.Contains(err.Error(), "the trusted state is of log "+other.origin) {
		t.Errorf("UpdateTrusted with another log's state = %v", err)
	}
}

func checkSecurityError(t *testing.T, err error, kind error, trusted, served int64, proof bool, msg string) {
	t.Helper()
	var serr *SecurityError
	if !errors.As(err, &serr) || !errors.Is(err, kind) {
		t.Fatalf("UpdateTrusted = %v, want a *SecurityError wrapping %v", err, kind)
	}
	if serr.Trusted.Size != trusted || serr.Served.Size != served || (serr.Proof != nil) != proof {
		t.Errorf("SecurityError of sizes %d and %d, proof %v; want %d, %d, %v", serr.Trusted.Size, serr.Served.Size, serr.Proof, trusted, served, proof)
	}
	if !strings.HasPrefix(err.Error(), msg) {
		t.Errorf("error = %q, want it to start %q", err, msg)
	}
	ev := serr.Evidence()
	want := "trusted checkpoint (verified before):\n" + string(serr.Trusted.Note) + "\nserver's checkpoint (served now):\n" + string(serr.Served.Note)
	if !strings.HasPrefix(ev, want) {
		t.Errorf("Evidence() = %q, want it to start %q", ev, want)
	}
	if proof && !strings.Contains(ev, "consistency proof from 5 to 6, as served:\n") {
		t.Errorf("Evidence() = %q, want the proof", ev)
	}
}

func checkUnchanged(t *testing.T, path string, want []byte) {
	t.Helper()
	if got, _ := os.ReadFile(path); string(got) != string(want) {
		t.Errorf("the trusted state changed to %q", got)
	}
}

func TestTrustedStateFile(t *testing.T) {
	for _, tt := range []struct{ origin, want string }{
		{"example.com/trail/0a1b2c3d", "example.com%2Ftrail%2F0a1b2c3d"},
		{"host_name-1", "host_name-1"},
		{"..", "%2E."},
		{"a b:c%", "a%20b%3Ac%25"},
	} {
		if got := TrustedStateFile(tt.origin); got != tt.want {
			t.Errorf("TrustedStateFile(%q) = %q, want %q", tt.origin, got, tt.want)
		}
	}
}

func TestDefaultTrustedState(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/config")
	t.Setenv("HOME", "/home/u")
	t.Setenv("AppData", `C:\AppData`)
	f := newFakeServer(t)
	s, err := NewTrustedState("", f.vkey)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := os.UserConfigDir()
	if want := filepath.Join(dir, "trail", "trusted", TrustedStateFile(f.origin)); s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
}
