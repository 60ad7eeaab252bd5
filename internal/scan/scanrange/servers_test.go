//go:build linux

package scanrange

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/servertest"
)

// pki is the range's certificates, made with the openssl command: a root,
// an intermediate, and leaves issued by the intermediate with openssl ca
// (so that validity dates can be set in the past or the future).
type pki struct {
	dir  string
	root string // root.crt: the only certificate the scanner trusts

	mu sync.Mutex // openssl ca's index and serial files
}

// leaf is a key and certificate; chain is the leaf followed by the
// intermediate, as a complete server sends it, and inter the
// intermediate alone (empty for a self-signed leaf).
type leaf struct {
	key, cert, chain, inter string
}

const caConfig = `
[req]
distinguished_name = req_dn
[req_dn]

[ca]
default_ca = range_ca
[range_ca]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
policy = policy_any
unique_subject = no
default_md = sha256
email_in_dn = no
[policy_any]
commonName = supplied

[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}
`

// run runs a command in dir with a one-minute bound and returns its
// output, failing the test on error.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir, root: filepath.Join(dir, "root.crt")}
	for name, content := range map[string]string{"ca.cnf": caConfig, "index.txt": "", "serial": "1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "newcerts"), 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"SAN=DNS:unused"}
	run(t, dir, env, "openssl", "req", "-config", "ca.cnf", "-x509", "-new", "-newkey", "rsa:2048", "-nodes",
		"-keyout", "root.key", "-out", "root.crt", "-subj", "/CN=trail scan range root", "-days", "3650", "-extensions", "root_ext")
	run(t, dir, env, "openssl", "req", "-config", "ca.cnf", "-new", "-newkey", "rsa:2048", "-nodes",
		"-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=trail scan range intermediate")
	run(t, dir, env, "openssl", "ca", "-config", "ca.cnf", "-batch", "-notext", "-cert", "root.crt", "-keyfile", "root.key",
		"-in", "int.csr", "-out", "int.crt", "-days", "3650", "-extensions", "intermediate_ext")
	return p
}

// leafOpts describes a leaf certificate.
type leafOpts struct {
	key        string // genpkey arguments' shorthand: "rsa:2048", "rsa:1024", "rsa:512", "ec:P-256"
	san        string // default "IP:127.0.0.1,DNS:localhost"
	md         string // signature digest, default sha256
	start, end time.Time
	selfSigned bool
}

