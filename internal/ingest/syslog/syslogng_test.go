package syslog_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tlsconf"
)

// TestSyslogNG forwards messages through the real syslog-ng with the
// destination of docs/producers/syslog.md, and checks that each is in the
// log once, in order, with the id its [meta sequenceId] gives, and no gap.
// Debian cannot install syslog-ng beside rsyslog (they conflict), so the
// test runs only where syslog-ng is on PATH or TRAIL_SYSLOG_NG names a
// syslog-ng binary (or a script that runs one); it is skipped otherwise,
// in CI too.
func TestSyslogNG(t *testing.T) {
	bin := os.Getenv("TRAIL_SYSLOG_NG")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("syslog-ng"); err != nil {
			t.Skip("syslog-ng not installed and TRAIL_SYSLOG_NG not set")
		}
	}
	if _, err := exec.LookPath("logger"); err != nil {
		t.Skip("logger missing")
	}
	doc, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```syslog-ng\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("%s has no ```syslog-ng block", docFile)
	}

	e := newEnv(t, nil)
	dir := t.TempDir()
	const name = "syslog-ng-1"
	certPEM, keyPEM, err := e.pki.IssueClient(name, tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(e.dir, "pki", tlsconf.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"ca.crt": caPEM, "syslog-ng.crt": certPEM, "syslog-ng.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := strings.Cut(e.addr, ":")
	dest := strings.NewReplacer(
		`"trail.example.com" port(6514)`, `"localhost" port(`+port+`)`,
		"/etc/trail/", dir+"/",
		`dir("/var/lib/syslog-ng")`, fmt.Sprintf("dir(%q)", dir),
		"time-reopen(10)", "time-reopen(1)",
	).Replace(string(m[1]))
	sock := filepath.Join(dir, "log.sock")
	conf := fmt.Sprintf("@version: 3.38\nsource s_src { unix-dgram(%q); };\n%s", sock, dest)
	confFile := filepath.Join(dir, "syslog-ng.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// Its persist file, pid file and control socket are here, not in /var.
	cmd := exec.Command(bin, "-F", "-e", "--no-caps", "-f", confFile,
		"-R", filepath.Join(dir, "syslog-ng.persist"), "-p", filepath.Join(dir, "syslog-ng.pid"), "-c", filepath.Join(dir, "syslog-ng.ctl"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("syslog-ng output:\n%s\nconfig:\n%s", out.String(), conf)
		}
	})
	waitFor(t, "syslog-ng's socket", 10*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})

	// Half the messages, a restart of trail's listener (syslog-ng
	// reconnects), the other half.
	const n = 600
	send := func(from, to int) {
		var lines strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&lines, "message %d via syslog-ng\n", i)
		}
		logger := exec.Command("logger", "-u", sock, "-t", "trailtest-ng")
		logger.Stdin = strings.NewReader(lines.String())
		if b, err := logger.CombinedOutput(); err != nil {
			t.Fatalf("logger: %v\n%s", err, b)
		}
	}
	var got []entry
	collect := func(want int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = got[:0]
			for _, en := range e.syslogEntries(t) {
				if detail(t, en, "app_name") == "trailtest-ng" {
					got = append(got, en)
				}
			}
			if len(got) >= want {
				return
			}
			if time.Now().After(deadline) {
				seen := map[string]int{}
				for _, en := range got {
					seen[strings.TrimPrefix(detail(t, en, "msg").(string), " ")]++
				}
				var missing []int
				for i := range want {
					if seen[fmt.Sprintf("message %d via syslog-ng", i)] == 0 {
						missing = append(missing, i)
					}
				}
				t.Fatalf("%d of %d messages from syslog-ng after 30 s; missing %v", len(got), want, missing)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send(0, n/2)
	collect(n / 2)
	e.restart(t)
	send(n/2, n)
	collect(n)
	time.Sleep(500 * time.Millisecond) // for duplicates, if any
	collect(n)
	if len(got) != n {
		t.Fatalf("%d messages in the log, want %d", len(got), n)
	}
	for i, en := range got {
		want := fmt.Sprintf("message %d via syslog-ng", i)
		if msg := strings.TrimPrefix(detail(t, en, "msg").(string), " "); msg != want {
			t.Fatalf("message %d in the log is %q, want %q", i, msg, want)
		}
		if en.env.Source != name || !strings.HasPrefix(en.env.Event.ID, "syslog:") || detail(t, en, "format") != "rfc5424" {
			t.Fatalf("message %d: source %q, id %q, details %s", i, en.env.Source, en.env.Event.ID, en.env.Event.Details)
		}
	}
	for _, en := range e.syslogEntries(t) {
		if en.env.Event.Action == "syslog.sequence_gap" {
			t.Errorf("gap reported: %s", en.env.Event.Reason)
		}
	}
	t.Logf("first message as sent: %q", raw(t, got[0]))
}
