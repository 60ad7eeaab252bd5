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

// docFile is the producer page whose rsyslog configuration the test runs.
const docFile = "../../../docs/producers/syslog.md"

// rsyslogAction returns the first ```rsyslog block of the producer page.
func rsyslogAction(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```rsyslog\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no ```rsyslog block", docFile)
	}
	return string(m[1])
}

// TestRsyslog forwards messages written with logger through the real
// rsyslogd, with the configuration of docs/producers/syslog.md, over TLS
// with a writer certificate, across a restart of trail's listener, and
// checks that each is in the log once, in order. It runs once per TLS driver installed (gtls from rsyslog-gnutls,
// ossl from rsyslog-openssl). With CI set, a missing rsyslogd or driver
// fails the test instead of skipping it.
func TestRsyslog(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err == nil {
		_, err = exec.LookPath("logger")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("rsyslogd or logger missing (install rsyslog rsyslog-gnutls rsyslog-openssl): %v", err)
		}
		t.Skipf("rsyslogd or logger missing: %v", err)
	}
	action := rsyslogAction(t)
	for _, driver := range []string{"gtls", "ossl"} {
		t.Run(driver, func(t *testing.T) {
			mods, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_" + driver + ".so")
			if len(mods) == 0 {
				if os.Getenv("CI") != "" {
					t.Fatalf("rsyslog's %s driver is not installed", driver)
				}
				t.Skipf("rsyslog's %s driver is not installed", driver)
			}
			testRsyslog(t, rsyslogd, driver, action)
		})
	}
}

func testRsyslog(t *testing.T, rsyslogd, driver, action string) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	name := "rsyslog-" + driver
	certPEM, keyPEM, err := e.pki.IssueClient(name, tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(e.dir, "pki", tlsconf.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"ca.crt": caPEM, "rsyslog.crt": certPEM, "rsyslog.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"work"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := strings.Cut(e.addr, ":")
	action = strings.NewReplacer(
		`target="trail.example.com"`, `target="127.0.0.1"`,
		`StreamDriverPermittedPeers="trail.example.com"`, `StreamDriverPermittedPeers="localhost"`,
		`port="6514"`, `port="`+port+`"`,
		`StreamDriver="gtls"`, `StreamDriver="`+driver+`"`,
		"/etc/trail/", dir+"/",
		`action.resumeInterval="10"`, `action.resumeInterval="1"`,
	).Replace(action)
	sock := filepath.Join(dir, "log.sock")
	// Only the socket below is read: no /dev/log (SysSock.Use="off"), no
	// kernel log, no system configuration; rsyslogd's own messages go to a
	// file here, and its queue files to its own work directory.
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q RateLimit.Interval="0" Ruleset="trail")
ruleset(name="trail") {
%s
}
*.* action(type="omfile" file=%q)
`, filepath.Join(dir, "work"), sock, action, filepath.Join(dir, "rsyslogd-internal.log"))
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(rsyslogd, "-N1", "-f", confFile).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 (config check): %v\n%s\n%s", err, out, conf)
	}

	var out bytes.Buffer
	cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("rsyslogd did not stop within 15 s of SIGTERM")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			internal, _ := os.ReadFile(filepath.Join(dir, "rsyslogd-internal.log"))
			t.Logf("rsyslogd output:\n%s\ninternal log:\n%s\nconfig:\n%s", out.String(), internal, conf)
		}
	})
	waitFor(t, "rsyslogd's socket", 10*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})

	// Half the messages, a restart of trail's listener (rsyslogd
	// reconnects), the other half.
	const n = 600
	tag := "trailtest-" + driver
	send := func(from, to int) {
		var lines strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&lines, "message %d via %s\n", i, driver)
		}
		logger := exec.Command("logger", "-u", sock, "-t", tag, "-p", "authpriv.notice")
		logger.Stdin = strings.NewReader(lines.String())
		if b, err := logger.CombinedOutput(); err != nil {
			t.Fatalf("logger: %v\n%s", err, b)
		}
	}
	var got []entry
	collect := func(want int) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			got = got[:0]
			for _, en := range e.syslogEntries(t) {
				if detail(t, en, "app_name") == tag {
					got = append(got, en)
				}
			}
			if len(got) >= want {
				return
			}
			if time.Now().After(deadline) {
				seen := map[string]int{}
				for _, en := range got {
					seen[detail(t, en, "msg").(string)]++
				}
				var missing []int
				for i := range want {
					if seen[fmt.Sprintf(" message %d via %s", i, driver)] == 0 {
						missing = append(missing, i)
					}
				}
				t.Fatalf("%d of %d messages from rsyslogd after 60 s; missing %v", len(got), want, missing)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send(0, n/2)
	collect(n / 2)
	e.restart(t)
	send(n/2, n)
	collect(n)
	stop()
	// A moment for anything rsyslogd might still send at shutdown.
	time.Sleep(200 * time.Millisecond)
	collect(n)
	if len(got) != n {
		t.Fatalf("%d messages in the log, want %d, each once", len(got), n)
	}
	for i, en := range got {
		want := fmt.Sprintf("message %d via %s", i, driver)
		ev := en.env.Event
		// rsyslog's msg property keeps the space after "tag:" of the local
		// message, and RSYSLOG_SyslogProtocol23Format sends it on.
		if msg := detail(t, en, "msg"); msg != " "+want {
			t.Fatalf("message %d in the log is %q, want %q: not in order", i, msg, want)
		}
		if en.env.Source != name || ev.Action != "syslog."+tag || detail(t, en, "format") != "rfc5424" ||
			detail(t, en, "facility") != "authpriv" || detail(t, en, "severity") != "notice" {
			t.Fatalf("message %d: source %q action %q details %s", i, en.env.Source, ev.Action, ev.Details)
		}
		if !strings.HasPrefix(raw(t, en), "<85>1 ") {
			t.Fatalf("message %d: original %q is not RFC 5424 with PRI 85", i, raw(t, en))
		}
	}
	if !e.logs.Contains("syslog connection opened") || !e.logs.Contains("identity="+name) {
		t.Errorf("no connection from %s logged", name)
	}
	t.Logf("%d messages from rsyslogd %s via %s; the first as sent: %q", n, driver, name, raw(t, got[0]))
}
