// Package testssl runs testssl.sh (https://testssl.sh), the TLS scanner
// Debian packages as testssl.sh with the command testssl, and reads the
// findings it writes as flat JSON. trail's test suite scans a server
// configured as trail serve is with it; see docs/tls.md.
package testssl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Severity is how testssl.sh rates a finding.
type Severity string

// Severities, from testssl.sh's fileout(). OK and INFO are not problems;
// LOW to CRITICAL are, in rising order. WARN means a check could not be
// completed, FATAL that the scan stopped.
const (
	Debug    Severity = "DEBUG"
	Info     Severity = "INFO"
	OK       Severity = "OK"
	Low      Severity = "LOW"
	Medium   Severity = "MEDIUM"
	High     Severity = "HIGH"
	Critical Severity = "CRITICAL"
	Warn     Severity = "WARN"
	Fatal    Severity = "FATAL"
)

// Finding is one record of testssl.sh's flat JSON output (--jsonfile).
type Finding struct {
	// ID names the check, such as "SSLv3", "cipher-tls1_2_xc02b",
	// "HSTS_time" or "cert_chain_of_trust". A check that covers several
	// certificates suffixes it with " <cert#1>".
	ID       string   `json:"id"`
	IP       string   `json:"ip"`
	Port     string   `json:"port"`
	Severity Severity `json:"severity"`
	CVE      string   `json:"cve,omitempty"`
	CWE      string   `json:"cwe,omitempty"`
	// Finding is what was found, in words: "not offered", "offered (OK)",
	// "730 days=63072000 s", a cipher's description.
	Finding string `json:"finding"`
	Hint    string `json:"hint,omitempty"`
}

// Problem reports whether the severity is LOW or worse, or a check that
// could not be completed.
func (s Severity) Problem() bool {
	switch s {
	case Debug, Info, OK:
		return false
	}
	return true
}

// ParseFindings decodes testssl.sh's flat JSON output: an array of
// findings. Unknown fields are ignored, since testssl.sh adds them across
// versions.
func ParseFindings(b []byte) ([]Finding, error) {
	var fs []Finding
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, fmt.Errorf("bad testssl.sh JSON: %w", err)
	}
	return fs, nil
}

// Command returns the path of testssl.sh: "testssl" as Debian installs
// it, or "testssl.sh" as upstream names it. The error wraps exec.ErrNotFound
// if neither is in PATH.
func Command() (string, error) {
	for _, name := range []string{"testssl", "testssl.sh"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("testssl.sh is not installed (Debian: apt-get install testssl.sh): %w", exec.ErrNotFound)
}

// Options configures Run.
type Options struct {
	// Command is testssl.sh's path. Default: what Command returns.
	Command string
	// CAFile is a PEM CA certificate to trust besides the system's stores
	// (--add-ca): the server's private CA. Optional.
	CAFile string
	// Args are further options, placed before the target.
	Args []string
	// Dir is a new, empty directory for the JSON report and testssl.sh's
	// temporary files. Required.
	Dir string
}

// Scan is the outcome of one run of testssl.sh.
type Scan struct {
	Findings []Finding
	// Report is testssl.sh's text output, stdout and stderr interleaved.
	Report []byte
	// Elapsed is how long the run took.
	Elapsed time.Duration
}

// Run scans target ("host:port") with testssl.sh's default checks (every
// check except -E and -g; --fast is not used, as it skips some) and returns
// its findings. It fails if testssl.sh reports an error of its own (an exit
// status of 242 or more) or writes no findings; findings themselves, of any
// severity, are the caller's to judge. Cancelling ctx kills testssl.sh.
func Run(ctx context.Context, target string, opts Options) (*Scan, error) {
	if opts.Dir == "" {
		return nil, errors.New("testssl: no directory for the report")
	}
	cmdPath := opts.Command
	if cmdPath == "" {
		var err error
		if cmdPath, err = Command(); err != nil {
			return nil, err
		}
	}
	jsonFile := filepath.Join(opts.Dir, "testssl.json")
	args := []string{
		"--quiet",      // no banner
		"--color", "0", // plain text
		"--warnings", "batch", // never stop to ask
		"--jsonfile", jsonFile,
	}
	if opts.CAFile != "" {
		args = append(args, "--add-ca", opts.CAFile)
	}
	args = append(args, opts.Args...)
	args = append(args, target)
	cmd := exec.CommandContext(ctx, cmdPath, args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), "TMPDIR="+opts.Dir)
	// Cancelling kills the shell, not the openssl processes it started;
	// don't wait for those to close the output.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	s := &Scan{Report: out.Bytes(), Elapsed: time.Since(start)}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() >= 0 && ee.ExitCode() < 242 {
		// testssl.sh's exit status sums the status of its checks; only
		// 242 and above (ERR_CHILD to ERR_BASH) are errors of its own.
		err = nil
	}
	if err != nil {
		return s, fmt.Errorf("testssl.sh failed: %w", err)
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		return s, fmt.Errorf("testssl.sh wrote no findings: %w", err)
	}
	if s.Findings, err = ParseFindings(b); err != nil {
		return s, err
	}
	if len(s.Findings) == 0 {
		return s, errors.New("testssl.sh wrote no findings")
	}
	return s, nil
}
