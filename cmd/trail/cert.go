package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/ingest/k8s"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
)

const certHelp = `Usage:
  trail cert issue NAME -role writer|reader|auditor|admin [-data DIR] [-out DIR] [-server URL]
  trail cert list [-data DIR] [-json]
  trail cert revoke NAME [-data DIR]

Manages the client certificates of the log in DIR (default ./trail-data).

issue    issues a certificate naming NAME with a role, signed by the CA in
         DIR/pki (created as trail serve would if missing), writes NAME.crt
         and NAME.key (mode 0600, never overwritten) to DIR/pki/clients or
         -out, and prints a curl line that uses them. For a writer it also
         writes NAME.kubeconfig (mode 0600), the kube-apiserver's
         --audit-webhook-config-file for sending the Kubernetes audit log
         to trail; it refers to the certificate, key and CA by absolute
         path. The server's URL in both is -server, $TRAIL_SERVER, the url
         in DIR/serve.json (written by a running trail serve), or
         https://127.0.0.1:8443.
list     prints the issued certificates and whether each is revoked.
revoke   revokes every certificate issued to NAME. A running server refuses
         them within a second, without a restart.

Examples:
  trail cert issue ci-pipeline -role writer
  trail cert issue auditor-1 -role auditor -out ./certs
  trail cert issue kube-apiserver -role writer -server https://trail.example.com:8443
  trail cert revoke ci-pipeline
`

// issuedFile, in the PKI directory, records every client certificate that
// trail cert issue signed, so that they can be listed and revoked by name.
const issuedFile = "issued.json"

// clientsDir is where trail cert issue writes certificates and keys by
// default, under the PKI directory.
const clientsDir = "clients"

// defaultServerURL is where trail serve listens by default.
const defaultServerURL = "https://127.0.0.1:8443"

// issuedCert is one record of issuedFile.
type issuedCert struct {
	Name     string       `json:"name"`
	Role     tlsconf.Role `json:"role"`
	Serial   string       `json:"serial"` // lower-case hex, as in the revocation file
	Issued   time.Time    `json:"issued"`
	NotAfter time.Time    `json:"not_after"`
}

func init() { commands["cert"] = runCert }

func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, certHelp)
		return usageError{"cert: no subcommand given (issue, list or revoke)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, certHelp)
		return nil
	case "issue":
		return runCertIssue(ctx, args[1:], stdout, stderr)
	case "list":
		return runCertList(args[1:], stdout, stderr)
	case "revoke":
		return runCertRevoke(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("cert: unknown subcommand %q: want issue, list or revoke", args[0])}
}