// issue makes a key and a certificate named name.
func (p *pki) issue(t *testing.T, name string, o leafOpts) leaf {
	t.Helper()
	if o.san == "" {
		o.san = "IP:127.0.0.1,DNS:localhost"
	}
	if o.md == "" {
		o.md = "sha256"
	}
	if o.start.IsZero() {
		o.start = time.Now().Add(-time.Hour)
	}
	if o.end.IsZero() {
		o.end = time.Now().Add(90 * 24 * time.Hour)
	}
	l := leaf{
		key:   filepath.Join(p.dir, name+".key"),
		cert:  filepath.Join(p.dir, name+".crt"),
		chain: filepath.Join(p.dir, name+".chain.pem"),
	}
	alg, param, _ := strings.Cut(o.key, ":")
	genArgs := []string{"genpkey", "-out", l.key}
	switch alg {
	case "rsa":
		genArgs = append(genArgs, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:"+param)
	case "ec":
		genArgs = append(genArgs, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:"+param)
	default:
		t.Fatalf("bad key %q", o.key)
	}
	env := []string{"SAN=" + o.san}
	run(t, p.dir, env, "openssl", genArgs...)
	subj := "/CN=" + name
	if o.selfSigned {
		run(t, p.dir, env, "openssl", "req", "-config", "ca.cnf", "-x509", "-new", "-key", l.key, "-out", l.cert,
			"-subj", subj, "-days", "90", "-extensions", "leaf_ext", "-"+o.md)
		copyFile(t, l.cert, l.chain)
		return l
	}
	csr := filepath.Join(p.dir, name+".csr")
	run(t, p.dir, env, "openssl", "req", "-config", "ca.cnf", "-new", "-key", l.key, "-out", csr, "-subj", subj)
	const asn1Time = "20060102150405Z"
	p.mu.Lock()
	defer p.mu.Unlock()
	run(t, p.dir, env, "openssl", "ca", "-config", "ca.cnf", "-batch", "-notext", "-cert", "int.crt", "-keyfile", "int.key",
		"-in", csr, "-out", l.cert, "-extensions", "leaf_ext", "-md", o.md,
		"-startdate", o.start.UTC().Format(asn1Time), "-enddate", o.end.UTC().Format(asn1Time))
	cert, err := os.ReadFile(l.cert)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := os.ReadFile(filepath.Join(p.dir, "int.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.chain, append(cert, inter...), 0o600); err != nil {
		t.Fatal(err)
	}
	l.inter = filepath.Join(p.dir, "int.crt")
	return l
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a port of 127.0.0.1 nothing listens on. Inside the
// range's network namespace only the range's own servers listen, so the
// port stays free until the server that asked binds it.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startServer runs a server process until the test ends and waits (at
// most 30 s) until addr accepts connections.
func startServer(t *testing.T, addr, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// SIGTERM, so that nginx's master stops its workers; SIGKILL after
	// WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	out := &servertest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cancel(); <-exited })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s %s exited: %v\n%s", name, strings.Join(args, " "), err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s did not listen on %s in 30 s:\n%s", name, strings.Join(args, " "), addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startOpenSSL runs openssl s_server with the leaf (sending its chain
// unless leafOnly is set) and args, and returns its address.
func startOpenSSL(t *testing.T, l leaf, leafOnly bool, args []string) string {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", freePort(t))
	a := []string{"s_server", "-accept", addr, "-www", "-quiet", "-key", l.key, "-cert", l.cert}
	if !leafOnly && l.inter != "" {
		a = append(a, "-cert_chain", l.inter)
	}
	startServer(t, addr, filepath.Dir(l.key), "openssl", append(a, args...)...)
	return addr
}

// startGnuTLS runs gnutls-serv with the leaf's chain and a priority
// string. gnutls-serv listens on every address of the namespace; the
// range is reached on 127.0.0.1.
func startGnuTLS(t *testing.T, l leaf, priority string) string {
	t.Helper()
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", port)
	startServer(t, addr, filepath.Dir(l.key), "gnutls-serv", "--port", port, "--http", "--quiet",
		"--x509keyfile", l.key, "--x509certfile", l.chain, "--priority", priority)
	return addr
}

// nginxServer is one server block of the range's nginx.
type nginxServer struct {
	port       string
	leaf       leaf
	leafOnly   bool
	directives string
}

// startNginx runs one nginx with a server block per entry, each on its
// own port of 127.0.0.1.
func startNginx(t *testing.T, servers []nginxServer) {
	t.Helper()
	if len(servers) == 0 {
		return
	}
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "worker_processes 1;\nerror_log %s/error.log;\npid %s/nginx.pid;\nevents { worker_connections 256; }\n", dir, dir)
	fmt.Fprintf(&conf, "http {\n  access_log off;\n  client_body_temp_path %[1]s/body;\n  proxy_temp_path %[1]s/proxy;\n  fastcgi_temp_path %[1]s/fastcgi;\n  uwsgi_temp_path %[1]s/uwsgi;\n  scgi_temp_path %[1]s/scgi;\n", dir)
	for _, s := range servers {
		cert := s.leaf.chain
		if s.leafOnly {
			cert = s.leaf.cert
		}
		fmt.Fprintf(&conf, "  server {\n    listen 127.0.0.1:%s ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n%s\n    location / { return 200 \"ok\\n\"; }\n  }\n",
			s.port, cert, s.leaf.key, s.directives)
	}
	conf.WriteString("}\n")
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, "nginx", "-t", "-q", "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	startServer(t, net.JoinHostPort("127.0.0.1", servers[0].port), dir, "nginx", "-p", dir, "-c", confPath,
		"-e", filepath.Join(dir, "error.log"), "-g", "daemon off; master_process on;")
	for _, s := range servers[1:] {
		waitListening(t, net.JoinHostPort("127.0.0.1", s.port))
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 30 s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dhParams makes DH parameters of bits bits.
func dhParams(t *testing.T, dir string, bits int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("dh%d.pem", bits))
	run(t, dir, nil, "openssl", "dhparam", "-out", path, fmt.Sprint(bits))
	return path
}

// netnsEnv is set in the environment of the test binary re-executed
// inside its own network namespace.
const netnsEnv = "TRAIL_SCANRANGE_NETNS"

// inNamespace re-executes the test binary under unshare --net --pid, unless
// this already is that binary, and returns its exit code; ok is false
// when it is this process's turn to run the tests.
func inNamespace() (code int, ok bool) {
	if os.Getenv(netnsEnv) != "" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "scanrange: ip link set lo up: %v: %s\n", err, out)
			return 1, true
		}
		return 0, false
	}
	if os.Geteuid() != 0 {
		return 0, false
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return 0, false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return 0, false
	}
	if err := exec.Command("unshare", "--net", "--pid", "--fork", "true").Run(); err != nil {
		return 0, false
	}
	// A PID namespace too, with the test binary as its init: when it
	// exits, for whatever reason, the kernel kills every process left in
	// it (nginx workers, testssl.sh's children), so nothing outlives the
	// range.
	cmd := exec.Command("unshare", append([]string{"--net", "--pid", "--fork", "--kill-child", "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), true
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scanrange: unshare: %v\n", err)
		return 1, true
	}
	return 0, true
}