func runCertIssue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("cert issue", stderr, certHelp+"\nFlags of issue:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	roleName := flags.String("role", "", "the `role`: writer, reader, auditor or admin (required)")
	out := flags.String("out", "", "the `directory` for NAME.crt and NAME.key (default DIR/pki/clients)")
	serverFlag := flags.String("server", "", "the server's `URL` for the curl line and the kubeconfig (default $TRAIL_SERVER, DIR/serve.json's, or "+defaultServerURL+")")
	name, err := parseNameAndFlags(flags, args)
	if err != nil {
		return err
	}
	if *roleName == "" {
		return usageError{"cert issue: -role is required: writer, reader, auditor or admin"}
	}
	role, err := tlsconf.ParseRole(*roleName)
	if err != nil {
		return usageError{"cert issue: " + err.Error()}
	}
	if err := tlsconf.CheckClientName(name); err != nil {
		return usageError{"cert issue: " + err.Error()}
	}
	pkiDir := filepath.Join(*dir, "pki")
	if *out == "" {
		*out = filepath.Join(pkiDir, clientsDir)
	}
	url, err := issueServerURL(*serverFlag, *dir)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*out, name+".crt"), filepath.Join(*out, name+".key")
	if _, err := os.Lstat(keyPath); err == nil {
		return keyExistsError(keyPath)
	}
	var kubePath string
	if role == tlsconf.RoleWriter {
		kubePath = filepath.Join(*out, name+".kubeconfig")
		if _, err := os.Lstat(kubePath); err == nil {
			return keyExistsError(kubePath)
		}
	}

	pki, err := openPKI(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("couldn't create %s: %w", *out, err)
	}
	certPEM, keyPEM, err := pki.IssueClient(name, role)
	if err != nil {
		return err
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return err
	}
	// The record first: a certificate that exists must be revocable by
	// name, while a record of one never handed out is harmless.
	issued, err := readIssued(pkiDir)
	if err != nil {
		return err
	}
	issued = append(issued, issuedCert{
		Name: name, Role: role, Serial: tlsconf.SerialString(leaf.SerialNumber),
		Issued: time.Now().UTC().Truncate(time.Second), NotAfter: leaf.NotAfter.UTC(),
	})
	if err := writeIssued(pkiDir, issued); err != nil {
		return err
	}
	if err := durable.CreateFile(keyPath, keyPEM, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return keyExistsError(keyPath)
		}
		return fmt.Errorf("couldn't write key: %w", err)
	}
	if err := durable.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("couldn't write certificate: %w", err)
	}
	caPath := filepath.Join(pkiDir, tlsconf.CACertFile)
	if kubePath != "" {
		kc, err := kubeconfig(url+k8s.Path, name, caPath, certPath, keyPath)
		if err != nil {
			return err
		}
		if err := durable.CreateFile(kubePath, kc, 0o600); err != nil {
			return fmt.Errorf("couldn't write kubeconfig: %w", err)
		}
	}

	index, err := recordOp(ctx, *dir, "trail.cert.issue", event.Resource{Type: "trail.certificate", ID: name}, map[string]any{
		"role": string(role), "serial": tlsconf.SerialString(leaf.SerialNumber), "not_after": leaf.NotAfter.UTC(),
	})
	if err != nil {
		return fmt.Errorf("certificate issued but not recorded in the log: %w", err)
	}

	tlsArgs := fmt.Sprintf("--cacert %s --cert %s --key %s", shellQuote(caPath), shellQuote(certPath), shellQuote(keyPath))
	fmt.Fprintf(stdout, "issued %s certificate for %s, serial %s, expires %s\n  certificate  %s\n  key          %s\n",
		role, name, tlsconf.SerialString(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.DateOnly), certPath, keyPath)
	fmt.Fprintf(stdout, "  recorded in the log as entry %d\n", index)
	if kubePath != "" {
		fmt.Fprintf(stdout, "  kubeconfig   %s\n", kubePath)
	}
	fmt.Fprintln(stdout)
	if role != tlsconf.RoleWriter {
		fmt.Fprintf(stdout, "Read the first event with its inclusion proof:\n  curl %s %s/v1/events/0\n", tlsArgs, url)
		return nil
	}
	fmt.Fprintf(stdout, "Append an event:\n  curl %s -H 'Content-Type: application/json' -d '{\"actor\":{\"id\":\"%s\"},\"action\":\"test\"}' %s/v1/events\n",
		tlsArgs, name, url)
	absKube, err := filepath.Abs(kubePath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
Send the Kubernetes audit log to %s%s:
  kube-apiserver --audit-webhook-config-file=%s \
      --audit-policy-file=/etc/kubernetes/audit-policy.yaml
The kubeconfig refers to the CA certificate, this certificate and its key by
absolute path (no key is copied into it): the API server must be able to
read them there. The audit policy file is yours: it says which requests are
recorded and at what level (see "Auditing" in the Kubernetes documentation).
`, url, k8s.Path, shellQuote(absKube))
	return nil
}

// issueServerURL returns the server URL for cert issue's curl line and
// kubeconfig: server (the -server flag), else $TRAIL_SERVER, else the url in DIR/serve.json,
// else defaultServerURL. It must be https://HOST[:PORT].
func issueServerURL(server, dir string) (string, error) {
	u, from := server, "-server"
	if u == "" {
		u, from = os.Getenv("TRAIL_SERVER"), "$TRAIL_SERVER"
	}
	if u == "" {
		info, err := readServeInfo(dir)
		if err != nil {
			return "", err
		}
		if info == nil || info.URL == "" {
			return defaultServerURL, nil
		}
		u, from = info.URL, filepath.Join(dir, serveInfoFile)
	}
	pu, err := neturl.Parse(u)
	if err != nil || pu.Scheme != "https" || pu.Host == "" || pu.User != nil ||
		pu.Path != "" && pu.Path != "/" || pu.RawQuery != "" || pu.Fragment != "" {
		msg := fmt.Sprintf("cert issue: bad server URL %q from %s: want https://HOST[:PORT]", u, from)
		if from == "-server" {
			return "", usageError{msg}
		}
		return "", errors.New(msg)
	}
	return "https://" + pu.Host, nil
}

// kubeconfigTemplate is a kubeconfig for kube-apiserver's
// --audit-webhook-config-file. Every value is quoted with yamlString.
var kubeconfigTemplate = template.Must(template.New("kubeconfig").Funcs(template.FuncMap{"q": yamlString}).Parse(
	`# trail: kube-apiserver --audit-webhook-config-file, written by trail cert issue.
# It refers to the client certificate, its key and the CA certificate by
# absolute path; no key is copied into this file.
apiVersion: v1
kind: Config
clusters:
- name: trail
  cluster:
    server: {{q .URL}}
    certificate-authority: {{q .CA}}
users:
- name: {{q .Name}}
  user:
    client-certificate: {{q .Cert}}
    client-key: {{q .Key}}
contexts:
- name: trail
  context:
    cluster: trail
    user: {{q .Name}}
current-context: trail
`))

// kubeconfig returns the kubeconfig that sends audit events to url as the
// client certificate certFile with keyFile, trusting the CA in caFile. The
// files are referred to by absolute path.
func kubeconfig(url, name, caFile, certFile, keyFile string) ([]byte, error) {
	v := struct{ URL, Name, CA, Cert, Key string }{URL: url, Name: name}
	for _, f := range []struct {
		dst  *string
		path string
	}{{&v.CA, caFile}, {&v.Cert, certFile}, {&v.Key, keyFile}} {
		abs, err := filepath.Abs(f.path)
		if err != nil {
			return nil, err
		}
		*f.dst = abs
	}
	var b bytes.Buffer
	if err := kubeconfigTemplate.Execute(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// yamlString quotes s as a YAML double-quoted scalar. A JSON string is
// one: YAML's double-quoted escapes include all of JSON's.
func yamlString(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func keyExistsError(path string) error {
	return fmt.Errorf("%s already exists; not overwriting it (remove it, or issue under another name)", path)
}

func runCertList(args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("cert list", stderr, certHelp+"\nFlags of list:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	asJSON := flags.Bool("json", false, "print a JSON array")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	pkiDir := filepath.Join(*dir, "pki")
	issued, err := readIssued(pkiDir)
	if err != nil {
		return err
	}
	revs, err := tlsconf.ReadRevocations(filepath.Join(pkiDir, tlsconf.RevokedFile))
	if err != nil {
		return err
	}
	revoked := map[string]bool{}
	for _, r := range revs {
		revoked[r.Serial] = true
	}
	type row struct {
		Name     string       `json:"name"`
		Role     tlsconf.Role `json:"role"`
		Serial   string       `json:"serial"`
		NotAfter time.Time    `json:"not_after"`
		Revoked  bool         `json:"revoked"`
	}
	rows := []row{}
	for _, c := range issued {
		rows = append(rows, row{c.Name, c.Role, c.Serial, c.NotAfter, revoked[c.Serial]})
	}
	if *asJSON {
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSERIAL\tEXPIRES\tREVOKED")
	for _, r := range rows {
		rev := "no"
		if r.Revoked {
			rev = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, r.Serial, r.NotAfter.Format(time.DateOnly), rev)
	}
	return tw.Flush()
}

func runCertRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("cert revoke", stderr, certHelp+"\nFlags of revoke:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	name, err := parseNameAndFlags(flags, args)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(*dir, "pki")
	issued, err := readIssued(pkiDir)
	if err != nil {
		return err
	}
	revPath := filepath.Join(pkiDir, tlsconf.RevokedFile)
	revs, err := tlsconf.ReadRevocations(revPath)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	found, added := 0, 0
	for _, c := range issued {
		if c.Name != name {
			continue
		}
		found++
		if slices.ContainsFunc(revs, func(r tlsconf.Revocation) bool { return r.Serial == c.Serial }) {
			continue
		}
		revs = append(revs, tlsconf.Revocation{Serial: c.Serial, Name: name, Time: now})
		added++
	}
	if found == 0 {
		return fmt.Errorf("no certificate was issued to %q (see trail cert list)", name)
	}
	if added > 0 {
		if err := tlsconf.WriteRevocations(revPath, revs); err != nil {
			return err
		}
		if _, err := recordOp(ctx, *dir, "trail.cert.revoke", event.Resource{Type: "trail.certificate", ID: name}, map[string]any{"revoked": added}); err != nil {
			return fmt.Errorf("certificate revoked but not recorded in the log: %w", err)
		}
	}
	fmt.Fprintf(stdout, "revoked %d certificate(s) of %s (%d already revoked); a running server refuses them within a second\n",
		found, name, found-added)
	return nil
}

// parseNameAndFlags parses a subcommand's one NAME argument and its flags,
// in either order.
func parseNameAndFlags(flags *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", usageError{err.Error()}
	}
	rest := flags.Args()
	if name == "" {
		if len(rest) == 0 {
			return "", usageError{strings.TrimPrefix(flags.Name(), "trail ") + ": missing NAME"}
		}
		name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", usageError{fmt.Sprintf("unexpected argument %q", rest[0])}
	}
	return name, nil
}

// openPKI opens the PKI of the data directory dir as trail serve does,
// creating the data directory, the log's keys and the CA if missing, so
// that certificates can be issued before the first start.
func openPKI(dir string) (*tlsconf.PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("couldn't create data directory: %w", err)
	}
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	return tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki"), Name: keys.Verifier.Name()})
}

// parseLeaf returns the certificate in certPEM.
func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("issued certificate is not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

func readIssued(pkiDir string) ([]issuedCert, error) {
	path := filepath.Join(pkiDir, issuedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var issued []issuedCert
	if err := json.Unmarshal(b, &issued); err != nil {
		return nil, fmt.Errorf("bad %s: %w", path, err)
	}
	return issued, nil
}

func writeIssued(pkiDir string, issued []issuedCert) error {
	b, err := json.MarshalIndent(issued, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(pkiDir, issuedFile), append(b, '\n'), 0o644)
}
